// Fuzz target: the safetensors reader (header length, JSON header, dtypes, shapes, offsets,
// overlaps) and the shard index of an HF folder. The first input byte picks which: even, the
// rest is model.safetensors; odd, the rest is model.safetensors.index.json beside a fixed valid
// config.json (so the open reaches the index).
#include <filesystem>
#include <fstream>

#include "ekv/io/safetensors.hpp"
#include "ekv/model/model_source.hpp"
#include "fuzz_input.hpp"

namespace {
constexpr const char* kConfig = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
  "num_hidden_layers": 2, "vocab_size": 40, "max_position_embeddings": 256, "rope_theta": 10000.0,
  "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2})";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 0) {
    const auto path = ekv::fuzz::write_input(data + 1, size - 1, "model.safetensors");
    ekv::fuzz::expect_clear_errors([&] {
      const ekv::SafetensorsFile file(path);
      for (const auto& entry : file.entries())
        ekv::fuzz::check_and_dequantize(entry.dtype, file.bytes(entry), entry.elements());
    });
    return 0;
  }
  const auto index = ekv::fuzz::write_input(data + 1, size - 1, "hf/model.safetensors.index.json");
  const auto folder = index.parent_path();
  if (!std::filesystem::exists(folder / "config.json")) std::ofstream(folder / "config.json") << kConfig;
  ekv::fuzz::expect_clear_errors([&] { (void)ekv::ModelSource::open(folder); });
  return 0;
}
