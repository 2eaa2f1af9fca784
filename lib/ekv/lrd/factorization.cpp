#include "ekv/lrd/factorization.hpp"

#include <lapacke.h>

#include <Eigen/Cholesky>
#include <cmath>
#include <limits>
#include <type_traits>

#include "ekv/core/error.hpp"

namespace ekv {

const NameTable<SvdPrecision>& name_table(SvdPrecision) {
  static const NameTable<SvdPrecision> table{{"f64", SvdPrecision::f64}, {"f32", SvdPrecision::f32}};
  return table;
}

namespace {
// Thin SVD of a row-major matrix through LAPACKE_{s,d}gesdd: m = U diag(s) Vᵀ.
template <class Scalar>
void thin_svd(const MatrixD& input, MatrixD& u_out, Eigen::VectorXd& s_out, MatrixD& vt_out) {
  using M = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  M m = input.cast<Scalar>();
  const lapack_int rows = lapack_int(m.rows()), cols = lapack_int(m.cols()), k = std::min(rows, cols);
  M u(rows, k), vt(k, cols);
  Eigen::Vector<Scalar, Eigen::Dynamic> s(k);
  lapack_int info;
  if constexpr (std::is_same_v<Scalar, float>)
    info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', rows, cols, m.data(), cols, s.data(), u.data(), k, vt.data(), cols);
  else
    info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', rows, cols, m.data(), cols, s.data(), u.data(), k, vt.data(), cols);
  EKV_CHECK(info == 0, "SVD (LAPACKE_", std::is_same_v<Scalar, float> ? "s" : "d", "gesdd) of a ", rows, "×", cols,
            " matrix failed: info ", info);
  if constexpr (std::is_same_v<Scalar, float>) {
    u_out = u.template cast<double>();
    s_out = s.template cast<double>();
    vt_out = vt.template cast<double>();
  } else {
    u_out = std::move(u);
    s_out = std::move(s);
    vt_out = std::move(vt);
  }
}

void thin_svd(const MatrixD& m, SvdPrecision precision, MatrixD& u, Eigen::VectorXd& s, MatrixD& vt) {
  if (precision == SvdPrecision::f32)
    thin_svd<float>(m, u, s, vt);
  else
    thin_svd<double>(m, u, s, vt);
}
}  // namespace

Decomposition::Decomposition(const MatrixD& weights, const Eigen::MatrixXd* gram, SvdPrecision precision,
                             const RowWeights* rows) {
  if (rows) {
    EKV_CHECK(rows->left.rows() == weights.rows() && rows->left_inverse.rows() == weights.rows(),
              "weighted SVD: row weights are ", rows->left.rows(), "×", rows->left.cols(), " for ", weights.rows(), " rows");
    Decomposition weighted(rows->left * weights, gram, precision);
    u_ = rows->left_inverse * weighted.u_;
    sigma_ = std::move(weighted.sigma_);
    vt_ = std::move(weighted.vt_);
    lambda_ = weighted.lambda_;
    orthonormal_u_ = false;
    return;
  }
  if (!gram) {
    thin_svd(weights, precision, u_, sigma_, vt_);
    return;
  }
  const Eigen::Index d = weights.cols();
  EKV_CHECK(gram->rows() == d && gram->cols() == d, "whitened SVD: Gram is ", gram->rows(), "×", gram->cols(),
            ", expected ", d, "×", d);
  // Cholesky C + λI = S Sᵀ through LAPACKE_dpotrf; λ grows until it succeeds. It starts from
  // the mean diagonal, so a zero or non-finite Gram would never succeed: refuse it up front.
  const double scale = gram->diagonal().mean();
  EKV_CHECK(gram->allFinite(), "whitened SVD: the Gram has non-finite entries");
  EKV_CHECK(scale > 0 && gram->diagonal().minCoeff() >= 0, "whitened SVD: the Gram is not positive semi-definite ",
            "(mean diagonal ", scale, ", smallest ", gram->diagonal().minCoeff(), "): no calibration inputs reached this layer?");
  // The ridge below is a fraction of the scale: on a denormal scale it underflows to 0 and never
  // grows (a Gram scaled to 1e-320 ran without end).
  EKV_CHECK(scale >= std::numeric_limits<double>::min(), "whitened SVD: the Gram's mean diagonal ", scale,
            " is below the smallest normal double: (nearly) zero calibration inputs at this layer?");
  // A Gram of real inputs is PSD up to rounding, which a ridge of 1e-10 of its scale absorbs;
  // one that needs more than 1e-6 has negative eigenvalues (a corrupt or hand-made file), and
  // a large ridge would silently whiten by something else.
  MatrixD s;
  for (double lambda = 0;; lambda = lambda == 0 ? 1e-10 * scale : lambda * 10) {
    EKV_CHECK(lambda <= 1e-6 * scale * (1 + 1e-9), "whitened SVD: the Gram is not positive semi-definite (Cholesky ",
              "fails with a ridge of 1e-6 of its mean diagonal ", scale, ")");
    s = *gram;
    s.diagonal().array() += lambda;
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', lapack_int(d), s.data(), lapack_int(d)) == 0) {
      lambda_ = lambda;
      break;
    }
  }
  s.triangularView<Eigen::StrictlyUpper>().setZero();
  MatrixD whitened_vt;
  thin_svd(weights * s, precision, u_, sigma_, whitened_vt);
  // A = V_rᵀ S⁻¹ by a triangular solve (Sᵀ Aᵀ = V), never an explicit inverse.
  vt_ = s.transpose().triangularView<Eigen::Upper>().solve(whitened_vt.transpose()).transpose();
}

