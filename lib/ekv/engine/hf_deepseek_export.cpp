// transformers' DeepseekV3 checkpoint of an EliteKV model (docs/formats.md "Engine formats"): the
// config and tensor names of transformers 5.23's models/deepseek_v3, with every layer dense and a
// plain query projection, loadable by AutoModelForCausalLM without remote code.
#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/engine/engine_export.hpp"
#include "ekv/engine/mla_model.hpp"
#include "ekv/model/hf_writer.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/model/tensor_names.hpp"

namespace ekv {

namespace fs = std::filesystem;

namespace {
// The rotary part of the config: slots at one progression with geometric frequencies take the
// default rule (or linear scaling, when slot 0 is not chunk 0), as llama.cpp's do; any other
// multiset takes longrope with one factor per slot (base 1, so the factor is 1/ω exactly).
void rope_config(const ModelConfig& c, const SlotPlan& plan, nlohmann::json& config) {
  const std::vector<double> omega = rope_frequencies(c);
  const int slots = plan.slots();
  bool geometric = true;
  const double ratio = slots > 1 ? omega[std::size_t(plan.slot_chunks[1])] / omega[std::size_t(plan.slot_chunks[0])] : 1;
  for (int i = 1; i < slots && geometric; ++i) {
    const double want = omega[std::size_t(plan.slot_chunks[std::size_t(i)])];
    geometric = plan.slot_chunks[std::size_t(i)] > plan.slot_chunks[std::size_t(i - 1)] &&
                std::abs(omega[std::size_t(plan.slot_chunks[0])] * std::pow(ratio, i) - want) <= 1e-9 * want;
  }
  if (geometric && slots > 1) {
    const double first = omega[std::size_t(plan.slot_chunks[0])];
    config["rope_theta"] = std::pow(ratio, -double(slots));  // ratio = θ_b^(−2/n_rot)
    config["rope_scaling"] = first == 1.0 ? nlohmann::json(nullptr)
                                          : nlohmann::json{{"rope_type", "linear"}, {"factor", 1.0 / first}};
    return;
  }
  std::vector<double> factors;
  for (int chunk : plan.slot_chunks) factors.push_back(1.0 / omega[std::size_t(chunk)]);
  config["rope_theta"] = 1.0;
  config["rope_scaling"] = {{"rope_type", "longrope"}, {"short_factor", factors}, {"long_factor", factors},
                            {"factor", 1.0}, {"attention_factor", 1.0},
                            {"original_max_position_embeddings", c.context}};
}

// DeepseekV3 has no query bias, but its low-rank query path has one (q_a_proj's, with attention
// bias on): q_a = s·[x; 1], made linear through q_a_layernorm as the latent is (latent_norm),
// and q_b = [W_q | b_q] / κ gives W_q x + b_q exactly (docs/method.md §11).
struct BiasedQuery {
  Matrix q_a;         // [d + 1, d]
  Vector q_a_bias;    // [d + 1]
  Vector q_a_norm;    // [d + 1]
  Matrix q_b;         // [rows, d + 1]
};

BiasedQuery biased_query(const MlaLayer& m, const Vector& attn_norm, double eps) {
  const Eigen::Index d = m.q.cols();
  const LatentNorm norm = linear_rms_norm(input_with_one_bound(attn_norm), eps);
  BiasedQuery out;
  out.q_a = Matrix::Zero(d + 1, d);
  out.q_a.topRows(d).diagonal().setConstant(float(norm.scale));
  out.q_a_bias = Vector::Zero(d + 1);
  out.q_a_bias[d] = float(norm.scale);
  out.q_a_norm = Vector::Constant(d + 1, float(norm.weight));
  out.q_b.resize(m.q.rows(), d + 1);
  out.q_b.leftCols(d) = (m.q.cast<double>() * norm.up_scale).cast<float>();
  out.q_b.col(d) = (m.q_bias.cast<double>() * norm.up_scale).cast<float>();
  return out;
}
}  // namespace

EngineExportSummary write_hf_deepseek_model(const EngineInput& input, const fs::path& folder, DType dtype) {
  EKV_CHECK(dtype == DType::f32 || dtype == DType::bf16, folder.string(), ": hf-deepseek is written in f32 or bf16; ",
            "in f16 the latent norm's weight (a power of two near sqrt(eps)/s) overflows");
  EKV_CHECK(input.original, folder.string(), ": the original model is needed for the tokenizer");
  const ModelConfig& c = input.config;
  MlaModel model(input, EngineFormat::hf_deepseek);
  const SlotPlan& plan = model.plan();
  const EngineExportSummary& summary = model.summary();
  const int H = c.heads, dh = c.head_dim, rank = plan.kv_lora_rank, rot = plan.rope_dims(), nope = plan.nope_dim;
  const std::int64_t d = c.hidden;

  nlohmann::json config = {
      {"architectures", {"DeepseekV3ForCausalLM"}},
      {"model_type", "deepseek_v3"},
      {"vocab_size", c.vocab},
      {"hidden_size", d},
      {"intermediate_size", c.ffn},
      {"moe_intermediate_size", c.ffn},
      {"num_hidden_layers", c.layers},
      {"num_attention_heads", H},
      {"num_key_value_heads", H},  // after kv_b_proj every query head has its own key and value
      {"first_k_dense_replace", c.layers},  // every layer dense: no mixture of experts
      {"n_routed_experts", 1},
      {"n_shared_experts", 0},
      {"num_experts_per_tok", 1},
      {"n_group", 1},
      {"topk_group", 1},
      {"num_nextn_predict_layers", 0},
      {"q_lora_rank", c.attention_bias ? nlohmann::json(d + 1) : nlohmann::json(nullptr)},  // see BiasedQuery
      {"kv_lora_rank", rank},
      {"qk_rope_head_dim", rot},
      {"qk_nope_head_dim", nope},
      {"v_head_dim", dh},
      {"rope_interleave", true},  // slot i is the consecutive pair (2i, 2i+1)
      {"hidden_act", "silu"},
      {"max_position_embeddings", c.context},
      {"rms_norm_eps", summary.norm_eps},
      {"tie_word_embeddings", c.tied_embeddings},
      {"attention_bias", c.attention_bias},  // q_a_proj, kv_a_proj_with_mqa and o_proj biases
      {"attention_dropout", 0.0},
      {"use_cache", true},
  };
  if (c.bos_token >= 0) config["bos_token_id"] = c.bos_token;
  if (c.eos_token >= 0) config["eos_token_id"] = c.eos_token;
  rope_config(c, plan, config);
  config["ekv_engine"] = {{"format", "hf-deepseek"}, {"slot_chunks", plan.slot_chunks},
                         {"stream_scale", summary.stream_scale}, {"query_scale", summary.query_scale}};

  CheckpointContents contents;
  contents.config = config;
  contents.tensors.push_back({kEmbeddingName, {c.vocab, d}});
  for (int l = 0; l < c.layers; ++l) {
    auto name = [l](const std::string& suffix) { return layer_tensor_name(l, suffix); };
    contents.tensors.push_back({name("input_layernorm"), {d}});
    if (c.attention_bias) {
      contents.tensors.push_back({name("self_attn.q_a_proj"), {d + 1, d}});
      contents.tensors.push_back({layer_bias_name(l, "self_attn.q_a_proj"), {d + 1}});
      contents.tensors.push_back({name("self_attn.q_a_layernorm"), {d + 1}});
      contents.tensors.push_back({name("self_attn.q_b_proj"), {std::int64_t(H) * (nope + rot), d + 1}});
    } else {
      contents.tensors.push_back({name("self_attn.q_proj"), {std::int64_t(H) * (nope + rot), d}});
    }
    contents.tensors.push_back({name("self_attn.kv_a_proj_with_mqa"), {rank + rot, d}});
    if (c.attention_bias) contents.tensors.push_back({layer_bias_name(l, "self_attn.kv_a_proj_with_mqa"), {rank + rot}});
    contents.tensors.push_back({name("self_attn.kv_a_layernorm"), {rank}});
    contents.tensors.push_back({name("self_attn.kv_b_proj"), {std::int64_t(H) * (nope + dh), rank}});
    contents.tensors.push_back({name("self_attn.o_proj"), {d, std::int64_t(H) * dh}});
    if (c.attention_bias) contents.tensors.push_back({layer_bias_name(l, "self_attn.o_proj"), {d}});
    contents.tensors.push_back({name("post_attention_layernorm"), {d}});
    contents.tensors.push_back({name("mlp.gate_proj"), {c.ffn, d}});
    contents.tensors.push_back({name("mlp.up_proj"), {c.ffn, d}});
    contents.tensors.push_back({name("mlp.down_proj"), {d, c.ffn}});
  }
  contents.tensors.push_back({kFinalNormName, {d}});
  if (!c.tied_embeddings) contents.tensors.push_back({kOutputName, {c.vocab, d}});

  const std::string prefix = "model.layers.";
  BiasedQuery query;
  int query_layer = -1;
  contents.load = [&](const ExpectedTensor& tensor) -> std::vector<float> {
    if (tensor.name == kEmbeddingName) return model.embedding();
    if (tensor.name == kFinalNormName) return model.final_norm();
    if (tensor.name == kOutputName) return model.output();
    const std::size_t dot = tensor.name.find('.', prefix.size());
    const int l = std::stoi(tensor.name.substr(prefix.size(), dot - prefix.size()));
    const MlaModel::Layer& layer = model.layer(l);
    const bool bias = tensor.name.ends_with(".bias");
    const std::string suffix =
        tensor.name.substr(dot + 1, tensor.name.size() - dot - 1 - std::string(bias ? ".bias" : ".weight").size());
    if (suffix.rfind("self_attn.q_", 0) == 0 && suffix != "self_attn.q_proj") {
      if (query_layer != l) query = biased_query(layer.attention, layer.original.attn_norm, summary.norm_eps), query_layer = l;
      if (suffix == "self_attn.q_a_proj") return bias ? flat_values(query.q_a_bias) : flat_values(query.q_a);
      if (suffix == "self_attn.q_a_layernorm") return flat_values(query.q_a_norm);
      if (suffix == "self_attn.q_b_proj") return flat_values(query.q_b);
    }
    if (bias && suffix == "self_attn.kv_a_proj_with_mqa") return flat_values(layer.attention.kv_a_bias);
    if (bias && suffix == "self_attn.o_proj") return flat_values(layer.attention.o_bias);
    if (suffix == "input_layernorm") return flat_values(layer.original.attn_norm);
    if (suffix == "post_attention_layernorm") return flat_values(layer.original.ffn_norm);
    if (suffix == "self_attn.q_proj") return flat_values(layer.attention.q);
    if (suffix == "self_attn.kv_a_proj_with_mqa") return flat_values(layer.attention.kv_a);
    if (suffix == "self_attn.kv_a_layernorm") return flat_values(layer.attention.kv_norm);
    if (suffix == "self_attn.kv_b_proj") return flat_values(layer.attention.kv_b);
    if (suffix == "self_attn.o_proj") return flat_values(layer.attention.o);
    if (suffix == "mlp.gate_proj") return flat_values(layer.original.w_gate);
    if (suffix == "mlp.up_proj") return flat_values(layer.original.w_up);
    if (suffix == "mlp.down_proj") return flat_values(layer.original.w_down);
    fail(cat("hf-deepseek: no tensor ", tensor.name));
  };
  write_checkpoint_folder(*input.original, folder, dtype, contents);
  return model.summary();
}

}  // namespace ekv
