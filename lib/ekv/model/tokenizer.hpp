// Byte-level BPE tokenizer (the GPT-2 scheme used by SmolLM2 and LLaMA-3 style models), built
// from GGUF metadata (tokenizer.ggml.*) or from an HF tokenizer.json.
//
// Encoding: special tokens are split out first; the rest is pre-tokenized by the model's
// rule (for "smollm": every digit alone, then the GPT-2 regex; for "qwen2": NFC, then its
// own regex; for "llama-bpe": Llama 3's regex), each piece's bytes are mapped
// to printable characters and merged by BPE rank. Invalid UTF-8 is replaced by U+FFFD first
// (as Python's errors="replace" does), so any byte string tokenizes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ekv {

class GgufFile;

enum class PreTokenizer {
  gpt2,    // the GPT-2 regex alone
  smollm,  // each numeric character alone, then the GPT-2 regex
  qwen2,   // NFC normalisation, then Qwen2's regex (digits one by one, case-blind contractions)
  llama3,  // Llama 3's regex ("llama-bpe" in GGUF): like qwen2's, digits in runs of up to three
};

class Tokenizer {
 public:
  static Tokenizer from_gguf(const GgufFile& gguf);
  static Tokenizer from_hf_json(const std::filesystem::path& path);
  static Tokenizer from_hf_json_object(nlohmann::json root, const std::string& file);  // `file` names it in errors
  // The tokenizer of a model path (a .gguf file, or an HF folder with tokenizer.json).
  static Tokenizer for_model(const std::filesystem::path& model_path);

  Tokenizer(std::vector<std::string> tokens, const std::vector<std::string>& merges,
            std::vector<std::int32_t> special_ids, PreTokenizer pre, std::string source);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Not thread-safe (piece cache). `origin` names the text in errors (its file, say).
  std::vector<std::int32_t> encode(std::string_view text, std::string_view origin = "the text") const;
  std::string decode(const std::vector<std::int32_t>& ids) const;

  std::size_t vocab_size() const { return tokens_.size(); }
  PreTokenizer pre_tokenizer() const { return pre_; }
  void set_pre_tokenizer(PreTokenizer pre);  // for cross-checks against other rules
  const std::string& token(std::int32_t id) const { return tokens_.at(std::size_t(id)); }

  // The same tokenizer as an HF tokenizer.json document (BPE model, added special tokens,
  // pre-tokenizer and decoder), so exported folders carry their tokenizer.
  nlohmann::json to_hf_json() const;

 private:
  void encode_piece(std::string_view piece, std::vector<std::int32_t>& out) const;
  void encode_ordinary(std::string_view text, std::vector<std::int32_t>& out) const;

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int32_t> ids_;
  std::vector<std::string> merges_;                           // "left right", by rank
  std::unordered_map<std::string, std::int32_t> merge_ranks_;  // "left right" -> rank
  std::vector<std::int32_t> special_ids_;
  std::vector<std::string> specials_;                         // longest first
  PreTokenizer pre_;
  std::string source_;
  struct Regex;
  std::unique_ptr<Regex> regex_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;
  // The text being encoded and its name, so an error can give the byte offset of the piece.
  mutable std::string_view encoding_text_, encoding_origin_;
};

// Replaces every invalid UTF-8 sequence by U+FFFD, maximal-subpart style (Unicode §3.9), as
// Python's decode(errors="replace") does, so ekv-uptrain reads a text as the C++ tools do.
struct InvalidUtf8 {
  std::size_t sequences = 0;     // replaced
  std::size_t first_offset = 0;  // byte offset of the first, in the raw text
};
std::string sanitize_utf8(std::string_view text, InvalidUtf8* found = nullptr);

}  // namespace ekv
