#include "ekv/lrd/joint_matrix.hpp"

#include <algorithm>

#include "ekv/core/error.hpp"

namespace ekv {

MatrixD build_joint_matrix(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                           JointLayout& layout) {
  const int G = c.kv_heads, dh = c.head_dim, chunks = c.chunks();
  EKV_CHECK(int(elite.size()) == G, "joint matrix: ", elite.size(), " elite sets for ", G, " KV heads");
  layout = JointLayout();
  for (int j = 0; j < G; ++j) {
    EKV_CHECK(elite[std::size_t(j)].size() == elite[0].size(), "joint matrix: KV heads have different r");
    std::vector<bool> is_elite(std::size_t(chunks), false);
    for (int chunk : elite[std::size_t(j)]) {
      EKV_CHECK(chunk >= 0 && chunk < chunks && !is_elite[std::size_t(chunk)], "joint matrix: bad elite chunk ",
                chunk);
      is_elite[std::size_t(chunk)] = true;
    }
    for (int dim = 0; dim < dh; ++dim)  // dim c and c + n_c both belong to chunk c mod n_c
      if (!is_elite[std::size_t(dim % chunks)]) layout.rows.push_back({true, j, dim});
  }
  layout.key_rows = int(layout.rows.size());
  for (int j = 0; j < G; ++j)
    for (int dim = 0; dim < dh; ++dim) layout.rows.push_back({false, j, dim});
  MatrixD joint(Eigen::Index(layout.rows.size()), c.hidden);
  for (std::size_t i = 0; i < layout.rows.size(); ++i) {
    const auto& row = layout.rows[i];
    const Matrix& source = row.key ? w.wk : w.wv;
    joint.row(Eigen::Index(i)) = source.row(row.head * dh + row.dim).cast<double>();
  }
  return joint;
}

}  // namespace ekv
