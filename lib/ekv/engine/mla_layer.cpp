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
  EKV_CHECK(w.bq.size() == 0 && w.bk_rope.size() == 0 && w.bv.size() == 0, "MLA layer ", layer,
            ": attention biases are not written into an MLA layer");
  const auto& holders = plan.holder[std::size_t(layer)];
  MlaLayer out;

  out.q = Matrix::Zero(Eigen::Index(H) * (nope + rot), d);
  for (int h = 0; h < H; ++h) {
    const int j = h / g;
    const Eigen::Index base = Eigen::Index(h) * (nope + rot);
    const std::vector<int> rest_dims = c.elitekv.rest_dims(layer, j, dh);
    for (int i = 0; i < rest; ++i) out.q.row(base + i) = w.wq.row(Eigen::Index(h) * dh + rest_dims[std::size_t(i)]);
    for (int s = 0; s < plan.slots(); ++s) {
      const SlotHolder& holder = holders[std::size_t(s)];
      if (holder.kv_head != j) continue;  // another group's key: this head reads zeros there
      const int chunk = plan.slot_chunks[std::size_t(s)];
      out.q.row(base + nope + 2 * s) = w.wq.row(Eigen::Index(h) * dh + chunk);
      out.q.row(base + nope + 2 * s + 1) = w.wq.row(Eigen::Index(h) * dh + chunk + half);
    }
  }
  out.q *= float(query_scale);

  out.kv_a = Matrix::Zero(rank + rot, d);
  out.kv_a.topRows(d_kv) = (w.kv_a.cast<double>() * norm.scale).cast<float>();
  for (int s = 0; s < plan.slots(); ++s) {
    const SlotHolder& holder = holders[std::size_t(s)];
    if (holder.kv_head < 0) continue;
    const Eigen::Index from = Eigen::Index(holder.kv_head) * 2 * r + holder.index;  // the k_e layout: c's, then c + d_h/2
    out.kv_a.row(rank + 2 * s) = w.wk_rope.row(from);
    out.kv_a.row(rank + 2 * s + 1) = w.wk_rope.row(from + r);
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
  return out;
}

}  // namespace ekv
