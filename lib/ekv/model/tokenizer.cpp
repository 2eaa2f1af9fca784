#include "ekv/model/tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/io/gguf.hpp"

namespace ekv {

namespace fs = std::filesystem;

namespace {

// The GPT-2 pre-tokenizer pattern (also HF ByteLevel's with use_regex=true).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Qwen2's and Llama 3's patterns (their tokenizer.json Split pre-tokenizers, behaviour
// "isolated"): a letter run may take one leading non-letter, punctuation takes trailing newlines.
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const char* pattern_of(PreTokenizer pre) {
  switch (pre) {
    case PreTokenizer::qwen2: return kQwen2Pattern;
    case PreTokenizer::llama3: return kLlama3Pattern;
    default: return kGpt2Pattern;
  }
}

// Unicode NFC of valid UTF-8 (ICU); ASCII text is already NFC and skips the conversion.
std::string nfc(std::string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return std::string(text);
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = icu::Normalizer2::getNFCInstance(status);
  EKV_CHECK(U_SUCCESS(status), "ICU: no NFC normaliser (", u_errorName(status), ")");
  const icu::UnicodeString source = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), int32_t(text.size())));
  if (normalizer->isNormalized(source, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  const icu::UnicodeString normalized = normalizer->normalize(source, status);
  EKV_CHECK(U_SUCCESS(status), "ICU: NFC failed (", u_errorName(status), ")");
  std::string out;
  normalized.toUTF8String(out);
  return out;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// GPT-2's reversible byte -> printable character map, as UTF-8 strings.
const std::vector<std::string>& byte_symbols() {
  static const std::vector<std::string> symbols = [] {
    std::vector<std::string> table(256);
    std::uint32_t next = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      append_utf8(table[b], printable ? b : next++);
    }
    return table;
  }();
  return symbols;
}

// Splits UTF-8 text into its characters (byte lengths from the lead byte; text is valid).
std::vector<std::string_view> utf8_chars(std::string_view text) {
  std::vector<std::string_view> chars;
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const std::size_t length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    chars.push_back(text.substr(i, length));
    i += length;
  }
  return chars;
}

// Unicode "numeric" characters, as HF's Digits pre-tokenizer isolates them (\p{N}).
bool is_numeric_char(std::string_view ch) {
  static pcre2_code* numeric = [] {
    int error;
    PCRE2_SIZE offset;
    return pcre2_compile(reinterpret_cast<PCRE2_SPTR>(R"(^\p{N}$)"), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                         &error, &offset, nullptr);
  }();
  if (ch.size() == 1) return ch[0] >= '0' && ch[0] <= '9';
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(numeric, nullptr);
  const int rc = pcre2_match(numeric, reinterpret_cast<PCRE2_SPTR>(ch.data()), ch.size(), 0, 0, data, nullptr);
  pcre2_match_data_free(data);
  return rc >= 0;
}

}  // namespace

std::string sanitize_utf8(std::string_view text, InvalidUtf8* found) {
  std::string out;
  out.reserve(text.size());
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char lead = byte(i);
    if (lead < 0x80) {
      out += char(lead);
      ++i;
      continue;
    }
    // Length and the allowed range of the second byte (Unicode Table 3-7).
    std::size_t length = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) length = 2;
    else if (lead == 0xE0) length = 3, lo = 0xA0;
    else if (lead >= 0xE1 && lead <= 0xEC) length = 3;
    else if (lead == 0xED) length = 3, hi = 0x9F;
    else if (lead >= 0xEE && lead <= 0xEF) length = 3;
    else if (lead == 0xF0) length = 4, lo = 0x90;
    else if (lead >= 0xF1 && lead <= 0xF3) length = 4;
    else if (lead == 0xF4) length = 4, hi = 0x8F;
    std::size_t good = length ? 1 : 0;  // bytes of a valid prefix
    while (good > 0 && good < length && i + good < text.size()) {
      const unsigned char b = byte(i + good);
      const bool ok = good == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
      ++good;
    }
    if (length && good == length) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      if (found && found->sequences++ == 0) found->first_offset = i;
      out += "\xEF\xBF\xBD";  // one U+FFFD per maximal invalid subpart
      i += std::max<std::size_t>(good, 1);
    }
  }
  return out;
}

struct Tokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

