// Closed-form output refit (docs/method.md §9). With the compressed attention's own probabilities
// and latents, the layer output W_o' o' is linear in W_o', so W_o' = W_o + Δ is fitted by ridge
// regression of the original block output W_o o on the compressed head outputs o':
//   Δ = (Y − U W_oᵀ)ᵀ U (UᵀU + λI)⁻¹,  Y = O W_oᵀ,
// shrinking toward the original W_o. λ is chosen on held-out stored sequences; the fit is then
// repeated on all of them.
#pragma once

#include <cstdint>
#include <vector>

#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

struct OutputRefit {
  Matrix wo;                    // [d, H·d_h] the refitted output projection
  double lambda = 0;            // the chosen ridge, relative to mean(diag UᵀU); ∞: W_o kept
  double heldout_before = 0;    // ‖W_o o' − y‖ / ‖y‖ on the held-out sequences (y = W_o o [+ offset])
  double heldout_after = 0;     // the same with the W_o' fitted on the other sequences
  double fit_after = 0;         // on the sequences it was fitted on (over-fitting shows as fit ≪ held-out)
};

// The refit's sufficient statistics over any number of sequences, summed one sequence at a time
// (memory independent of their number): UᵀU, RᵀU with R = Y − U W_oᵀ the residual the refit
// fits, and ‖R‖², ‖Y‖² for its errors.
struct RefitMoments {
  MatrixD uu, ru;  // uu: its lower triangle only (symmetric)
  double rr = 0, yy = 0;
  std::int64_t tokens = 0;

  RefitMoments(Eigen::Index width, Eigen::Index hidden);
  // One sequence: head outputs [S, H·d_h] of the original and the compressed layer; offset
  // ([S, d], optional) is added to the target W_o o.
  void add(const MatrixD& wo, const Matrix& original, const Matrix& compressed, const Matrix* offset = nullptr);
  void add(const RefitMoments& other);
  // ‖U (W_o + Δ)ᵀ − Y‖ / ‖Y‖ over the sequences summed.
  double error(const MatrixD& delta) const;
};

// λ chosen among `ridges` by the held-out moments' error, then W_o + Δ fitted on fit + held-out;
// W_o is kept when no ridge lowers the held-out error.
OutputRefit refit_from_moments(const Matrix& wo, const RefitMoments& fit, const RefitMoments& heldout,
                               const std::vector<double>& ridges = {1e-4, 1e-3, 1e-2, 1e-1, 1});

// original[s], compressed[s]: head outputs [S, H·d_h] of stored sequence s. The last `heldout`
// sequences choose λ from `ridges`; at least one sequence must remain to fit on. When no ridge
// lowers the held-out error, W_o is kept.
// offsets[s] ([S, d], optional): added to the target W_o o, e.g. the gap between the original
// and the compressed residual stream that this layer should close.
OutputRefit refit_output(const Matrix& wo, const std::vector<Matrix>& original, const std::vector<Matrix>& compressed,
                         int heldout, const std::vector<Matrix>* offsets = nullptr,
                         const std::vector<double>& ridges = {1e-4, 1e-3, 1e-2, 1e-1, 1});

}  // namespace ekv
