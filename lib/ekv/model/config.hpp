// The shape and hyper-parameters of a LLaMA-family model, read from GGUF metadata or an
// HF config.json, and written back as an HF config.json.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ekv {

class GgufFile;

// RoPE frequency rules that config files use (docs/method.md §2 "then any rope-scaling rule").
struct RopeScaling {
  // none | linear | llama3 | factors (per-chunk divisors of ω from a GGUF rope_freqs tensor that
  // matches no Llama 3 rule ekv knows: usable by ekv, not writable as an HF config)
  std::string kind = "none";
  double factor = 1.0;
  double low_freq_factor = 1.0;                 // llama3
  double high_freq_factor = 4.0;                // llama3
  std::int64_t original_max_position = 8192;    // llama3
  std::vector<double> factors;                  // factors: ω_c / factors[c], one per chunk
};

inline constexpr const char* kEliteKvModelType = "elitekv_llama";  // config.json model_type of ekv-export

// The attention of an EliteKV-compressed model (docs/method.md §6): per layer, the elite RoPE
// chunks of every KV head (r each, ascending) and the latent rank d_kv. Empty: ordinary attention.
struct EliteKvSpec {
  int r = 0;
  std::vector<std::vector<std::vector<int>>> elite;  // [layer][kv head][r] chunk indices
  std::vector<int> kv_rank;                          // [layer] d_kv

  bool enabled() const { return !kv_rank.empty(); }
  // The non-elite dims of KV head j of `layer`, ascending (the row order of k_b_proj).
  std::vector<int> rest_dims(int layer, int kv_head, int head_dim) const;
};

// A set of RoPE chunk indices as rope.h5, config.json and the decode pack store it: strictly
// ascending (so distinct) and within [0, chunks).
inline bool is_chunk_set(const std::vector<int>& set, int chunks) {
  for (std::size_t i = 0; i < set.size(); ++i)
    if (set[i] < 0 || set[i] >= chunks || (i > 0 && set[i] <= set[i - 1])) return false;
  return true;
}

// What ekv takes for a plausible model (ModelConfig::validate), and so for the counts an
// artifact may hold: past these a file is corrupt, not large.
inline constexpr int kMaxLayers = 1024, kMaxHeads = 1024, kMaxHeadDim = 1024;

struct ModelConfig {
  std::string architecture = "llama";
  std::string name;
  int layers = 0;           // L
  int hidden = 0;           // d
  int heads = 0;            // H
  int kv_heads = 0;         // G
  int head_dim = 0;         // d_h
  int ffn = 0;              // SwiGLU intermediate size
  int vocab = 0;
  std::int64_t context = 0;  // max positions
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double norm_eps = 1e-5;
  bool tied_embeddings = false;
  // q/k/v projections carry biases (Qwen2). An EliteKV model then has q, elite-key and value
  // up-projection biases; the non-elite key bias is dropped exactly (docs/method.md §10).
  bool attention_bias = false;
  std::int64_t bos_token = -1;
  std::int64_t eos_token = -1;
  EliteKvSpec elitekv;  // set for a model written by ekv-export

  int group_size() const { return heads / kv_heads; }  // g = H / G
  int chunks() const { return head_dim / 2; }          // n_c

  // Fails with `source` in the message unless every field is usable.
  void validate(const std::string& source) const;
  std::string describe() const;  // multi-line "key: value" text for ekv-info
};

ModelConfig config_from_gguf(const GgufFile& gguf);
ModelConfig config_from_hf(const nlohmann::json& config, const std::string& source);
nlohmann::json config_to_hf(const ModelConfig& config);

}  // namespace ekv
