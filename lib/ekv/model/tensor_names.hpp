// Canonical tensor names (the HF LLaMA names) and their GGUF equivalents.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ekv/model/config.hpp"

namespace ekv {

// The per-layer tensors of a LLaMA decoder layer, by HF suffix ("self_attn.q_proj").
struct LayerTensorSpec {
  const char* hf_suffix;    // after "model.layers.{l}."
  const char* gguf_suffix;  // after "blk.{l}."
};
const std::vector<LayerTensorSpec>& layer_tensor_specs();

std::string layer_tensor_name(int layer, const std::string& hf_suffix);  // "model.layers.3.self_attn.q_proj.weight"
std::string layer_bias_name(int layer, const std::string& hf_suffix);    // "model.layers.3.self_attn.q_proj.bias"

// The projections that carry a bias when ModelConfig::attention_bias is set (Qwen2's q/k/v;
// an EliteKV model's q, elite-key and value up-projections: docs/method.md §10).
std::vector<std::string> attention_bias_suffixes(const ModelConfig& config);

inline const std::string kEmbeddingName = "model.embed_tokens.weight";
inline const std::string kFinalNormName = "model.norm.weight";
inline const std::string kOutputName = "lm_head.weight";

// GGUF name -> canonical name; nullopt for tensors ekv does not use.
std::optional<std::string> canonical_from_gguf(const std::string& gguf_name);

// Every tensor a model with this config must have (an EliteKV model: k_rope_proj, kv_a_proj,
// k_b_proj and v_b_proj instead of k_proj and v_proj), with its row-major shape.
struct ExpectedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

}  // namespace ekv
