#include "ekv/compressed/compression_plan.hpp"

#include "ekv/core/error.hpp"
#include "ekv/io/artifact_matrix.hpp"
#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/lrd/layer_factors.hpp"
#include "ekv/lrd/rank_budget.hpp"
#include "ekv/rope/rope_file.hpp"

namespace ekv {

namespace fs = std::filesystem;


CompressionPlan::CompressionPlan(const ModelSource& model, const fs::path& rope_path, const fs::path& jlrd_path)
    : model_(model), config_(model.config()), jlrd_(jlrd_path) {
  const ModelConfig& c = model.config();
  require_original_attention(model, "ekv-export");
  const RopeData rope = read_rope_of(rope_path, model.config(), model.fingerprint(), model.path().string());
  jlrd_.artifact().require_model(model.fingerprint(), model.path().string());
  // jlrd.h5 records the sha256 of the rope file it used: it must be this one.
  const ArtifactInput rope_input = file_input(rope_path, "rope");
  bool chained = false;
  std::string used;
  for (const auto& input : jlrd_.artifact().provenance().inputs)
    if (input.type == "rope") {
      used = input.path + " (" + input.digest.substr(0, 19) + "…)";
      chained = input.digest == rope_input.digest;
    }
  EKV_CHECK(chained, jlrd_path.string(), ": inputs: factored with the elite chunks of ", used.empty() ? "no rope file" : used,
            ", not of ", rope_path.string(), " (", rope_input.digest.substr(0, 19), "…)");

  const int r = jlrd_.r(), begin = jlrd_.layer_begin(), end = jlrd_.layer_end();
  EKV_CHECK(begin == 0 && end == c.layers, jlrd_path.string(), ": factors layers ", begin, ":", end,
            "; an export needs every layer 0:", c.layers, " (merge or re-run ekv-jlrd without --layers)");
  EKV_CHECK(rope.layer_begin == 0 && rope.layer_end == c.layers && r <= rope.options.r_max, rope_path.string(),
            ": holds layers ", rope.layer_begin, ":", rope.layer_end, " up to r = ", rope.options.r_max,
            "; jlrd.h5 needs r = ", r, " for layers 0:", c.layers);
  const int G = c.kv_heads, dh = c.head_dim;
  config_.elitekv.r = r;
  for (int l = 0; l < c.layers; ++l) {
    config_.elitekv.elite.push_back(elite_sets(rope, l, r));
    config_.elitekv.kv_rank.push_back(jlrd_.rank(l, c.hidden));
  }
  config_.validate(jlrd_path.string());
  // B_k rows must be the non-elite dims of each head in ascending order (JointLayout's order).
  for (int l = 0; l < c.layers; ++l) {
    const auto key_dims = jlrd_.key_dims(l, G, dh);
    std::size_t row = 0;
    for (int j = 0; j < G; ++j)
      for (int dim : config_.elitekv.rest_dims(l, j, dh)) {
        const auto [head, stored] = key_dims[row];
        EKV_CHECK(head == j && stored == dim, jlrd_path.string(), ": ", layer_dataset(l, "key_dims"), " row ", row,
                  ": (head ", head, ", dim ", stored, ") but the elite chunks of ", rope_path.string(), " at r = ", r,
                  " leave (head ", j, ", dim ", dim, ")");
        ++row;
      }
  }
  inputs_ = {{model.path().string(), model.format(), "fingerprint:" + model.fingerprint()}, rope_input,
             file_input(jlrd_path, "jlrd")};
  for (const auto& input : jlrd_.artifact().provenance().inputs)  // the calibration the factors were fitted on
    if (input.type == "calib") inputs_.push_back(input);
}

LayerWeights CompressionPlan::layer(int index) const {
  LayerWeights w = model_.layer(index);
  const int G = config_.kv_heads, dh = config_.head_dim, r = config_.elitekv.r, half = dh / 2, d = config_.hidden;
  w.wk_rope.resize(Eigen::Index(2) * r * G, d);
  // The elite rows of the key bias rotate with their keys; the rest of it is dropped: it adds
  // to each logit of a query the same constant, which softmax ignores (docs/method.md §10).
  if (w.bk.size()) w.bk_rope.resize(Eigen::Index(2) * r * G);
  for (int j = 0; j < G; ++j) {
    const auto& chunks = config_.elitekv.elite[std::size_t(index)][std::size_t(j)];
    for (int i = 0; i < r; ++i)
      for (int part = 0; part < 2; ++part) {
        const Eigen::Index to = j * 2 * r + part * r + i, from = j * dh + chunks[std::size_t(i)] + part * half;
        w.wk_rope.row(to) = w.wk.row(from);
        if (w.bk.size()) w.bk_rope[to] = w.bk[from];
      }
  }
  JlrdLayer factors = jlrd_.layer(index, d, config_.heads, G, dh);
  w.kv_a = std::move(factors.a);
  w.k_b = std::move(factors.b_k);
  w.v_b = std::move(factors.b_v);
  if (factors.o_proj) w.wo = std::move(*factors.o_proj);  // refitted by ekv-jlrd --refit-output
  w.wk.resize(0, 0);
  w.wv.resize(0, 0);
  w.bk.resize(0);  // bv stays: it is v_b_proj's bias (Σ p = 1 carries it through attention)
  return w;
}

double CompressionPlan::cache_ratio() const {
  double sum = 0;
  for (int rank : config_.elitekv.kv_rank)
    sum += ekv::cache_ratio(config_.elitekv.r, config_.kv_heads, config_.head_dim, rank);
  return sum / config_.layers;
}

}  // namespace ekv
