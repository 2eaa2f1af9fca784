#include "ekv/lrd/layer_factors.hpp"

#include <cmath>

#include "ekv/core/error.hpp"

namespace ekv {

const NameTable<FactorMode>& name_table(FactorMode) {
  static const NameTable<FactorMode> table{
      {"joint", FactorMode::joint}, {"separate", FactorMode::separate}, {"values", FactorMode::values}};
  return table;
}

const NameTable<SvdBasis>& name_table(SvdBasis) {
  static const NameTable<SvdBasis> table{{"weight", SvdBasis::weight}, {"whitened", SvdBasis::whitened}};
  return table;
}

LayerFactors::LayerFactors(MatrixD joint, JointLayout layout, const Eigen::MatrixXd* gram, const LrdOptions& options,
                           const RowWeights* rows)
    : joint_(std::move(joint)), layout_(std::move(layout)), options_(options), weighted_(rows != nullptr) {
  const bool whitened = options.basis == SvdBasis::whitened, drop_keys = options.mode == FactorMode::values;
  EKV_CHECK(gram || (!whitened && !options.balance_kv),
            "whitened SVD and K/V balancing need the calibration Gram (--calib)");
  EKV_CHECK(!rows || (options.mode == FactorMode::joint && !options.balance_kv),
            "attention-aware weights need joint mode and replace K/V balancing");
  const Eigen::Index keys = layout_.key_rows;
  MatrixD scaled = joint_;
  if (options.balance_kv && keys > 0) {
    const double key_norm = data_norm(joint_.topRows(keys), *gram);
    const double value_norm = data_norm(joint_.bottomRows(joint_.rows() - keys), *gram);
    alpha_ = key_norm > 0 ? value_norm / key_norm : 1.0;
    scaled.topRows(keys) *= alpha_;
  }
  const Eigen::MatrixXd* whitening = whitened ? gram : nullptr;
  const SvdPrecision precision = options.precision;
  weight_norm2_ = joint_.squaredNorm();
  if (gram) data_norm2_ = std::pow(data_norm(joint_, *gram), 2);
  const double unscale = 1 / alpha_;  // B_k is divided by α after factoring
  if (options.mode == FactorMode::joint) {
    joint_svd_ = std::make_unique<Decomposition>(scaled, whitening, precision, rows);
    weight_tail_ = joint_svd_->squared_error_tail(nullptr, int(keys), unscale);
    if (gram) data_tail_ = joint_svd_->squared_error_tail(gram, int(keys), unscale);
  } else {
    EKV_CHECK(!drop_keys || !options.balance_kv, "dropped keys leave nothing to balance");
    if (keys > 0 && drop_keys) {  // the error of rank 0: all of K-nope
      key_weight_tail_ = Eigen::VectorXd::Constant(1, joint_.topRows(keys).squaredNorm());
      if (gram) key_data_tail_ = Eigen::VectorXd::Constant(1, std::pow(data_norm(MatrixD(joint_.topRows(keys)), *gram), 2));
    } else if (keys > 0) {
      key_svd_ = std::make_unique<Decomposition>(MatrixD(scaled.topRows(keys)), whitening, precision);
      key_weight_tail_ = key_svd_->squared_error_tail(nullptr) * (unscale * unscale);
      if (gram) key_data_tail_ = key_svd_->squared_error_tail(gram) * (unscale * unscale);
    }
    value_svd_ = std::make_unique<Decomposition>(MatrixD(scaled.bottomRows(scaled.rows() - keys)), whitening, precision);
    value_weight_tail_ = value_svd_->squared_error_tail(nullptr);
    if (gram) value_data_tail_ = value_svd_->squared_error_tail(gram);
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

Eigen::VectorXd LayerFactors::relative_data_gains() const {
  EKV_CHECK(joint_svd_ && data_tail_.size() > 0, "data gains need the joint decomposition and a Gram");
  if (weighted_) {
    const Eigen::VectorXd energy = joint_svd_->singular_values().cwiseAbs2();
    return energy / energy.sum();
  }
  const Eigen::Index k = data_tail_.size() - 1;
  return (data_tail_.head(k) - data_tail_.tail(k)) / data_norm2_;
}

std::pair<int, int> LayerFactors::split(int rank) const {
  // Keys get their share of the rows, as far as each part's own rank allows.
  const int keys = layout_.key_rows, total = int(joint_.rows());
  const int share = key_svd_ ? std::min({int(std::lround(double(rank) * keys / total)), key_svd_->max_rank(), rank}) : 0;
  const int v_rank = std::min(rank - share, value_svd_->max_rank());
  return {rank - v_rank, v_rank};
}

double LayerFactors::squared_error(int rank, const Eigen::VectorXd& joint, const Eigen::VectorXd& keys,
                                   const Eigen::VectorXd& values) const {
  EKV_CHECK(rank >= 0 && rank <= max_rank(), "rank ", rank, " outside [0, ", max_rank(), "]");
  if (joint_svd_) return joint[rank];
  const auto [k_rank, v_rank] = split(rank);
  return (keys.size() > 0 ? keys[k_rank] : 0.0) + values[v_rank];
}

double LayerFactors::weight_error(int rank) const {
  const double e2 = squared_error(rank, weight_tail_, key_weight_tail_, value_weight_tail_);
  return std::sqrt(std::max(0.0, e2) / weight_norm2_);
}

double LayerFactors::data_error(int rank) const {
  if (std::isnan(data_norm2_)) return NAN;
  const double e2 = squared_error(rank, data_tail_, key_data_tail_, value_data_tail_);
  return std::sqrt(std::max(0.0, e2) / data_norm2_);
}

LowRank LayerFactors::factor(int rank) const {
  EKV_CHECK(rank >= 0 && rank <= max_rank(), "rank ", rank, " outside [0, ", max_rank(), "]");
  const Eigen::Index keys = layout_.key_rows, rows = joint_.rows(), d = joint_.cols();
  LowRank result;
  if (joint_svd_) {
    result = joint_svd_->factor(rank);
  } else {  // block form: A = [A_k; A_v], B = diag(B_k, B_v)
    const auto [k_rank, v_rank] = split(rank);
    // Keys dropped (--mode values): B_k is keys × 0, so the block assignment below has no elements.
    const LowRank k = key_svd_ ? key_svd_->factor(k_rank) : LowRank{MatrixD(0, d), MatrixD(keys, 0)};
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
