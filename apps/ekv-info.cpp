// ekv-info: print what a model file, checkpoint folder or ekv artifact holds.
#include <iostream>

#include "ekv/core/cli.hpp"
#include "ekv/tools/info.hpp"

int main(int argc, char** argv) {
  ekv::InfoOptions options;
  return ekv::tool_main(
      argc, argv,
      {"ekv-info",
       "Print the metadata, model config and tensor or dataset shapes of a GGUF file, an HF model folder, a "
       "safetensors file or an ekv HDF5 artifact, as plain text on stdout.",
       "ekv-info ~/.cache/ekv/SmolLM2-135M-Instruct.Q4_1.gguf", "ekv-convert"},
      [&](CLI::App& app) { options.register_with(app); },
      [&] {
        ekv::run_info(options, std::cout);
        return 0;
      });
}
