// Fuzz target: the GGUF reader (header, metadata of every type, tensor infos, offsets,
// alignment), then what ekv derives from a GGUF that opened: each tensor's bytes and their
// dequantization, the model config and the tokenizer from the metadata.
#include <optional>

#include "ekv/io/gguf.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/tokenizer.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = ekv::fuzz::write_input(data, size, "input.gguf");
  std::optional<ekv::GgufFile> opened;  // parsed once; config and tokenizer read what opened
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::GgufFile& gguf = opened.emplace(path);
    for (const auto& key : gguf.metadata_order()) (void)gguf.metadata().at(key).summary();
    for (const auto& info : gguf.tensors())
      ekv::fuzz::check_and_dequantize(info.dtype, gguf.tensor_bytes(info), info.elements());
  });
  if (!opened) return 0;
  const ekv::GgufFile& gguf = *opened;
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::ModelConfig config = ekv::config_from_gguf(gguf);
    config.validate(path.string());
    (void)config.describe();
  });
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::Tokenizer tokenizer = ekv::Tokenizer::from_gguf(gguf);
    const auto ids = tokenizer.encode("Hello, world! It's 2026: naïve café 東京 🚀 <|endoftext|>\n\tx = f(y)");
    (void)tokenizer.decode(ids);
  });
  return 0;
}
