// One layer's J-LRD (METHOD.md §5): W_J built from the elite sets, optionally K/V-balanced,
// decomposed once (jointly, or K-nope and V separately for the S-LRD baseline), then cut to
// any rank. Factors are stored at the largest rank asked for; every smaller rank is a prefix
// (rows of A, columns of B) for joint mode.
#pragma once

#include <Eigen/Core>
#include <memory>
#include <vector>

#include "ekv/lrd/factorization.hpp"
#include "ekv/lrd/joint_matrix.hpp"

namespace ekv {

struct LrdOptions {
  bool joint = true;       // false: S-LRD (K-nope and V factored separately)
  bool whitened = false;   // false: weight SVD (the paper)
  bool balance_kv = false; // scale key rows by α = ‖W_v X‖ / ‖W_kn X‖ before factoring
};

class LayerFactors {
 public:
  // gram may be null only for weight SVD without balancing.
  LayerFactors(MatrixD joint, JointLayout layout, const Eigen::MatrixXd* gram, const LrdOptions& options);

  int max_rank() const;
  double alpha() const { return alpha_; }
  double lambda() const;
  // The factors at total latent rank d_kv (S-LRD: split between K and V in proportion to
  // their rows), with B_k divided back by α.
  LowRank factor(int rank) const;
  const MatrixD& joint() const { return joint_; }
  const JointLayout& layout() const { return layout_; }
  // Singular values of the (balanced, whitened when asked) joint matrix; S-LRD: empty.
  Eigen::VectorXd singular_values() const;
  // S-LRD split of a total rank: the key part's share.
  int key_rank(int rank) const;

 private:
  MatrixD joint_;
  JointLayout layout_;
  LrdOptions options_;
  double alpha_ = 1.0;
  std::unique_ptr<Decomposition> joint_svd_, key_svd_, value_svd_;
};

}  // namespace ekv
