#include "ekv/refine/output_refit.hpp"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <limits>

#include "ekv/core/error.hpp"
#include "ekv/lrd/joint_matrix.hpp"

namespace ekv {

RefitMoments::RefitMoments(Eigen::Index width, Eigen::Index hidden)
    : uu(MatrixD::Zero(width, width)), ru(MatrixD::Zero(hidden, width)) {}

void RefitMoments::add(const MatrixD& wo, const Matrix& original, const Matrix& compressed, const Matrix* offset) {
  // Three double products, not four: R = (O − U) W_oᵀ [+ offset] directly, UᵀU as a symmetric
  // rank update (half the work); Y, needed only for ‖Y‖², in float.
  const MatrixD u = compressed.cast<double>();
  MatrixD residual = (original.cast<double>() - u) * wo.transpose();  // Y − U W_oᵀ
  Matrix y = original * wo.cast<float>().transpose();
  if (offset) {
    residual += offset->cast<double>();
    y += *offset;
  }
  uu.selfadjointView<Eigen::Lower>().rankUpdate(u.transpose());
  ru.noalias() += residual.transpose() * u;
  rr += residual.squaredNorm();
  yy += y.cast<double>().squaredNorm();
  tokens += u.rows();
}

void RefitMoments::add(const RefitMoments& other) {
  uu += other.uu;
  ru += other.ru;
  rr += other.rr;
  yy += other.yy;
  tokens += other.tokens;
}

double RefitMoments::error(const MatrixD& delta) const {
  // ‖U Δᵀ − R‖² = ‖R‖² − 2 Σ Δ ⊙ RᵀU + Σ Δ ⊙ (Δ UᵀU); clamped at 0 against rounding.
  const double squared = rr - 2 * delta.cwiseProduct(ru).sum() + (delta * uu.selfadjointView<Eigen::Lower>()).cwiseProduct(delta).sum();
  return std::sqrt(std::max(squared, 0.0) / yy);
}

namespace {
MatrixD solve_delta(const RefitMoments& m, double ridge) {
  MatrixD system = m.uu;
  system.diagonal().array() += ridge * m.uu.diagonal().mean();
  return system.ldlt().solve(m.ru.transpose()).transpose();  // LDLT reads the lower triangle, all uu holds
}
}  // namespace

OutputRefit refit_from_moments(const Matrix& wo, const RefitMoments& fit, const RefitMoments& heldout,
                               const std::vector<double>& ridges) {
  EKV_CHECK(fit.tokens > 0 && heldout.tokens > 0 && !ridges.empty(), "output refit: needs sequences to fit on (",
            fit.tokens, " tokens) and held-out ones (", heldout.tokens, " tokens)");
  const MatrixD none = MatrixD::Zero(wo.rows(), wo.cols());
  OutputRefit out;
  out.heldout_before = heldout.error(none);
  out.heldout_after = std::numeric_limits<double>::infinity();
  for (double ridge : ridges) {
    const MatrixD delta = solve_delta(fit, ridge);
    const double error = heldout.error(delta);
    if (error < out.heldout_after) {
      out.heldout_after = error;
      out.lambda = ridge;
      out.fit_after = fit.error(delta);
    }
  }
  if (!(out.heldout_after < out.heldout_before)) {  // no ridge helps on held-out text: keep W_o
    out.wo = wo;
    out.lambda = std::numeric_limits<double>::infinity();
    out.heldout_after = out.heldout_before;
    return out;
  }
  RefitMoments all = fit;
  all.add(heldout);
  out.wo = (wo.cast<double>() + solve_delta(all, out.lambda)).cast<float>();
  return out;
}

OutputRefit refit_output(const Matrix& wo, const std::vector<Matrix>& original, const std::vector<Matrix>& compressed,
                         int heldout, const std::vector<Matrix>* offsets, const std::vector<double>& ridges) {
  const std::size_t n = original.size();
  EKV_CHECK(n == compressed.size() && (!offsets || offsets->size() == n) && heldout >= 1 && std::size_t(heldout) < n && !ridges.empty(),
            "output refit: needs at least 2 stored sequences (", n, " given, ", heldout, " held out)");
  const std::size_t split = n - std::size_t(heldout);
  const MatrixD w = wo.cast<double>();
  RefitMoments fit(wo.cols(), wo.rows()), held(wo.cols(), wo.rows());
  for (std::size_t s = 0; s < n; ++s)
    (s < split ? fit : held).add(w, original[s], compressed[s], offsets ? &(*offsets)[s] : nullptr);
  return refit_from_moments(wo, fit, held, ridges);
}

}  // namespace ekv
