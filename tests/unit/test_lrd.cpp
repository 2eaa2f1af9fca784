// J-LRD numerics: planted low rank recovered by weight and whitened SVD, full rank reproduces
// W_J, whitened SVD never loses to weight SVD on data error, the W_J layout maps back to heads
// and dims, and cache-ratio arithmetic.
#include <gtest/gtest.h>

#include <array>
#include <random>

#include "ekv/lrd/factorization.hpp"
#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/lrd/layer_factors.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"

namespace ekv {
namespace {

MatrixD random_d(int rows, int cols, std::mt19937& rng) {
  std::normal_distribution<double> normal;
  MatrixD m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

// An anisotropic Gram Σ x xᵀ of 400 correlated samples: what real activations look like.
Eigen::MatrixXd correlated_gram(int d, std::mt19937& rng) {
  const MatrixD mix = random_d(d, d, rng);
  MatrixD x = random_d(400, d, rng) * mix;
  for (int c = 0; c < d; ++c) x.col(c) *= std::pow(1.3, c % 7);
  return x.transpose() * x;
}

TEST(Lrd, PlantedRankIsRecovered) {
  std::mt19937 rng(1);
  const MatrixD w = random_d(30, 5, rng) * random_d(5, 24, rng);  // rank 5
  const Eigen::MatrixXd gram = correlated_gram(24, rng);
  for (const Eigen::MatrixXd* c : {static_cast<const Eigen::MatrixXd*>(nullptr), &gram}) {
    const Decomposition decomposition(w, c);
    EXPECT_LT(decomposition.singular_values()[5], 1e-9 * decomposition.singular_values()[0]);
    const LowRank f = decomposition.factor(5);
    EXPECT_LT(weight_error(w, f), 1e-10) << (c ? "whitened" : "weight");
    EXPECT_GT(weight_error(w, decomposition.factor(4)), 1e-3);
  }
}

TEST(Lrd, FullRankReproducesAndWhiteningWinsOnData) {
  std::mt19937 rng(2);
  const MatrixD w = random_d(20, 16, rng);
  const Eigen::MatrixXd gram = correlated_gram(16, rng);
  const Decomposition plain(w, nullptr), whitened(w, &gram);
  EXPECT_LT(weight_error(w, plain.factor(16)), 1e-12);
  EXPECT_LT(weight_error(w, whitened.factor(16)), 1e-9);
  EXPECT_EQ(whitened.lambda(), 0.0);  // a full-rank Gram needs no regularization
  for (int rank = 1; rank < 16; ++rank) {
    // Whitened SVD minimizes the data error; weight SVD minimizes the weight error.
    EXPECT_LE(data_error(w, whitened.factor(rank), gram), data_error(w, plain.factor(rank), gram) + 1e-12) << rank;
    EXPECT_LE(weight_error(w, plain.factor(rank)), weight_error(w, whitened.factor(rank)) + 1e-12) << rank;
  }
}

TEST(Lrd, ErrorTailEqualsReconstruction) {
  // tail[k] = ‖(W − B_k A_k) X‖² for weight and whitened SVD, with and without a row scale.
  std::mt19937 rng(5);
  const MatrixD w = random_d(18, 12, rng);
  const Eigen::MatrixXd gram = correlated_gram(12, rng);
  MatrixD scale = MatrixD::Identity(18, 18);
  scale.topLeftCorner(7, 7) *= 0.5;
  for (const Eigen::MatrixXd* c : {static_cast<const Eigen::MatrixXd*>(nullptr), &gram}) {
    const Decomposition decomposition(w, c);
    const Eigen::VectorXd plain = decomposition.squared_error_tail(&gram);
    const Eigen::VectorXd scaled = decomposition.squared_error_tail(&gram, 7, 0.5);
    const double total = std::pow(data_norm(w, gram), 2);
    EXPECT_NEAR(plain[0] / total, 1.0, 1e-9);
    for (int rank = 0; rank <= 12; ++rank) {
      const LowRank f = decomposition.factor(rank);
      EXPECT_NEAR(std::sqrt(plain[rank] / total), data_error(w, f, gram), 1e-9) << rank;
      const MatrixD residual = scale * (w - f.b * f.a);
      EXPECT_NEAR(scaled[rank], std::pow(data_norm(residual, gram), 2), 1e-9 * total) << rank;
    }
  }
}

TEST(Lrd, SingularGramRaisesLambda) {
  std::mt19937 rng(3);
  const MatrixD x = random_d(5, 12, rng);  // 5 samples in 12 dims: rank-deficient Gram
  const Eigen::MatrixXd gram = x.transpose() * x;
  const MatrixD w = random_d(8, 12, rng);
  const Decomposition whitened(w, &gram);
  EXPECT_GT(whitened.lambda(), 0.0);
  EXPECT_LT(weight_error(w, whitened.factor(8)), 1e-6);
}

TEST(Lrd, JointLayoutMapsRowsBack) {
  const test::TinyModel tiny = test::make_tiny_model(4);  // G = 2, d_h = 8, n_c = 4
  const LayerWeights& w = tiny.layers[1];
  JointLayout layout;
  const MatrixD joint = build_joint_matrix(w, tiny.config, {{1, 3}, {0, 1}}, layout);
  // Each head keeps d_h − 2r = 4 key rows; then 2 × 8 value rows.
  EXPECT_EQ(layout.key_rows, 8);
  ASSERT_EQ(joint.rows(), 8 + 16);
  std::vector<int> head0;
  for (const auto& row : layout.rows)
    if (row.key && row.head == 0) head0.push_back(row.dim);
  EXPECT_EQ(head0, (std::vector<int>{0, 2, 4, 6}));  // chunks 0 and 2: dims (0, 4) and (2, 6)
  for (std::size_t i = 0; i < layout.rows.size(); ++i) {
    const auto& row = layout.rows[i];
    const Matrix& source = row.key ? w.wk : w.wv;
    EXPECT_EQ(joint.row(Eigen::Index(i)), source.row(row.head * 8 + row.dim).cast<double>()) << i;
  }
}

TEST(Lrd, ErrorCurvesEqualReconstructionForEveryVariant) {
  // LayerFactors reports errors from tail sums of the decomposition; they must equal the
  // errors of the reconstructed factors for joint/separate × weight/whitened × balanced or not,
  // and for fp32 SVD within its precision.
  const test::TinyModel tiny = test::make_tiny_model(6);
  std::mt19937 rng(6);
  const Eigen::MatrixXd gram = correlated_gram(tiny.config.hidden, rng);
  JointLayout layout;
  const MatrixD joint = build_joint_matrix(tiny.layers[0], tiny.config, {{1}, {2}}, layout);
  for (FactorMode mode : {FactorMode::joint, FactorMode::separate})
    for (SvdBasis basis : {SvdBasis::weight, SvdBasis::whitened})
      for (bool balance : {false, true})
        for (SvdPrecision precision : {SvdPrecision::f64, SvdPrecision::f32}) {
          const LayerFactors f(joint, layout, &gram, {mode, basis, balance, precision});
          const double tolerance = precision == SvdPrecision::f64 ? 1e-9 : 2e-5;
          if (balance) {
            EXPECT_NE(f.alpha(), 1.0);
          }
          for (int rank = 0; rank <= f.max_rank(); ++rank) {
            const LowRank low = f.factor(rank);
            EXPECT_NEAR(f.weight_error(rank), weight_error(joint, low), tolerance)
                << name_of(mode) << name_of(basis) << balance << " rank " << rank;
            EXPECT_NEAR(f.data_error(rank), data_error(joint, low, gram), tolerance)
                << name_of(mode) << name_of(basis) << balance << " rank " << rank;
          }
          EXPECT_NEAR(f.weight_error(f.max_rank()), 0.0, tolerance);
        }
}

TEST(Lrd, DroppedKeysLeaveBkZeroAndCountTheirWholeError) {
  // --mode values (the KV-Latent-style baseline): every latent dim goes to V, B_k stays zero,
  // and the reported errors are those of the reconstruction, dropped keys included.
  const test::TinyModel tiny = test::make_tiny_model(6);
  std::mt19937 rng(7);
  const Eigen::MatrixXd gram = correlated_gram(tiny.config.hidden, rng);
  JointLayout layout;
  const MatrixD joint = build_joint_matrix(tiny.layers[0], tiny.config, {{1}, {2}}, layout);
  const Eigen::Index keys = layout.key_rows;
  ASSERT_GT(keys, 0);
  for (bool whitened : {false, true}) {
    LrdOptions options{FactorMode::values, whitened ? SvdBasis::whitened : SvdBasis::weight, false,
                             SvdPrecision::f64};
    const LayerFactors f(joint, layout, &gram, options);
    EXPECT_EQ(f.max_rank(), std::min(joint.rows() - keys, joint.cols())) << "V alone bounds the rank";
    for (int rank = 0; rank <= f.max_rank(); ++rank) {
      const LowRank low = f.factor(rank);
      EXPECT_EQ(low.b.topRows(keys).norm(), 0.0) << rank;
      EXPECT_NEAR(f.weight_error(rank), weight_error(joint, low), 1e-9) << whitened << " rank " << rank;
      EXPECT_NEAR(f.data_error(rank), data_error(joint, low, gram), 1e-9) << whitened << " rank " << rank;
    }
    // At full rank only the dropped keys remain as error.
    const double key_share = joint.topRows(keys).norm() / joint.norm();
    EXPECT_NEAR(f.weight_error(f.max_rank()), key_share, 1e-9);
    options.balance_kv = true;
    EXPECT_EKV_ERROR(LayerFactors(joint, layout, &gram, options), "nothing to balance");
  }
}

// A zero Gram used to loop forever (λ grows from 1e-10 × mean diagonal = 0); a non-finite one
// must not reach LAPACK.
TEST(Lrd, WhitenedSvdRefusesZeroAndNonFiniteGrams) {
  std::mt19937 rng(9);
  const MatrixD w = random_d(6, 4, rng);
  Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(4, 4);
  EXPECT_EKV_ERROR(Decomposition(w, &gram), "not positive semi-definite");
  gram = Eigen::MatrixXd::Identity(4, 4);
  gram(1, 2) = NAN;
  EXPECT_EKV_ERROR(Decomposition(w, &gram), "non-finite");
  gram = -Eigen::MatrixXd::Identity(4, 4);
  EXPECT_EKV_ERROR(Decomposition(w, &gram), "not positive semi-definite");
  // Positive diagonal, one eigenvalue of -1e-3: a ridge up to the scale used to hide it.
  gram = Eigen::MatrixXd::Identity(4, 4);
  gram(0, 1) = gram(1, 0) = 1.001;
  EXPECT_EKV_ERROR(Decomposition(w, &gram), "not positive semi-definite", "ridge");
  // Issue 33: a Gram scaled to 1e-320 (denormal) looped forever: its ridge underflowed to 0.
  gram = 1e-320 * Eigen::MatrixXd::Identity(4, 4);
  EXPECT_EKV_ERROR(Decomposition(w, &gram), "below the smallest normal double");
  gram = 1e-300 * Eigen::MatrixXd::Identity(4, 4);
  EXPECT_NO_THROW(Decomposition(w, &gram));
  // Singular but PSD (a rank-deficient calibration) is fine.
  const MatrixD x = random_d(4, 2, rng);
  gram = x * x.transpose();
  EXPECT_NO_THROW(Decomposition(w, &gram));
}

}  // namespace
}  // namespace ekv