Tokenizer::Tokenizer(std::vector<std::string> tokens, const std::vector<std::string>& merges,
                     std::vector<std::int32_t> special_ids, PreTokenizer pre, std::string source)
    : tokens_(std::move(tokens)), pre_(pre), source_(std::move(source)), regex_(std::make_unique<Regex>()) {
  EKV_CHECK(!tokens_.empty() && tokens_.size() < std::size_t(INT32_MAX), source_, ": empty or absurd vocabulary");
  for (std::size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], std::int32_t(i));
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    EKV_CHECK(merges[rank].find(' ') != std::string::npos, source_, ": merge #", rank, " \"", merges[rank],
              "\" is not two symbols separated by a space");
    merge_ranks_.emplace(merges[rank], std::int32_t(rank));
  }
  merges_ = merges;
  special_ids_ = special_ids;
  for (auto id : special_ids) {
    EKV_CHECK(id >= 0 && std::size_t(id) < tokens_.size(), source_, ": special token id ", id, " out of range");
    if (!tokens_[std::size_t(id)].empty()) specials_.push_back(tokens_[std::size_t(id)]);
  }
  std::sort(specials_.begin(), specials_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  // BPE reaches a token of several symbols only through merges: without them every word splits
  // into single bytes (SmolLM2's text scored ppl 272,085 and exit 0).
  if (merges_.empty()) {
    std::vector<bool> special(tokens_.size(), false);
    for (auto id : special_ids_) special[std::size_t(id)] = true;
    std::size_t reachable_only_by_merges = 0;
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      std::size_t code_points = 0;
      for (unsigned char byte : tokens_[i]) code_points += (byte & 0xC0) != 0x80;
      reachable_only_by_merges += !special[i] && code_points > 1;
    }
    EKV_CHECK(reachable_only_by_merges == 0, source_, ": no merges, but ", reachable_only_by_merges,
              " tokens of the vocabulary are several symbols long (BPE reaches them only by merges): a damaged "
              "tokenizer");
  }
  set_pre_tokenizer(pre_);
}

