#include "ekv/model/tensor_names.hpp"

namespace ekv {

const std::vector<LayerTensorSpec>& layer_tensor_specs() {
  static const std::vector<LayerTensorSpec> specs = {
      {"input_layernorm", "attn_norm"},       {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},         {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"},    {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "ffn_gate"},          {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
  };
  return specs;
}

std::string layer_tensor_name(int layer, const std::string& hf_suffix) {
  return "model.layers." + std::to_string(layer) + "." + hf_suffix + ".weight";
}

std::string layer_bias_name(int layer, const std::string& hf_suffix) {
  return "model.layers." + std::to_string(layer) + "." + hf_suffix + ".bias";
}

std::vector<std::string> attention_bias_suffixes(const ModelConfig& config) {
  if (!config.attention_bias) return {};
  if (config.elitekv.enabled()) return {"self_attn.q_proj", "self_attn.k_rope_proj", "self_attn.v_b_proj"};
  return {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
}

std::optional<std::string> canonical_from_gguf(const std::string& gguf_name) {
  if (gguf_name == "token_embd.weight") return kEmbeddingName;
  if (gguf_name == "output_norm.weight") return kFinalNormName;
  if (gguf_name == "output.weight") return kOutputName;
  const std::string prefix = "blk.";
  if (gguf_name.rfind(prefix, 0) != 0) return std::nullopt;
  const auto dot = gguf_name.find('.', prefix.size());
  if (dot == std::string::npos) return std::nullopt;
  const std::string number = gguf_name.substr(prefix.size(), dot - prefix.size());
  if (number.empty() || number.size() > 6 || number.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const std::string rest = gguf_name.substr(dot + 1);
  for (const auto& spec : layer_tensor_specs()) {
    if (rest == std::string(spec.gguf_suffix) + ".weight") return layer_tensor_name(std::stoi(number), spec.hf_suffix);
    if (rest == std::string(spec.gguf_suffix) + ".bias") return layer_bias_name(std::stoi(number), spec.hf_suffix);
  }
  return std::nullopt;
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  const std::int64_t d = c.hidden, q = std::int64_t(c.heads) * c.head_dim, kv = std::int64_t(c.kv_heads) * c.head_dim;
  std::vector<ExpectedTensor> tensors = {{kEmbeddingName, {c.vocab, d}}, {kFinalNormName, {d}}};
  if (!c.tied_embeddings) tensors.push_back({kOutputName, {c.vocab, d}});
  for (int l = 0; l < c.layers; ++l) {
    tensors.push_back({layer_tensor_name(l, "input_layernorm"), {d}});
    tensors.push_back({layer_tensor_name(l, "self_attn.q_proj"), {q, d}});
    if (c.elitekv.enabled()) {
      const std::int64_t rope_rows = 2LL * c.elitekv.r * c.kv_heads, rank = c.elitekv.kv_rank[std::size_t(l)];
      tensors.push_back({layer_tensor_name(l, "self_attn.k_rope_proj"), {rope_rows, d}});
      tensors.push_back({layer_tensor_name(l, "self_attn.kv_a_proj"), {rank, d}});
      tensors.push_back({layer_tensor_name(l, "self_attn.k_b_proj"), {kv - rope_rows, rank}});
      tensors.push_back({layer_tensor_name(l, "self_attn.v_b_proj"), {kv, rank}});
    } else {
      tensors.push_back({layer_tensor_name(l, "self_attn.k_proj"), {kv, d}});
      tensors.push_back({layer_tensor_name(l, "self_attn.v_proj"), {kv, d}});
    }
    tensors.push_back({layer_tensor_name(l, "self_attn.o_proj"), {d, q}});
    for (const std::string& suffix : attention_bias_suffixes(c)) {
      std::int64_t rows = suffix == "self_attn.q_proj" ? q : kv;
      if (suffix == "self_attn.k_rope_proj") rows = 2LL * c.elitekv.r * c.kv_heads;
      tensors.push_back({layer_bias_name(l, suffix), {rows}});
    }
    tensors.push_back({layer_tensor_name(l, "post_attention_layernorm"), {d}});
    tensors.push_back({layer_tensor_name(l, "mlp.gate_proj"), {c.ffn, d}});
    tensors.push_back({layer_tensor_name(l, "mlp.up_proj"), {c.ffn, d}});
    tensors.push_back({layer_tensor_name(l, "mlp.down_proj"), {d, c.ffn}});
  }
  return tensors;
}

}  // namespace ekv
