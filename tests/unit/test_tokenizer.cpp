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
Tokenizer planted(PreTokenizer pre, const std::vector<std::int32_t>& specials = {0}) {
  std::vector<std::string> tokens = {"<|endoftext|>"};
  std::uint32_t next = 256;
  for (std::uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    tokens.push_back(utf8(printable ? b : next++));
  }
  const std::vector<std::string> merges = {"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "r l", "Ġwo rl",
                                           "Ġworl d", "1 2"};
  for (const auto& m : merges) tokens.push_back(m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1));
  return Tokenizer(tokens, merges, specials, pre, "planted");
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
  // Issue 33: counted, for the warning every tool gives (ekv-uptrain's corpus.invalid_utf8 agrees).
  InvalidUtf8 found;
  sanitize_utf8("ok \xE2\x28\xA1 \xFF", &found);
  EXPECT_EQ(found.sequences, 3u);
  EXPECT_EQ(found.first_offset, 3u);
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

// An added token with id 2^40 used to resize the vocabulary to 2^40 entries.
TEST(Tokenizer, AddedTokenIdPastTheVocabularyIsRefused) {
  auto json = planted(PreTokenizer::gpt2).to_hf_json();
  json["added_tokens"][0]["id"] = std::int64_t(1) << 40;
  const auto dir = test::temp_dir("tokenizer-added");
  std::ofstream(dir / "tokenizer.json") << json.dump();
  EXPECT_EKV_ERROR(Tokenizer::from_hf_json(dir / "tokenizer.json"), "tokenizer.json", "added_tokens",
                   "1099511627776", "past the vocabulary");
  std::filesystem::remove_all(dir);
}

// Issue 33: a tokenizer.json without merges split every word into bytes and gave ppl 272,085.
TEST(Tokenizer, NoMergesWithSeveralSymbolTokensIsRefused) {
  auto json = planted(PreTokenizer::gpt2).to_hf_json();
  json["model"].erase("merges");
  const auto dir = test::temp_dir("tokenizer-no-merges");
  std::ofstream(dir / "tokenizer.json") << json.dump();
  EXPECT_EKV_ERROR(Tokenizer::from_hf_json(dir / "tokenizer.json"), "tokenizer.json", "no merges",
                   "10 tokens", "several symbols");
  json["model"]["merges"] = nlohmann::json::array();
  std::ofstream(dir / "tokenizer.json") << json.dump();
  EXPECT_EKV_ERROR(Tokenizer::from_hf_json(dir / "tokenizer.json"), "tokenizer.json", "no merges");
  std::filesystem::remove_all(dir);
}

// A byte the vocabulary lacks used to be reported against the model only; the error now names
// the text and the byte offset, which is what a user can act on.
TEST(Tokenizer, MissingByteNamesTextAndOffset) {
  std::vector<std::string> tokens = {"<|endoftext|>"};
  for (char c = 'a'; c <= 'y'; ++c) tokens.push_back(std::string(1, c));  // no "z"
  tokens.push_back("\xC4\xA0");                                              // "Ġ": the space byte
  const Tokenizer t(tokens, {}, {0}, PreTokenizer::gpt2, "planted");
  EXPECT_EQ(t.encode("hello").size(), 5u);
  EXPECT_EKV_ERROR(t.encode("hello zoo", "notes.txt"), "notes.txt", "byte offset 6", "\"z\"", "planted");
}

// Text without digits reaches the regex as one span; PCRE2 used to re-validate the whole span
// on every match, so 3 MB of it never finished. Every repetition must tokenize alike.
TEST(Tokenizer, LongDigitFreeTextTokenizesLikeItsParts) {
  for (const auto pre : {PreTokenizer::gpt2, PreTokenizer::smollm}) {
    const Tokenizer t = planted(pre);
    const std::string unit = "yes a hello\n";
    const std::size_t repeats = 3'000'000 / unit.size();
    std::string text;
    for (std::size_t i = 0; i < repeats; ++i) text += unit;
    const auto one = t.encode(unit);
    const auto all = t.encode(text);
    ASSERT_EQ(all.size(), one.size() * repeats);
    for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], one[i % one.size()]) << "token " << i;
  }
}

// A text full of one special token and free of another used to be searched to its end for the
// absent one after every occurrence of the present one (quadratic).
TEST(Tokenizer, ManySpecialsTokenizeInOnePass) {
  const std::int32_t hello = planted(PreTokenizer::gpt2).encode("hello").at(0);
  const Tokenizer t = planted(PreTokenizer::gpt2, {0, hello});
  const std::string unit = "<|endoftext|>x";
  const std::size_t repeats = 1'000'000;
  std::string text;
  for (std::size_t i = 0; i < repeats; ++i) text += unit;
  text += "hello";
  const auto ids = t.encode(text);
  ASSERT_EQ(ids.size(), 2 * repeats + 1);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids[2 * repeats - 2], 0);
  EXPECT_EQ(ids.back(), hello);
}

}  // namespace
}  // namespace ekv
