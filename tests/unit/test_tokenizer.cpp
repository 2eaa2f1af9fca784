// Byte-level BPE on a planted vocabulary: merges by rank, the two pre-tokenizer rules,
// special tokens, invalid UTF-8, and the tokenizer.json round trip.
#include <gtest/gtest.h>

#include <fstream>

#include "ekv/model/tokenizer.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"

namespace ekv {
namespace {

std::string utf8(std::uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += char(cp);
  } else {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  }
  return out;
}

// All 256 byte symbols (the GPT-2 map: printable bytes stand for themselves, the others
// become U+0100 + n, so ' ' is "Ġ"), then the merged tokens; ids are vector positions.
Tokenizer planted(PreTokenizer pre) {
  std::vector<std::string> tokens = {"<|endoftext|>"};
  std::uint32_t next = 256;
  for (std::uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    tokens.push_back(utf8(printable ? b : next++));
  }
  const std::vector<std::string> merges = {"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "r l", "Ġwo rl",
                                           "Ġworl d", "1 2"};
  for (const auto& m : merges) tokens.push_back(m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1));
  return Tokenizer(tokens, merges, {0}, pre, "planted");
}

std::vector<std::string> pieces(const Tokenizer& t, const std::string& text) {
  std::vector<std::string> out;
  for (auto id : t.encode(text)) out.push_back(t.token(id));
  return out;
}

TEST(Tokenizer, MergesByRank) {
  const Tokenizer t = planted(PreTokenizer::gpt2);
  EXPECT_EQ(pieces(t, "hello world"), (std::vector<std::string>{"hello", "Ġworld"}));
  EXPECT_EQ(pieces(t, "hell"), (std::vector<std::string>{"hell"}));
  EXPECT_EQ(pieces(t, "lll"), (std::vector<std::string>{"ll", "l"}));  // leftmost pair first
  EXPECT_EQ(t.decode(t.encode("hello world\n")), "hello world\n");
}

TEST(Tokenizer, DigitsRule) {
  // GPT-2 keeps a number together (and merges "1 2"); smollm isolates every digit.
  EXPECT_EQ(pieces(planted(PreTokenizer::gpt2), "a 123"), (std::vector<std::string>{"a", "Ġ", "12", "3"}));
  EXPECT_EQ(pieces(planted(PreTokenizer::smollm), "a 123"), (std::vector<std::string>{"a", "Ġ", "1", "2", "3"}));
}

TEST(Tokenizer, SpecialTokensSplitFirst) {
  const Tokenizer t = planted(PreTokenizer::gpt2);
  EXPECT_EQ(pieces(t, "hello<|endoftext|>hello"), (std::vector<std::string>{"hello", "<|endoftext|>", "hello"}));
  EXPECT_EQ(t.encode("<|endoftext|>").front(), 0);
}

TEST(Tokenizer, SanitizeUtf8LikePython) {
  EXPECT_EQ(sanitize_utf8("abc"), "abc");
  EXPECT_EQ(sanitize_utf8("\xE2\x82\xAC"), "\xE2\x82\xAC");        // € stays
  EXPECT_EQ(sanitize_utf8("\xE2\x82"), "\xEF\xBF\xBD");            // truncated: one U+FFFD
  EXPECT_EQ(sanitize_utf8("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // two bad bytes: two
  EXPECT_EQ(sanitize_utf8("\xE2\x28\xA1"), "\xEF\xBF\xBD(\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: 3
}

TEST(Tokenizer, AnyBytesTokenize) {
  // Control bytes, NUL and invalid UTF-8 all tokenize; decoding gives the sanitized text.
  const Tokenizer t = planted(PreTokenizer::smollm);
  const std::string raw("a\0b\x01\xFF c\xE2\x82", 8);
  const auto ids = t.encode(raw);
  EXPECT_FALSE(ids.empty());
  EXPECT_EQ(t.decode(ids), sanitize_utf8(raw));
  EXPECT_EQ(t.decode(ids), std::string("a\0b\x01\xEF\xBF\xBD c\xEF\xBF\xBD", 12));
}

TEST(Tokenizer, HfJsonRoundTrip) {
  const Tokenizer original = planted(PreTokenizer::smollm);
  const auto dir = test::temp_dir("tokenizer");
  const auto path = dir / "tokenizer.json";
  std::ofstream(path) << original.to_hf_json().dump();
  const Tokenizer back = Tokenizer::from_hf_json(path);
  EXPECT_EQ(back.pre_tokenizer(), PreTokenizer::smollm);
  for (const std::string text : {"hello world 12", "<|endoftext|> hello\n\nworld"})
    EXPECT_EQ(back.encode(text), original.encode(text)) << text;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ekv
