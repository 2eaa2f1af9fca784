// W ≈ B A by SVD, plain (weight SVD, the paper) or whitened by the calibration Gram C (the
// data-aware form: minimizes ‖(W − BA) X‖ because ‖E X‖² = ‖E S‖² with S Sᵀ = C + λI).
// One decomposition serves every rank.
#pragma once

#include <Eigen/Core>

#include "ekv/lrd/joint_matrix.hpp"

namespace ekv {

struct LowRank {
  MatrixD a;  // [rank, d]    down projection
  MatrixD b;  // [rows, rank] up projection
};

class Decomposition {
 public:
  // gram = nullptr: weight SVD. Otherwise C [d, d]; λ starts at 0 and grows (×10 from 1e-10 of
  // the mean diagonal) until the Cholesky factorization succeeds.
  Decomposition(const MatrixD& weights, const Eigen::MatrixXd* gram);

  int max_rank() const { return int(sigma_.size()); }
  const Eigen::VectorXd& singular_values() const { return sigma_; }
  double lambda() const { return lambda_; }
  LowRank factor(int rank) const;

 private:
  MatrixD u_;              // [rows, k]
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
