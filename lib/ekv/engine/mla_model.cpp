#include "ekv/engine/mla_model.hpp"

#include <algorithm>
#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/lrd/rank_budget.hpp"
#include "ekv/model/tensor_names.hpp"

namespace ekv {

namespace {
// transformers' DeepseekV3 fixes the latent norm's epsilon at 1e-6 while engines that load the
// same checkpoint (vLLM, SGLang) take config.rms_norm_eps: written as 1e-6, both agree.
constexpr double kHfNormEps = 1e-6;
}  // namespace

MlaModel::MlaModel(const EngineInput& input, EngineFormat format) : input_(input) {
  const ModelConfig& c = input.config;
  summary_.plan = plan_slots(c, format);
  const SlotPlan& plan = summary_.plan;
  const double target = 1.0 / std::sqrt(double(c.head_dim));  // EliteKV's softmax scale (§3)
  double engine = 1.0 / std::sqrt(double(plan.nope_dim + plan.rope_dims()));
  if (format == EngineFormat::gguf) {
    // llama.cpp (deepseek2, linear RoPE scaling): kq_scale = m² / sqrt(key_length_mla) with
    // m = 1 + 0.1 ln(1 / freq_scale) (src/models/deepseek2.cpp, llama-cpp-python 0.3.36).
    const double m = plan.freq_scale == 1.0 ? 1.0 : 1.0 + 0.1 * std::log(1.0 / plan.freq_scale);
    engine *= m * m;
    summary_.norm_eps = c.norm_eps;
  } else {
    // RMSNorm(S·h) with eps·S² is RMSNorm(h) with eps: scaling the residual stream by S moves every
    // norm's epsilon to 1e-6 exactly.
    summary_.stream_scale = std::sqrt(kHfNormEps / c.norm_eps);
    summary_.norm_eps = kHfNormEps;
  }
  summary_.query_scale = target / engine;
  for (int rank : c.elitekv.kv_rank)
    summary_.elitekv_cache_elements += compressed_cache_elements(c.elitekv.r, c.kv_heads, rank);
  summary_.cache_elements = long(c.layers) * plan.cache_elements_per_layer();
}

const MlaModel::Layer& MlaModel::layer(int l) {
  if (l == built_) return layer_;
  layer_ = Layer{};  // freed first: a 7B layer is 0.8 GB in f32
  const ModelConfig& c = input_.config;
  LayerWeights w = input_.layer(l);
  const LatentNorm norm = linear_latent_norm(w.kv_a, w.attn_norm, plan().kv_lora_rank, summary_.norm_eps);
  summary_.max_norm_error = std::max(summary_.max_norm_error, norm.max_relative_error);
  layer_.attention = mla_layer(w, c, plan(), l, norm, summary_.query_scale);
  const float stream = float(summary_.stream_scale);
  if (stream != 1.0f) {
    layer_.attention.o *= stream;
    if (layer_.attention.o_bias.size()) layer_.attention.o_bias *= stream;
    w.w_down *= stream;
  }
  w.wq.resize(0, 0), w.wo.resize(0, 0), w.wk_rope.resize(0, 0), w.kv_a.resize(0, 0), w.k_b.resize(0, 0),
      w.v_b.resize(0, 0);
  layer_.original = std::move(w);
  built_ = l;
  return layer_;
}

std::vector<float> MlaModel::embedding() const {
  std::vector<float> values = input_.load(kEmbeddingName);
  const float stream = float(summary_.stream_scale);
  if (stream != 1.0f)
    for (float& v : values) v *= stream;
  return values;
}

std::vector<float> MlaModel::final_norm() const {
  std::vector<float> values = input_.load(kFinalNormName);
  // A tied output reads the scaled embedding: the final norm takes the factor back.
  if (input_.config.tied_embeddings && summary_.stream_scale != 1.0)
    for (float& v : values) v = float(double(v) / summary_.stream_scale);
  return values;
}

std::vector<float> MlaModel::output() const {
  return input_.config.tied_embeddings ? std::vector<float>{} : input_.load(kOutputName);
}

}  // namespace ekv
