#include "ekv/lrd/layer_factors.hpp"

#include <cmath>

#include "ekv/core/error.hpp"

namespace ekv {

LayerFactors::LayerFactors(MatrixD joint, JointLayout layout, const Eigen::MatrixXd* gram, const LrdOptions& options)
    : joint_(std::move(joint)), layout_(std::move(layout)), options_(options) {
  EKV_CHECK(gram || (!options.whitened && !options.balance_kv),
            "whitened SVD and K/V balancing need the calibration Gram (--calib)");
  const Eigen::Index keys = layout_.key_rows;
  MatrixD scaled = joint_;
  if (options.balance_kv && keys > 0) {
    const double key_norm = data_norm(joint_.topRows(keys), *gram);
    const double value_norm = data_norm(joint_.bottomRows(joint_.rows() - keys), *gram);
    alpha_ = key_norm > 0 ? value_norm / key_norm : 1.0;
    scaled.topRows(keys) *= alpha_;
  }
  const Eigen::MatrixXd* whitening = options.whitened ? gram : nullptr;
  if (options.joint) {
    joint_svd_ = std::make_unique<Decomposition>(scaled, whitening);
  } else {
    if (keys > 0) key_svd_ = std::make_unique<Decomposition>(MatrixD(scaled.topRows(keys)), whitening);
    value_svd_ = std::make_unique<Decomposition>(MatrixD(scaled.bottomRows(scaled.rows() - keys)), whitening);
  }
}

int LayerFactors::max_rank() const {
  if (joint_svd_) return joint_svd_->max_rank();
  return (key_svd_ ? key_svd_->max_rank() : 0) + value_svd_->max_rank();
}

double LayerFactors::lambda() const {
  if (joint_svd_) return joint_svd_->lambda();
  return std::max(key_svd_ ? key_svd_->lambda() : 0.0, value_svd_->lambda());
}

Eigen::VectorXd LayerFactors::singular_values() const {
  return joint_svd_ ? joint_svd_->singular_values() : Eigen::VectorXd();
}

int LayerFactors::key_rank(int rank) const {
  if (!key_svd_) return 0;
  const int keys = layout_.key_rows, total = int(joint_.rows());
  const int share = int(std::lround(double(rank) * keys / total));
  return std::min({share, key_svd_->max_rank(), rank});
}

LowRank LayerFactors::factor(int rank) const {
  EKV_CHECK(rank >= 0 && rank <= max_rank(), "rank ", rank, " outside [0, ", max_rank(), "]");
  const Eigen::Index keys = layout_.key_rows, rows = joint_.rows(), d = joint_.cols();
  LowRank result;
  if (joint_svd_) {
    result = joint_svd_->factor(rank);
  } else {  // block form: A = [A_k; A_v], B = diag(B_k, B_v)
    int k_rank = key_rank(rank);
    int v_rank = std::min(rank - k_rank, value_svd_->max_rank());
    k_rank = rank - v_rank;
    const LowRank k = key_svd_ ? key_svd_->factor(k_rank) : LowRank{MatrixD(0, d), MatrixD(0, 0)};
    const LowRank v = value_svd_->factor(v_rank);
    result.a.resize(rank, d);
    result.a << k.a, v.a;
    result.b = MatrixD::Zero(rows, rank);
    if (keys > 0) result.b.topLeftCorner(keys, k_rank) = k.b;
    result.b.bottomRightCorner(rows - keys, v_rank) = v.b;
  }
  if (keys > 0) result.b.topRows(keys) /= alpha_;  // undo the balancing on B_k
  return result;
}

}  // namespace ekv
