#include "ekv/refine/attention_weighting.hpp"

#include <Eigen/Eigenvalues>
#include <cmath>
#include <vector>

#include "ekv/core/error.hpp"

namespace ekv {

namespace {
// Symmetric square root of a PSD matrix normalised to unit mean eigenvalue, and its inverse;
// eigenvalues are floored at 1e-6 of the largest so the inverse stays bounded.
std::pair<Eigen::MatrixXd, Eigen::MatrixXd> normalised_sqrt(const Eigen::MatrixXd& m) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(m);
  Eigen::VectorXd values = eig.eigenvalues();
  const double top = values.maxCoeff();
  EKV_CHECK(std::isfinite(top) && top > 0, "attention weighting: a second-moment matrix has no positive eigenvalue");
  values = values.cwiseMax(1e-6 * top);
  values /= values.mean();
  const Eigen::MatrixXd& v = eig.eigenvectors();
  return {v * values.cwiseSqrt().asDiagonal() * v.transpose(), v * values.cwiseSqrt().cwiseInverse().asDiagonal() * v.transpose()};
}
}  // namespace

RowWeights attention_row_weights(const LayerWeights& w, const ModelConfig& c, const JointLayout& layout,
                                 const Eigen::MatrixXd& gram, double key_scale) {
  const int G = c.kv_heads, dh = c.head_dim, g = c.group_size();
  const Eigen::Index rows = Eigen::Index(layout.rows.size());
  RowWeights out{MatrixD::Zero(rows, rows), MatrixD::Zero(rows, rows)};
  Eigen::Index first = 0;
  for (const bool key : {true, false})
    for (int j = 0; j < G; ++j) {
      std::vector<int> dims;
      for (const auto& row : layout.rows)
        if (row.key == key && row.head == j) dims.push_back(row.dim);
      const Eigen::Index n = Eigen::Index(dims.size());
      if (n == 0) continue;
      Eigen::MatrixXd moment = Eigen::MatrixXd::Zero(n, n);
      for (int h = j * g; h < (j + 1) * g; ++h) {
        Eigen::MatrixXd part(n, key ? w.wq.cols() : w.wo.rows());
        for (Eigen::Index i = 0; i < n; ++i) {
          const Eigen::Index column = h * dh + dims[std::size_t(i)];
          if (key)
            part.row(i) = w.wq.row(column).cast<double>();
          else
            part.row(i) = w.wo.col(column).cast<double>().transpose();
        }
        moment += key ? Eigen::MatrixXd(part * gram * part.transpose()) : Eigen::MatrixXd(part * part.transpose());
      }
      auto [root, inverse] = normalised_sqrt(moment);
      const double scale = key ? key_scale : 1.0;
      out.left.block(first, first, n, n) = scale * root;
      out.left_inverse.block(first, first, n, n) = inverse / scale;
      first += n;
    }
  EKV_CHECK(first == rows, "attention weighting: the joint layout is not grouped by part and head");
  return out;
}

double balanced_key_scale(const MatrixD& joint, const JointLayout& layout, const RowWeights& unit,
                          const Eigen::MatrixXd& gram) {
  const Eigen::Index keys = layout.key_rows;
  if (keys == 0) return 1;
  const MatrixD weighted = unit.left * joint;
  const double key = (weighted.topRows(keys) * gram).cwiseProduct(weighted.topRows(keys)).sum();
  const double value = (weighted.bottomRows(joint.rows() - keys) * gram).cwiseProduct(weighted.bottomRows(joint.rows() - keys)).sum();
  return key > 0 ? std::sqrt(value / key) : 1.0;
}

}  // namespace ekv
