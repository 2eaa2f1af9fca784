// ekv-convert: write a GGUF or HF model as an HF checkpoint folder (rotate_half layout).
#include "ekv/core/cli.hpp"
#include "ekv/tools/convert.hpp"

int main(int argc, char** argv) {
  ekv::ConvertOptions options;
  return ekv::tool_main(
      argc, argv,
      {"ekv-convert",
       "Dequantize a model (GGUF or HF folder) and write it as an HF checkpoint folder: config.json and "
       "model.safetensors in the Hugging Face rotate_half layout, as f32, f16 or bf16.",
       "ekv-convert --model ~/.cache/ekv/SmolLM2-135M-Instruct.Q4_1.gguf -o smollm2-hf", "ekv-info"},
      [&](CLI::App& app) { options.register_with(app); },
      [&] {
        ekv::run_convert(options);
        return 0;
      });
}
