// Fuzz target: tokenizer.json (vocab, merges, added tokens, pre-tokenizer and normalizer
// rules), then encoding and decoding a text that reaches every pre-tokenizer branch.
#include "ekv/model/tokenizer.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = ekv::fuzz::write_input(data, size, "tokenizer.json");
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::Tokenizer tokenizer = ekv::Tokenizer::from_hf_json(path);
    const auto ids = tokenizer.encode("Hello, world! It's 2026: naïve café 東京 🚀 <|endoftext|>\n\tx = f(y)  ");
    (void)tokenizer.decode(ids);
    (void)tokenizer.to_hf_json().dump();
  });
  return 0;
}
