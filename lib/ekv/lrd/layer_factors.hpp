// One layer's J-LRD (docs/method.md §5): W_J built from the elite sets, optionally K/V-balanced,
// decomposed once (jointly, or K-nope and V separately for the S-LRD baseline, or V alone with
// the non-elite keys dropped for the KV-Latent-style baseline), then cut to
// any rank. Factors are stored at the largest rank asked for; every smaller rank is a prefix
// (rows of A, columns of B) for joint mode.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "ekv/core/name_table.hpp"
#include "ekv/lrd/factorization.hpp"
#include "ekv/lrd/joint_matrix.hpp"

namespace ekv {

// joint: J-LRD, one SVD of the stacked rows; separate: S-LRD, K-nope and V factored apart;
// values: K-nope dropped (rank 0), V takes the whole rank (the KV-Latent-style baseline).
enum class FactorMode { joint, separate, values };
const NameTable<FactorMode>& name_table(FactorMode);

// weight: the SVD of W_J (the paper); whitened: of W_J C^½, C the calibration Gram.
enum class SvdBasis { weight, whitened };
const NameTable<SvdBasis>& name_table(SvdBasis);

struct LrdOptions {
  FactorMode mode = FactorMode::joint;
  SvdBasis basis = SvdBasis::weight;
  bool balance_kv = false; // scale key rows by α = ‖W_v X‖ / ‖W_kn X‖ before factoring
  SvdPrecision precision = SvdPrecision::f64;
};

class LayerFactors {
 public:
  // gram may be null only for weight SVD without balancing. rows: attention-aware left weights
  // (joint mode, no balancing: β in the weights replaces α).
  LayerFactors(MatrixD joint, JointLayout layout, const Eigen::MatrixXd* gram, const LrdOptions& options,
               const RowWeights* rows = nullptr);

  int max_rank() const;
  double alpha() const { return alpha_; }
  double lambda() const;
  // The factors at total latent rank d_kv (S-LRD: split between K and V in proportion to
  // their rows; --mode values: all of it to V and B_k = 0), with B_k divided back by α.
  LowRank factor(int rank) const;
  const MatrixD& joint() const { return joint_; }
  const JointLayout& layout() const { return layout_; }
  // Singular values of the (balanced, whitened when asked) joint matrix; S-LRD: empty.
  Eigen::VectorXd singular_values() const;
  // Joint mode with a Gram: gains[i] = how much latent dim i lowers the squared relative data
  // error ‖(W_J − BA) X‖² / ‖W_J X‖² (differences of the error curve, so exact with balancing too).
  // With row weights, the relative weighted error ‖L(W_J − BA)S‖² / ‖L W_J S‖² it minimises:
  // σ_i² / Σσ².
  Eigen::VectorXd relative_data_gains() const;
  // ‖W_J − BA‖ / ‖W_J‖ and ‖(W_J − BA) X‖ / ‖W_J X‖ of factor(rank), from error curves computed
  // once per decomposition (Decomposition::squared_error_tail), so a sweep costs no products.
  // data_error is NaN without a Gram.
  double weight_error(int rank) const;
  double data_error(int rank) const;

 private:
  MatrixD joint_;
  JointLayout layout_;
  LrdOptions options_;
  // The S-LRD split of a total rank into (key rank, value rank), in proportion to their rows.
  std::pair<int, int> split(int rank) const;
  // Squared error at `rank` from tails of the joint, or of the key and value decompositions.
  double squared_error(int rank, const Eigen::VectorXd& joint, const Eigen::VectorXd& keys,
                       const Eigen::VectorXd& values) const;

  double alpha_ = 1.0;
  bool weighted_ = false;
  std::unique_ptr<Decomposition> joint_svd_, key_svd_, value_svd_;
  double weight_norm2_ = 0, data_norm2_ = NAN;
  Eigen::VectorXd weight_tail_, data_tail_;              // joint
  Eigen::VectorXd key_weight_tail_, key_data_tail_;      // separate, already divided by α²; dropped: one entry
  Eigen::VectorXd value_weight_tail_, value_data_tail_;  // separate
};

}  // namespace ekv