void Tokenizer::set_pre_tokenizer(PreTokenizer pre) {
  pre_ = pre;
  cache_.clear();  // pieces of one rule are not pieces of another
  if (regex_->code) pcre2_code_free(regex_->code);
  int error;
  PCRE2_SIZE offset;
  regex_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_of(pre_)), PCRE2_ZERO_TERMINATED,
                               PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  EKV_CHECK(regex_->code, "internal: the pre-tokenizer pattern does not compile");
  pcre2_jit_compile(regex_->code, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back silently
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

void Tokenizer::encode_piece(std::string_view piece, std::vector<std::int32_t>& out) const {
  const std::string key(piece);
  if (auto hit = cache_.find(key); hit != cache_.end()) {
    out.insert(out.end(), hit->second.begin(), hit->second.end());
    return;
  }
  std::vector<std::string> symbols;
  for (char c : piece) symbols.push_back(byte_symbols()[static_cast<unsigned char>(c)]);
  // Classic GPT-2 BPE: merge the lowest-ranked adjacent pair everywhere, until none is left.
  while (symbols.size() > 1) {
    std::int32_t best = INT32_MAX;
    std::size_t best_at = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = merge_ranks_.find(symbols[i] + " " + symbols[i + 1]);
      if (it != merge_ranks_.end() && it->second < best) best = it->second, best_at = i;
    }
    if (best == INT32_MAX) break;
    const std::string left = symbols[best_at], right = symbols[best_at + 1];
    std::vector<std::string> merged;
    for (std::size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
        merged.push_back(left + right);
        i += 2;
      } else {
        merged.push_back(std::move(symbols[i]));
        ++i;
      }
    }
    symbols = std::move(merged);
  }
  std::vector<std::int32_t> ids;
  for (std::size_t i = 0; i < symbols.size(); ++i) {
    auto it = ids_.find(symbols[i]);
    if (it != ids_.end()) {
      ids.push_back(it->second);
      continue;
    }
    // A merge result missing from the vocabulary (a malformed tokenizer): fall back to characters.
    for (auto ch : utf8_chars(symbols[i])) {
      auto single = ids_.find(std::string(ch));
      if (single == ids_.end()) {
        // Each byte symbol stands for one byte of the text: count them to the failing one.
        // A piece of NFC-normalised text (qwen2) lies outside the text; its offset is not the text's.
        const bool inside = piece.data() >= encoding_text_.data() &&
                            piece.data() < encoding_text_.data() + encoding_text_.size();
        std::size_t byte = inside ? std::size_t(piece.data() - encoding_text_.data()) : 0;
        for (std::size_t j = 0; j < i; ++j) byte += utf8_chars(symbols[j]).size();
        for (auto before : utf8_chars(symbols[i])) {
          if (before.data() == ch.data()) break;
          ++byte;
        }
        fail(cat(encoding_origin_, inside ? ": byte offset " : ": (NFC-normalised span) byte offset ", byte,
                 ": the text holds byte symbol \"", ch, "\", which the vocabulary of ", source_, " lacks"));
      }
      ids.push_back(single->second);
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
  cache_.emplace(key, std::move(ids));
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<std::int32_t>& out) const {
  auto regex_split = [&](std::string_view span) {
    // Owned: encode_piece throws on a byte the vocabulary lacks (a leak found by fuzzing).
    const std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> owned(
        pcre2_match_data_create_from_pattern(regex_->code, nullptr), pcre2_match_data_free);
    pcre2_match_data* data = owned.get();
    std::size_t position = 0;
    while (position < span.size()) {
      // encode() has already made the text valid UTF-8. Without NO_UTF_CHECK, PCRE2 re-validates
      // the whole subject on every call, which made tokenization quadratic in the span length.
      const int rc = pcre2_match(regex_->code, reinterpret_cast<PCRE2_SPTR>(span.data()), span.size(), position,
                                 PCRE2_NO_UTF_CHECK, data, nullptr);
      if (rc < 0) {
        encode_piece(span.substr(position), out);
        break;
      }
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
      if (ovector[0] > position) encode_piece(span.substr(position, ovector[0] - position), out);
      if (ovector[1] == ovector[0]) {  // an empty match cannot happen with this pattern; never loop
        encode_piece(span.substr(ovector[0]), out);
        break;
      }
      encode_piece(span.substr(ovector[0], ovector[1] - ovector[0]), out);
      position = ovector[1];
    }
  };
  if (pre_ == PreTokenizer::qwen2) {
    const std::string normalized = nfc(text);
    regex_split(normalized == text ? text : std::string_view(normalized));
    return;
  }
  if (pre_ != PreTokenizer::smollm) {
    regex_split(text);
    return;
  }
  // smollm: every numeric character is a piece of its own; the spans between use the regex.
  std::size_t span_start = 0, offset = 0;
  for (auto ch : utf8_chars(text)) {
    if (is_numeric_char(ch)) {
      if (offset > span_start) regex_split(text.substr(span_start, offset - span_start));
      encode_piece(ch, out);
      span_start = offset + ch.size();
    }
    offset += ch.size();
  }
  if (text.size() > span_start) regex_split(text.substr(span_start));
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view raw, std::string_view origin) const {
  InvalidUtf8 invalid;
  const std::string text = sanitize_utf8(raw, &invalid);
  if (invalid.sequences > 0 && !origin.empty())
    log::warn(cat(origin, ": ", invalid.sequences, " sequence", invalid.sequences > 1 ? "s are" : " is",
                  " not UTF-8 (the first at byte ", invalid.first_offset,
                  "): read as U+FFFD, as every ekv tool and ekv-uptrain read them"));
  encoding_text_ = text;  // offsets are of the sanitized text (equal to raw ones for valid UTF-8)
  encoding_origin_ = origin;
  std::vector<std::int32_t> ids;
  std::size_t start = 0;
  // Next occurrence of each special token at or after `start`; searched again only once passed,
  // so a text full of one special and free of another is still scanned once per special.
  std::vector<std::size_t> next(specials_.size(), 0);
  for (std::size_t i = 0; i < specials_.size(); ++i) next[i] = text.find(specials_[i]);
  while (start < text.size()) {
    // The earliest special token (longest on ties) splits the text.
    std::size_t found = std::string::npos;
    const std::string* which = nullptr;
    for (std::size_t i = 0; i < specials_.size(); ++i) {
      if (next[i] != std::string::npos && next[i] < start) next[i] = text.find(specials_[i], start);
      if (next[i] < found) found = next[i], which = &specials_[i];
    }
    if (!which) {
      encode_ordinary(std::string_view(text).substr(start), ids);
      break;
    }
    if (found > start) encode_ordinary(std::string_view(text).substr(start, found - start), ids);
    ids.push_back(ids_.at(*which));
    start = found + which->size();
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& ids) const {
  static const std::unordered_map<std::string, unsigned char> to_byte = [] {
    std::unordered_map<std::string, unsigned char> map;
    for (int b = 0; b < 256; ++b) map.emplace(byte_symbols()[std::size_t(b)], static_cast<unsigned char>(b));
    return map;
  }();
  std::string text;
  for (auto id : ids) {
    EKV_CHECK(id >= 0 && std::size_t(id) < tokens_.size(), source_, ": token id ", id, " out of range");
    const std::string& token = tokens_[std::size_t(id)];
    if (std::find(specials_.begin(), specials_.end(), token) != specials_.end()) {
      text += token;
      continue;
    }
    for (auto ch : utf8_chars(token)) {
      auto it = to_byte.find(std::string(ch));
      text += it != to_byte.end() ? std::string(1, char(it->second)) : std::string(ch);
    }
  }
  return text;
}

nlohmann::json Tokenizer::to_hf_json() const {
  using nlohmann::json;
  json vocab = json::object();
  for (std::size_t i = 0; i < tokens_.size(); ++i) vocab[tokens_[i]] = i;
  json added = json::array();
  for (auto id : special_ids_)
    added.push_back({{"id", id}, {"content", tokens_[std::size_t(id)]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                           {"use_regex", true}};
  json pre = byte_level, normalizer = nullptr;
  if (pre_ == PreTokenizer::smollm)
    pre = {{"type", "Sequence"},
           {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}};
  if (pre_ == PreTokenizer::qwen2 || pre_ == PreTokenizer::llama3) {
    json split = {{"type", "Split"}, {"pattern", {{"Regex", pattern_of(pre_)}}}, {"behavior", "Isolated"},
                  {"invert", false}};
    json bytes = byte_level;
    bytes["use_regex"] = false;
    pre = {{"type", "Sequence"}, {"pretokenizers", {split, bytes}}};
  }
  if (pre_ == PreTokenizer::qwen2) normalizer = {{"type", "NFC"}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", normalizer},
          {"pre_tokenizer", pre},
          {"post_processor", nullptr},
          {"decoder", byte_level},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
            {"vocab", vocab}, {"merges", merges_}}}};
}

Tokenizer Tokenizer::from_gguf(const GgufFile& gguf) {
  const std::string file = gguf.path().string();
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  EKV_CHECK(model == "gpt2", file, ": tokenizer.ggml.model: expected gpt2 (byte-level BPE), found ", model);
  const std::string pre = gguf.has("tokenizer.ggml.pre") ? gguf.get_string("tokenizer.ggml.pre") : "default";
  PreTokenizer rule;
  if (pre == "smollm") rule = PreTokenizer::smollm;
  else if (pre == "qwen2") rule = PreTokenizer::qwen2;
  else if (pre == "llama-bpe") rule = PreTokenizer::llama3;
  else if (pre == "gpt-2" || pre == "gpt2" || pre == "default") rule = PreTokenizer::gpt2;
  else fail(cat(file, ": tokenizer.ggml.pre: pre-tokenizer \"", pre,
                "\" is not supported (smollm, qwen2, llama-bpe, gpt-2)"));
  std::vector<std::string> tokens = gguf.get_strings("tokenizer.ggml.tokens");
  std::vector<std::int32_t> specials;
  if (gguf.has("tokenizer.ggml.token_type")) {
    const auto& types = gguf.get_integers("tokenizer.ggml.token_type");
    EKV_CHECK(types.size() == tokens.size(), file, ": tokenizer.ggml.token_type: expected ", tokens.size(),
              " entries, found ", types.size());
    for (std::size_t i = 0; i < types.size(); ++i)
      if (types[i] == 3 || types[i] == 4) specials.push_back(std::int32_t(i));  // CONTROL, USER_DEFINED
  }
  return Tokenizer(std::move(tokens), gguf.get_strings("tokenizer.ggml.merges"), std::move(specials), rule, file);
}

Tokenizer Tokenizer::from_hf_json(const fs::path& path) {
  using nlohmann::json;
  const std::string file = path.string();
  require_regular_file(path);
  std::ifstream in(path);
  EKV_CHECK(in, file, ": cannot open");
  json root;
  try {
    root = json::parse(in);
  } catch (const json::exception& e) {
    fail(cat(file, ": not valid JSON: ", e.what()));
  }
  try {
    return from_hf_json_object(std::move(root), file);
  } catch (const json::exception& e) {  // a field of the wrong type (found by fuzzing: "special": 1)
    fail(cat(file, ": a field has an unexpected type: ", e.what()));
  }
}

Tokenizer Tokenizer::from_hf_json_object(nlohmann::json root, const std::string& file) {
  using nlohmann::json;
  EKV_CHECK(root.contains("model") && root["model"].value("type", "") == "BPE", file,
            ": model.type: expected BPE");
  const json& model = root["model"];
  EKV_CHECK(model.contains("vocab") && model["vocab"].is_object(), file, ": model.vocab is missing");
  std::vector<std::string> tokens(model["vocab"].size());
  for (const auto& [token, id] : model["vocab"].items()) {
    EKV_CHECK(id.is_number_unsigned() && id.get<std::size_t>() < tokens.size(), file, ": model.vocab.", token,
              ": id out of range");
    tokens[id.get<std::size_t>()] = token;
  }
  std::vector<std::string> merges;
  for (const auto& merge : model.value("merges", json::array())) {
    if (merge.is_string()) merges.push_back(merge.get<std::string>());
    else if (merge.is_array() && merge.size() == 2) merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
    else fail(cat(file, ": model.merges: unexpected entry ", merge.dump()));
  }
  std::vector<std::int32_t> specials;
  const json added_tokens = root.value("added_tokens", json::array());
  // Added tokens extend the vocabulary; an id far past it would allocate without bound.
  const std::size_t most = tokens.size() + added_tokens.size();
  for (const auto& added : added_tokens) {
    const auto id = added.value("id", std::int64_t(-1));
    EKV_CHECK(id >= 0, file, ": added_tokens: entry without id");
    EKV_CHECK(std::size_t(id) < most, file, ": added_tokens: id ", id, " is past the vocabulary of ", tokens.size(),
              " plus ", added_tokens.size(), " added tokens");
    if (std::size_t(id) >= tokens.size()) tokens.resize(std::size_t(id) + 1);
    tokens[std::size_t(id)] = added.value("content", "");
    if (added.value("special", false)) specials.push_back(id);
  }
  // Digits(individual_digits) before ByteLevel is the smollm rule; ByteLevel alone is GPT-2's.
  const std::string pre_text = root.contains("pre_tokenizer") ? root["pre_tokenizer"].dump() : "null";
  const bool has_byte_level = pre_text.find("\"ByteLevel\"") != std::string::npos;
  EKV_CHECK(has_byte_level, file, ": pre_tokenizer: expected a ByteLevel pre-tokenizer, found ", pre_text);
  // A Split by Qwen2's or Llama 3's pattern names the rule; NFC is Qwen2's normaliser.
  PreTokenizer rule = PreTokenizer::gpt2;
  const std::string normalizer = root.contains("normalizer") ? root["normalizer"].dump() : "null";
  if (pre_text.find("\"Digits\"") != std::string::npos) rule = PreTokenizer::smollm;
  else if (pre_text.find(json(kQwen2Pattern).dump()) != std::string::npos) rule = PreTokenizer::qwen2;
  else if (pre_text.find(json(kLlama3Pattern).dump()) != std::string::npos) rule = PreTokenizer::llama3;
  else EKV_CHECK(pre_text.find("\"Split\"") == std::string::npos, file,
                 ": pre_tokenizer: a Split by a pattern ekv does not know (qwen2's and Llama 3's are known): ",
                 pre_text);
  EKV_CHECK(normalizer == "null" || (rule == PreTokenizer::qwen2 && normalizer.find("\"NFC\"") != std::string::npos),
            file, ": normalizer: ", normalizer, " is not supported (none, or NFC with Qwen2's pattern)");
  EKV_CHECK(rule != PreTokenizer::qwen2 || normalizer != "null", file,
            ": normalizer: Qwen2's pattern comes with NFC, found none");
  return Tokenizer(std::move(tokens), merges, std::move(specials), rule, file);
}

Tokenizer Tokenizer::for_model(const fs::path& model_path) {
  if (fs::is_directory(model_path)) {
    const fs::path json_path = model_path / "tokenizer.json";
    EKV_CHECK(fs::exists(json_path), model_path.string(), ": no tokenizer.json in the model folder");
    return from_hf_json(json_path);
  }
  return from_gguf(GgufFile(model_path));
}

}  // namespace ekv