LowRank Decomposition::factor(int rank) const {
  EKV_CHECK(rank >= 0 && rank <= max_rank(), "rank ", rank, " outside [0, ", max_rank(), "]");
  LowRank result;
  result.a = vt_.topRows(rank);
  result.b = u_.leftCols(rank) * sigma_.head(rank).asDiagonal();
  return result;
}

Eigen::VectorXd Decomposition::squared_error_tail(const Eigen::MatrixXd* gram, int scaled_rows,
                                                  double row_scale) const {
  const Eigen::Index k = sigma_.size();
  const MatrixD spread = gram ? MatrixD(vt_ * *gram) : vt_;  // rows a_i C
  Eigen::VectorXd tail = Eigen::VectorXd::Zero(k + 1);
  if (orthonormal_u_ && (scaled_rows == 0 || row_scale == 1)) {  // only σ_i² a_i C a_iᵀ survives
    const Eigen::VectorXd diagonal = sigma_.cwiseAbs2().cwiseProduct(spread.cwiseProduct(vt_).rowwise().sum());
    for (Eigen::Index i = k - 1; i >= 0; --i) tail[i] = tail[i + 1] + diagonal[i];
    return tail;
  }
  // u_iᵀ D² u_j, with D scaling the first scaled_rows rows
  MatrixD scaled_u = u_;
  scaled_u.topRows(scaled_rows) *= row_scale;
  Eigen::MatrixXd terms = scaled_u.transpose() * scaled_u;
  terms = terms.cwiseProduct(spread * vt_.transpose());
  terms = sigma_.asDiagonal() * terms * sigma_.asDiagonal();
  // tail[i] = tail[i+1] + M_ii + 2 Σ_{j>i} M_ij
  for (Eigen::Index i = k - 1; i >= 0; --i)
    tail[i] = tail[i + 1] + terms(i, i) + 2 * terms.row(i).tail(k - 1 - i).sum();
  return tail;
}

double weight_error(const MatrixD& weights, const LowRank& f) {
  return (weights - f.b * f.a).norm() / weights.norm();
}

double data_norm(const MatrixD& weights, const Eigen::MatrixXd& gram) {
  return std::sqrt(std::max(0.0, (weights * gram).cwiseProduct(weights).sum()));
}

double data_error(const MatrixD& weights, const LowRank& f, const Eigen::MatrixXd& gram) {
  const MatrixD error = weights - f.b * f.a;
  return data_norm(error, gram) / data_norm(weights, gram);
}

}  // namespace ekv
