// Fuzz target: the GGUF reader (header, metadata of every type, tensor infos, offsets,
// alignment), then what ekv derives from a GGUF that opened: each tensor's bytes and their
// dequantization, the model config and the tokenizer from the metadata.
#include <algorithm>
#include <vector>

#include "ekv/io/gguf.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/tokenizer.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = ekv::fuzz::write_input(data, size, "input.gguf");
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::GgufFile gguf(path);
    for (const auto& key : gguf.metadata_order()) (void)gguf.metadata().at(key).summary();
    for (const auto& info : gguf.tensors()) {
      const auto bytes = gguf.tensor_bytes(info);
      // Dequantize the leading blocks: enough to reach every decoder, bounded per input.
      const std::uint64_t block = ekv::dtype_info(info.dtype).block_elements;
      const std::uint64_t elements = std::min<std::uint64_t>(info.elements(), 4 * 256) / block * block;
      // The reader's promise: a tensor's span holds exactly its elements (mmap'd bytes are not
      // ASan-guarded, so an overrun here would go unseen without this check).
      if (bytes.size() != ekv::storage_bytes(info.dtype, info.elements())) ekv::fuzz::finding("tensor span size");
      std::vector<float> values(elements);
      ekv::dequantize(info.dtype, bytes.first(ekv::storage_bytes(info.dtype, elements)), values);
    }
  });
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::GgufFile gguf(path);
    const ekv::ModelConfig config = ekv::config_from_gguf(gguf);
    config.validate(path.string());
    (void)config.describe();
  });
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::GgufFile gguf(path);
    const ekv::Tokenizer tokenizer = ekv::Tokenizer::from_gguf(gguf);
    const auto ids = tokenizer.encode("Hello, world! It's 2026: naïve café 東京 🚀 <|endoftext|>\n\tx = f(y)");
    (void)tokenizer.decode(ids);
  });
  return 0;
}
