#include "ekv/engine/mla_layer.hpp"

#include "ekv/core/error.hpp"

namespace ekv {

MlaLayer mla_layer(const LayerWeights& w, const ModelConfig& c, const SlotPlan& plan, int layer,
                   const LatentNorm& norm, double query_scale) {
  const int H = c.heads, g = c.group_size(), dh = c.head_dim, half = dh / 2, d = c.hidden, r = c.elitekv.r;
  const int nope = plan.nope_dim, rot = plan.rope_dims(), rank = plan.kv_lora_rank, rest = dh - 2 * r;
  const int d_kv = int(w.kv_a.rows());
  EKV_CHECK(w.wk_rope.rows() == 2 * r * c.kv_heads && d_kv <= rank && w.k_b.cols() == d_kv && w.v_b.cols() == d_kv,
            "MLA layer ", layer, ": the EliteKV tensors do not match the plan");
  const bool biased = w.bq.size() > 0;
  EKV_CHECK(biased == (w.bk_rope.size() > 0) && biased == (w.bv.size() > 0), "MLA layer ", layer,
            ": the query, elite-key and value biases come together");
  const auto& holders = plan.holder[std::size_t(layer)];
  MlaLayer out;

  // Row `to` of q_proj (and of its bias) is row `from` of the original query.
  out.q = Matrix::Zero(Eigen::Index(H) * (nope + rot), d);
  if (biased) out.q_bias = Vector::Zero(out.q.rows());
  auto query_row = [&](Eigen::Index to, Eigen::Index from) {
    out.q.row(to) = w.wq.row(from);
    if (biased) out.q_bias[to] = w.bq[from];
  };
  for (int h = 0; h < H; ++h) {
    const int j = h / g;
    const Eigen::Index base = Eigen::Index(h) * (nope + rot);
    const std::vector<int> rest_dims = c.elitekv.rest_dims(layer, j, dh);
    for (int i = 0; i < rest; ++i) query_row(base + i, Eigen::Index(h) * dh + rest_dims[std::size_t(i)]);
    for (int s = 0; s < plan.slots(); ++s) {
      const SlotHolder& holder = holders[std::size_t(s)];
      if (holder.kv_head != j) continue;  // another group's key: this head reads zeros there
      const int chunk = plan.slot_chunks[std::size_t(s)];
      query_row(base + nope + 2 * s, Eigen::Index(h) * dh + chunk);
      query_row(base + nope + 2 * s + 1, Eigen::Index(h) * dh + chunk + half);
    }
  }
  out.q *= float(query_scale);
  if (biased) out.q_bias *= float(query_scale);

  out.kv_a = Matrix::Zero(rank + rot, d);
  out.kv_a.topRows(d_kv) = (w.kv_a.cast<double>() * norm.scale).cast<float>();
  if (biased) out.kv_a_bias = Vector::Zero(rank + rot);
  for (int s = 0; s < plan.slots(); ++s) {
    const SlotHolder& holder = holders[std::size_t(s)];
    if (holder.kv_head < 0) continue;
    const Eigen::Index from = Eigen::Index(holder.kv_head) * 2 * r + holder.index;  // the k_e layout: c's, then c + d_h/2
    for (int part = 0; part < 2; ++part) {
      out.kv_a.row(rank + 2 * s + part) = w.wk_rope.row(from + part * r);
      if (biased) out.kv_a_bias[rank + 2 * s + part] = w.bk_rope[from + part * r];
    }
  }
  out.kv_norm = Vector::Constant(rank, float(norm.weight));

  out.kv_b = Matrix::Zero(Eigen::Index(H) * (nope + dh), rank);
  for (int h = 0; h < H; ++h) {
    const int j = h / g;
    const Eigen::Index base = Eigen::Index(h) * (nope + dh);
    out.kv_b.block(base, 0, rest, d_kv) = (w.k_b.middleRows(Eigen::Index(j) * rest, rest).cast<double>() *
                                           norm.up_scale).cast<float>();
    out.kv_b.block(base + nope, 0, dh, d_kv) =
        (w.v_b.middleRows(Eigen::Index(j) * dh, dh).cast<double>() * norm.up_scale).cast<float>();
  }
  out.o = w.wo;
  if (biased) {  // Σ_n p = 1 carries b_v through attention whole: W_o [b_v^{j(h)}]_h
    Eigen::VectorXd per_head(Eigen::Index(H) * dh);
    for (int h = 0; h < H; ++h) per_head.segment(Eigen::Index(h) * dh, dh) = w.bv.segment(Eigen::Index(h / g) * dh, dh).cast<double>();
    out.o_bias = (w.wo.cast<double>() * per_head).cast<float>();
  }
  return out;
}

}  // namespace ekv
