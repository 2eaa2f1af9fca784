#include "ekv/lrd/factorization.hpp"

#include <lapacke.h>

#include <Eigen/Cholesky>
#include <cmath>

#include "ekv/core/error.hpp"

namespace ekv {

namespace {
// Thin SVD of a row-major matrix through LAPACKE_dgesdd: m = U diag(s) Vᵀ.
void thin_svd(MatrixD m, MatrixD& u, Eigen::VectorXd& s, MatrixD& vt) {
  const lapack_int rows = lapack_int(m.rows()), cols = lapack_int(m.cols()), k = std::min(rows, cols);
  u.resize(rows, k);
  s.resize(k);
  vt.resize(k, cols);
  const lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', rows, cols, m.data(), cols, s.data(), u.data(), k,
                                         vt.data(), cols);
  EKV_CHECK(info == 0, "SVD (LAPACKE_dgesdd) of a ", rows, "×", cols, " matrix failed: info ", info);
}
}  // namespace

Decomposition::Decomposition(const MatrixD& weights, const Eigen::MatrixXd* gram) {
  if (!gram) {
    thin_svd(weights, u_, sigma_, vt_);
    return;
  }
  const Eigen::Index d = weights.cols();
  EKV_CHECK(gram->rows() == d && gram->cols() == d, "whitened SVD: Gram is ", gram->rows(), "×", gram->cols(),
            ", expected ", d, "×", d);
  // Cholesky C + λI = S Sᵀ through LAPACKE_dpotrf; λ grows until it succeeds.
  const double scale = gram->diagonal().mean();
  MatrixD s;
  for (double lambda = 0;; lambda = lambda == 0 ? 1e-10 * scale : lambda * 10) {
    EKV_CHECK(lambda <= scale, "whitened SVD: the Gram is not positive definite even with λ = ", lambda);
    s = *gram;
    s.diagonal().array() += lambda;
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', lapack_int(d), s.data(), lapack_int(d)) == 0) {
      lambda_ = lambda;
      break;
    }
  }
  s.triangularView<Eigen::StrictlyUpper>().setZero();
  MatrixD whitened_vt;
  thin_svd(weights * s, u_, sigma_, whitened_vt);
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
