// W ≈ B A by SVD, plain (weight SVD, the paper) or whitened by the calibration Gram C (the
// data-aware form: minimizes ‖(W − BA) X‖ because ‖E X‖² = ‖E S‖² with S Sᵀ = C + λI).
// Optionally weighted on the left too (attention-aware: ‖L (W − BA) S‖, docs/method.md §9).
// One decomposition serves every rank.
#pragma once

#include <Eigen/Core>

#include "ekv/core/name_table.hpp"
#include "ekv/lrd/joint_matrix.hpp"

namespace ekv {

struct LowRank {
  MatrixD a;  // [rank, d]    down projection
  MatrixD b;  // [rows, rank] up projection
};

// Left weights L for the rows of W (symmetric positive definite) and L⁻¹.
struct RowWeights {
  MatrixD left, left_inverse;
};

// The SVD itself in fp64 (default) or fp32 (LAPACKE_sgesdd: half the time on big matrices,
// ~1e-7 relative accuracy, far below the weights' own quantization error).
enum class SvdPrecision { f64, f32 };
const NameTable<SvdPrecision>& name_table(SvdPrecision);

class Decomposition {
 public:
  // gram = nullptr: weight SVD. Otherwise C [d, d]; λ starts at 0 and grows (×10 from 1e-10 of
  // the mean diagonal) until the Cholesky factorization succeeds. rows: SVD of L W S, and
  // B = L⁻¹ U_r Σ_r.
  Decomposition(const MatrixD& weights, const Eigen::MatrixXd* gram, SvdPrecision precision = SvdPrecision::f64,
                const RowWeights* rows = nullptr);

  int max_rank() const { return int(sigma_.size()); }
  const Eigen::VectorXd& singular_values() const { return sigma_; }
  double lambda() const { return lambda_; }
  LowRank factor(int rank) const;
  // tail[k] = ‖D (W − B_k A_k) X‖² for every rank k = 0..max_rank, without reconstructing:
  // the residual is Σ_{i≥k} σ_i u_i a_i, so tail[k] = Σ_{i,j≥k} σ_iσ_j (u_iᵀD²u_j)(a_i C a_jᵀ).
  // D scales the first `scaled_rows` rows by `row_scale` (undoing K/V balancing); with D = I
  // only the diagonal survives. gram = nullptr: C = I (the weight error).
  Eigen::VectorXd squared_error_tail(const Eigen::MatrixXd* gram, int scaled_rows = 0, double row_scale = 1) const;

 private:
  MatrixD u_;              // [rows, k]  (L⁻¹ U when weighted on the left)
  bool orthonormal_u_ = true;
  Eigen::VectorXd sigma_;  // [k]
  MatrixD vt_;             // [k, d]  (Vᵀ, or Vᵀ S⁻¹ when whitened)
  double lambda_ = 0;
};

// ‖W − BA‖_F / ‖W‖_F
double weight_error(const MatrixD& weights, const LowRank& factor);
// ‖(W − BA) X‖_F / ‖W X‖_F from the Gram C = Σ x xᵀ: √tr(E C Eᵀ) / √tr(W C Wᵀ)
double data_error(const MatrixD& weights, const LowRank& factor, const Eigen::MatrixXd& gram);
// ‖W X‖_F from the Gram
double data_norm(const MatrixD& weights, const Eigen::MatrixXd& gram);

}  // namespace ekv
