#include "ekv/refine/output_refit.hpp"

#include <Eigen/Cholesky>
#include <cmath>
#include <limits>

#include "ekv/core/error.hpp"
#include "ekv/lrd/joint_matrix.hpp"

namespace ekv {

namespace {
// The sufficient statistics of sequences [begin, end): UᵀU and (Y − U W_oᵀ)ᵀ U.
struct Moments {
  MatrixD uu, ru;
};

// The target y = W_o o (+ offset) of sequence s.
MatrixD target(const MatrixD& w, const std::vector<Matrix>& original, const std::vector<Matrix>* offsets, std::size_t s) {
  MatrixD y = original[s].cast<double>() * w.transpose();
  if (offsets) y += (*offsets)[s].cast<double>();
  return y;
}

Moments moments(const Matrix& wo, const std::vector<Matrix>& original, const std::vector<Matrix>& compressed,
                const std::vector<Matrix>* offsets, std::size_t begin, std::size_t end) {
  const Eigen::Index width = wo.cols(), d = wo.rows();
  Moments m{MatrixD::Zero(width, width), MatrixD::Zero(d, width)};
  const MatrixD w = wo.cast<double>();
  for (std::size_t s = begin; s < end; ++s) {
    const MatrixD u = compressed[s].cast<double>();
    const MatrixD residual = target(w, original, offsets, s) - u * w.transpose();  // Y − U W_oᵀ
    m.uu.noalias() += u.transpose() * u;
    m.ru.noalias() += residual.transpose() * u;
  }
  return m;
}

MatrixD solve_delta(const Moments& m, double ridge) {
  MatrixD system = m.uu;
  system.diagonal().array() += ridge * m.uu.diagonal().mean();
  return system.ldlt().solve(m.ru.transpose()).transpose();  // system is symmetric
}

// ‖W' o' − y‖ / ‖y‖ over sequences [begin, end).
double block_error(const Matrix& wo, const MatrixD& fitted, const std::vector<Matrix>& original,
                   const std::vector<Matrix>& compressed, const std::vector<Matrix>* offsets, std::size_t begin,
                   std::size_t end) {
  const MatrixD w = wo.cast<double>();
  double diff = 0, norm = 0;
  for (std::size_t s = begin; s < end; ++s) {
    const MatrixD y = target(w, original, offsets, s);
    diff += (compressed[s].cast<double>() * fitted.transpose() - y).squaredNorm();
    norm += y.squaredNorm();
  }
  return std::sqrt(diff / norm);
}
}  // namespace

OutputRefit refit_output(const Matrix& wo, const std::vector<Matrix>& original, const std::vector<Matrix>& compressed,
                         int heldout, const std::vector<Matrix>* offsets, const std::vector<double>& ridges) {
  const std::size_t n = original.size();
  EKV_CHECK(n == compressed.size() && (!offsets || offsets->size() == n) && heldout >= 1 && std::size_t(heldout) < n && !ridges.empty(),
            "output refit: needs at least 2 stored sequences (", n, " given, ", heldout, " held out)");
  const std::size_t split = n - std::size_t(heldout);
  const MatrixD w = wo.cast<double>();
  const Moments fit = moments(wo, original, compressed, offsets, 0, split);
  OutputRefit out;
  out.heldout_before = block_error(wo, w, original, compressed, offsets, split, n);
  out.heldout_after = std::numeric_limits<double>::infinity();
  for (double ridge : ridges) {
    const MatrixD fitted = w + solve_delta(fit, ridge);
    const double error = block_error(wo, fitted, original, compressed, offsets, split, n);
    if (error < out.heldout_after) {
      out.heldout_after = error;
      out.lambda = ridge;
      out.fit_after = block_error(wo, fitted, original, compressed, offsets, 0, split);
    }
  }
  if (!(out.heldout_after < out.heldout_before)) {  // no ridge helps on held-out text: keep W_o
    out.wo = wo;
    out.lambda = std::numeric_limits<double>::infinity();
    out.heldout_after = out.heldout_before;
    return out;
  }
  const MatrixD all = w + solve_delta(moments(wo, original, compressed, offsets, 0, n), out.lambda);
  out.wo = all.cast<float>();
  return out;
}

}  // namespace ekv
