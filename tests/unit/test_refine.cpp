// Output-aware refinements (docs/method.md §9) against planted truth: chunk maps are the identity
// where RoPE does not rotate and equal a brute-force weighted least squares elsewhere; the
// attention-weighted decomposition minimises its weighted error and its error tail matches
// reconstruction; the W_o refit recovers a planted output map and keeps W_o when nothing is
// to gain.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <random>

#include "ekv/core/error.hpp"
#include "ekv/lrd/factorization.hpp"
#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/refine/attention_weighting.hpp"
#include "ekv/refine/chunk_map.hpp"
#include "ekv/refine/head_map.hpp"
#include "ekv/refine/output_refit.hpp"

namespace ekv {
namespace {

Matrix random_f(Eigen::Index rows, Eigen::Index cols, std::mt19937& rng, float sd = 1) {
  std::normal_distribution<float> normal(0, sd);
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

MatrixD random_d(Eigen::Index rows, Eigen::Index cols, std::mt19937& rng) {
  return random_f(rows, cols, rng).cast<double>();
}

// A small GQA attention layer: H 4, G 2, d_h 8 (4 chunks), d 12.
ModelConfig small_config() {
  ModelConfig c;
  c.layers = 1;
  c.hidden = 12;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 8;
  return c;
}

LayerWeights small_layer(const ModelConfig& c, std::mt19937& rng) {
  LayerWeights w;
  w.wq = random_f(c.heads * c.head_dim, c.hidden, rng, 0.6f);
  w.wk = random_f(c.kv_heads * c.head_dim, c.hidden, rng, 0.6f);
  w.wv = random_f(c.kv_heads * c.head_dim, c.hidden, rng);
  w.wo = random_f(c.hidden, c.heads * c.head_dim, rng);
  return w;
}

// Row t of a, the head starting at column col0, rotated to position t (fp64, half-split pairs).
Eigen::VectorXd rotated_head(const Eigen::MatrixXd& a, int t, int col0, int dh, const std::vector<double>& freqs) {
  Eigen::VectorXd out = a.row(t).segment(col0, dh).transpose();
  for (int ch = 0; ch < dh / 2; ++ch) {
    const double cs = std::cos(t * freqs[std::size_t(ch)]), sn = std::sin(t * freqs[std::size_t(ch)]);
    const double a1 = out[ch], a2 = out[ch + dh / 2];
    out[ch] = a1 * cs - a2 * sn;
    out[ch + dh / 2] = a2 * cs + a1 * sn;
  }
  return out;
}

// Every causal pair (m, t) of KV head j's query heads h, with its original attention probability
// (fp64) and the query at m and key at t rotated to their positions: what both brute forces sum.
template <class Visit>
void for_each_weighted_pair(const ModelConfig& c, const Eigen::MatrixXd& q, const Eigen::MatrixXd& k,
                            const std::vector<double>& freqs, int j, Visit visit) {
  const int dh = c.head_dim, S = int(q.rows());
  for (int h = j * c.group_size(); h < (j + 1) * c.group_size(); ++h)
    for (int m = 0; m < S; ++m) {
      const Eigen::VectorXd qm = rotated_head(q, m, h * dh, dh, freqs);
      Eigen::VectorXd logits(m + 1);
      for (int t = 0; t <= m; ++t) logits[t] = qm.dot(rotated_head(k, t, j * dh, dh, freqs)) / std::sqrt(double(dh));
      const Eigen::VectorXd p = (logits.array() - logits.maxCoeff()).exp().matrix();
      for (int t = 0; t <= m; ++t) visit(h, m, t, p[t] / p.sum(), qm, rotated_head(k, t, j * dh, dh, freqs));
    }
}

// Every weighted causal pair of one chunk of KV head j: its plain query and key coordinates
// (q_a, q_b), (k_a, k_b) and its rotated score, the target of a chunk map.
template <class Visit>
void for_each_chunk_pair(const ModelConfig& c, const LayerWeights& w, const Matrix& x, const std::vector<double>& freqs,
                         int j, int chunk, Visit visit) {
  const int dh = c.head_dim, half = dh / 2;
  const Eigen::MatrixXd q = x.cast<double>() * w.wq.cast<double>().transpose();
  const Eigen::MatrixXd k = x.cast<double>() * w.wk.cast<double>().transpose();
  for_each_weighted_pair(c, q, k, freqs, j,
                         [&](int h, int m, int t, double weight, const Eigen::VectorXd& qm, const Eigen::VectorXd& kr) {
                           const Eigen::Vector2d qp(q(m, h * dh + chunk), q(m, h * dh + chunk + half));
                           const Eigen::Vector2d kp(k(t, j * dh + chunk), k(t, j * dh + chunk + half));
                           visit(weight, qp, kp, qm[chunk] * kr[chunk] + qm[chunk + half] * kr[chunk + half]);
                         });
}

// Brute force: the weighted least squares of one chunk's map over every causal pair and query
// head of the group, with the original probabilities computed in fp64.
Eigen::Matrix2d brute_force_map(const ModelConfig& c, const LayerWeights& w, const Matrix& x,
                                const std::vector<double>& freqs, int j, int chunk) {
  Eigen::Matrix4d n = Eigen::Matrix4d::Zero();
  Eigen::Vector4d b = Eigen::Vector4d::Zero();
  for_each_chunk_pair(c, w, x, freqs, j, chunk,
                      [&](double weight, const Eigen::Vector2d& qp, const Eigen::Vector2d& kp, double target) {
                        const Eigen::Vector4d phi(qp[0] * kp[0], qp[0] * kp[1], qp[1] * kp[0], qp[1] * kp[1]);
                        n += weight * phi * phi.transpose();
                        b += weight * target * phi;
                      });
  const Eigen::Vector4d theta = n.ldlt().solve(b);
  Eigen::Matrix2d m;
  m << theta[0], theta[1], theta[2], theta[3];
  return m;
}

TEST(ChunkMap, IdentityWhereRopeDoesNotRotate) {
  std::mt19937 rng(3);
  const ModelConfig c = small_config();
  const LayerWeights w = small_layer(c, rng);
  const int S = 24;
  const Matrix x = random_f(S, c.hidden, rng);
  const std::vector<float> xs(x.data(), x.data() + x.size());
  const RopeTable rope({0.0, 0.0, 0.0, 0.0}, S);  // no chunk rotates: the plain score is exact
  const std::vector<std::vector<int>> elite{{1}, {2}};
  for (ChunkMapKind kind : {ChunkMapKind::scalar, ChunkMapKind::matrix}) {
    const auto maps = fit_chunk_maps(w, c, elite, xs, 1, S, rope, kind);
    ASSERT_EQ(maps.size(), 6u);  // 3 non-elite chunks per KV head
    for (const ChunkMap& map : maps) {
      EXPECT_NEAR(map.m[0], 1, 1e-5) << name_of(kind);
      EXPECT_NEAR(map.m[1], 0, 1e-5);
      EXPECT_NEAR(map.m[2], 0, 1e-5);
      EXPECT_NEAR(map.m[3], 1, 1e-5);
    }
  }
}

TEST(ChunkMap, MatrixEqualsBruteForceWeightedLeastSquares) {
  std::mt19937 rng(4);
  const ModelConfig c = small_config();
  const LayerWeights w = small_layer(c, rng);
  const int S = 20;
  const Matrix x = random_f(S, c.hidden, rng);
  const std::vector<float> xs(x.data(), x.data() + x.size());
  const std::vector<double> freqs{1.0, 0.3, 0.05, 0.01};
  const RopeTable rope(freqs, S);
  const std::vector<std::vector<int>> elite{{2}, {0}};
  const auto maps = fit_chunk_maps(w, c, elite, xs, 1, S, rope, ChunkMapKind::matrix);
  bool moved = false;
  for (const ChunkMap& map : maps) {
    const Eigen::Matrix2d expected = brute_force_map(c, w, x, freqs, map.head, map.chunk);
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(map.m[std::size_t(i)], expected(i / 2, i % 2), 2e-3 * (1 + expected.norm()))
          << "head " << map.head << " chunk " << map.chunk << " entry " << i;
    moved = moved || std::abs(map.m[0] - 1) > 0.05 || std::abs(map.m[1]) > 0.05;
  }
  EXPECT_TRUE(moved) << "the high-frequency chunks should not fit the identity";
  // Folding into W_k: the plain score with the mapped key is qᵀ M k.
  const Matrix mapped = apply_chunk_maps(w.wk, c, maps);
  const ChunkMap& first = maps.front();
  const Eigen::VectorXf xv = x.row(3).transpose();
  const float ka = w.wk.row(first.chunk).dot(xv), kb = w.wk.row(first.chunk + 4).dot(xv);
  EXPECT_NEAR(mapped.row(first.chunk).dot(xv), first.m[0] * ka + first.m[1] * kb, 1e-4);
  EXPECT_NEAR(mapped.row(first.chunk + 4).dot(xv), first.m[2] * ka + first.m[3] * kb, 1e-4);
}

// Brute force: the probability-weighted squared error of one chunk's mapped plain score against
// its rotated score on sequence x, over every causal pair and query head of the group.
double brute_force_map_error(const ModelConfig& c, const LayerWeights& w, const Matrix& x,
                             const std::vector<double>& freqs, const ChunkMap& map) {
  Eigen::Matrix2d m;
  m << map.m[0], map.m[1], map.m[2], map.m[3];
  double error = 0;
  for_each_chunk_pair(c, w, x, freqs, map.head, map.chunk,
                      [&](double weight, const Eigen::Vector2d& qp, const Eigen::Vector2d& kp, double target) {
                        const double mapped = qp.dot(m * kp);
                        error += weight * (mapped - target) * (mapped - target);
                      });
  return error;
}

TEST(ChunkMap, PerChunkKeepsTheKindThatFitsTheHeldOutSequence) {
  std::mt19937 rng(5);
  const ModelConfig c = small_config();
  const LayerWeights w = small_layer(c, rng);
  const int S = 20;
  const Matrix x = random_f(2 * S, c.hidden, rng);  // sequence 0 fits, sequence 1 chooses
  const std::vector<float> xs(x.data(), x.data() + x.size());
  const std::vector<double> freqs{1.0, 0.3, 0.05, 0.01};
  const RopeTable rope(freqs, S);
  const std::vector<std::vector<int>> elite{{2}, {0}};
  const auto scalar = fit_chunk_maps(w, c, elite, xs, 1, S, rope, ChunkMapKind::scalar);
  const auto matrix = fit_chunk_maps(w, c, elite, xs, 1, S, rope, ChunkMapKind::matrix);
  const auto chosen = fit_chunk_maps(w, c, elite, xs, 1, S, rope, ChunkMapKind::per_chunk, 1);
  ASSERT_EQ(chosen.size(), scalar.size());
  const Matrix heldout = x.bottomRows(S);
  int scalars = 0, matrices = 0;
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    const bool is_scalar = chosen[i].m == scalar[i].m, is_matrix = chosen[i].m == matrix[i].m;
    ASSERT_TRUE(is_scalar || is_matrix) << "chunk " << i << ": neither fitted map";
    scalars += is_scalar;
    matrices += is_matrix;
    const double e_scalar = brute_force_map_error(c, w, heldout, freqs, scalar[i]);
    const double e_matrix = brute_force_map_error(c, w, heldout, freqs, matrix[i]);
    EXPECT_LE(brute_force_map_error(c, w, heldout, freqs, chosen[i]), std::min(e_scalar, e_matrix) * (1 + 1e-4) + 1e-9)
        << "head " << chosen[i].head << " chunk " << chosen[i].chunk << ": the kind that fits the held-out pairs worse";
  }
  EXPECT_GT(scalars, 0) << "this layer has chunks where the 2x2 map over-fits one sequence";
  EXPECT_GT(matrices, 0) << "and chunks where it does not";
  EXPECT_THROW(fit_chunk_maps(w, c, elite, xs, 1, S, rope, ChunkMapKind::per_chunk, 0), Error);
  EXPECT_THROW(fit_chunk_maps(w, c, elite, xs, 2, S, rope, ChunkMapKind::per_chunk, 1), Error);  // 3 sequences asked, 2 stored
}

// Brute force for a KV head's map over its non-elite dims: θ = vec(M) row-major, feature
// q_n(m) ⊗ k_n(t), target the rotated non-elite score, weights the original probabilities.
Eigen::MatrixXd brute_force_head_map(const ModelConfig& c, const LayerWeights& w, const Matrix& x,
                                     const std::vector<double>& freqs, int j, const std::vector<int>& dims) {
  const int dh = c.head_dim, D = int(dims.size());
  const Eigen::MatrixXd q = x.cast<double>() * w.wq.cast<double>().transpose();
  const Eigen::MatrixXd k = x.cast<double>() * w.wk.cast<double>().transpose();
  Eigen::MatrixXd n = Eigen::MatrixXd::Zero(D * D, D * D);
  Eigen::VectorXd b = Eigen::VectorXd::Zero(D * D);
  for_each_weighted_pair(c, q, k, freqs, j,
                         [&](int h, int m, int t, double weight, const Eigen::VectorXd& qm, const Eigen::VectorXd& kr) {
                           double target = 0;
                           Eigen::VectorXd phi(D * D);
                           for (int i = 0; i < D; ++i) {
                             target += qm[dims[std::size_t(i)]] * kr[dims[std::size_t(i)]];
                             for (int l = 0; l < D; ++l)
                               phi[i * D + l] = q(m, h * dh + dims[std::size_t(i)]) * k(t, j * dh + dims[std::size_t(l)]);
                           }
                           n += weight * phi * phi.transpose();
                           b += weight * target * phi;
                         });
  const Eigen::VectorXd theta = n.ldlt().solve(b);
  return Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(theta.data(), D, D);
}

TEST(HeadMap, IdentityWhereRopeDoesNotRotate) {
  std::mt19937 rng(6);
  const ModelConfig c = small_config();
  const LayerWeights w = small_layer(c, rng);
  const int S = 24;
  const Matrix x = random_f(S, c.hidden, rng);
  const std::vector<float> xs(x.data(), x.data() + x.size());
  const std::vector<std::vector<int>> elite{{1}, {2}};
  const auto maps = fit_head_maps(w, c, elite, xs, 0, 1, S, RopeTable({0.0, 0.0, 0.0, 0.0}, S));
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_EQ(maps[0].dims, (std::vector<int>{0, 2, 3, 4, 6, 7}));  // chunk 1 (dims 1, 5) is elite
  for (const HeadMap& map : maps) EXPECT_LT((map.m - Eigen::MatrixXd::Identity(6, 6)).norm(), 1e-4) << map.head;
}

TEST(HeadMap, EqualsBruteForceWeightedLeastSquaresAndFoldsIntoTheKeys) {
  std::mt19937 rng(7);
  const ModelConfig c = small_config();
  const LayerWeights w = small_layer(c, rng);
  const int S = 20;
  const Matrix x = random_f(2 * S, c.hidden, rng);
  const std::vector<float> xs(x.data(), x.data() + x.size());
  const std::vector<double> freqs{1.0, 0.3, 0.05, 0.01};
  const RopeTable rope(freqs, S);
  const std::vector<std::vector<int>> elite{{2}, {0}};
  // Fitted on the second of two sequences: the first must not count.
  const auto maps = fit_head_maps(w, c, elite, xs, 1, 1, S, rope);
  const Matrix second = x.bottomRows(S);
  for (const HeadMap& map : maps) {
    const Eigen::MatrixXd expected = brute_force_head_map(c, w, second, freqs, map.head, map.dims);
    EXPECT_LT((map.m - expected).norm(), 2e-3 * (1 + expected.norm())) << "head " << map.head;
    EXPECT_GT((map.m - Eigen::MatrixXd::Identity(6, 6)).norm(), 0.05) << "a rotating head should not fit the identity";
    // Off the chunk diagonal: a head map mixes chunks, which a per-chunk map cannot.
    EXPECT_GT(std::abs(map.m(0, 1)) + std::abs(map.m(1, 0)), 1e-3);
  }
  const Matrix mapped = apply_head_maps(w.wk, c, maps);
  const Eigen::VectorXf xv = x.row(3).transpose();
  const HeadMap& last = maps.back();
  Eigen::VectorXd k(6);
  for (int i = 0; i < 6; ++i) k[i] = w.wk.row(last.head * 8 + last.dims[std::size_t(i)]).dot(xv);
  const Eigen::VectorXd expected = last.m * k;
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(mapped.row(last.head * 8 + last.dims[std::size_t(i)]).dot(xv), expected[i], 1e-4);
  EXPECT_EQ(mapped.row(last.head * 8 + 0), w.wk.row(last.head * 8 + 0)) << "the elite rows are not mapped";
}

TEST(AttentionWeighting, WeightedSvdMinimisesItsObjectiveAndTailsMatch) {
  std::mt19937 rng(5);
  const ModelConfig c = small_config();
  LayerWeights w = small_layer(c, rng);
  const std::vector<std::vector<int>> elite{{1}, {3}};
  JointLayout layout;
  const MatrixD joint = build_joint_matrix(w, c, elite, layout);
  const MatrixD xs = random_d(200, c.hidden, rng);
  const Eigen::MatrixXd gram = xs.transpose() * xs;
  const RowWeights rows = attention_row_weights(w, c, layout, gram, 0.7);
  ASSERT_EQ(rows.left.rows(), joint.rows());
  EXPECT_LT((rows.left * rows.left_inverse - MatrixD::Identity(joint.rows(), joint.rows())).norm(), 1e-8);
  // The key block of head 0 squares to a multiple of Q_0 = Σ_h W_qn^h C W_qn^hᵀ.
  const int n0 = c.head_dim - 2;  // non-elite dims of head 0
  Eigen::MatrixXd q0 = Eigen::MatrixXd::Zero(n0, n0);
  for (int h = 0; h < c.group_size(); ++h) {
    Eigen::MatrixXd part(n0, c.hidden);
    for (int i = 0; i < n0; ++i) part.row(i) = w.wq.row(h * c.head_dim + layout.rows[std::size_t(i)].dim).cast<double>();
    q0 += part * gram * part.transpose();
  }
  const Eigen::MatrixXd block = rows.left.topLeftCorner(n0, n0);
  const Eigen::MatrixXd squared = block * block;
  EXPECT_LT((squared / squared.trace() - q0 / q0.trace()).norm(), 1e-8);

  const Decomposition weighted(joint, &gram, SvdPrecision::f64, &rows), plain(joint, &gram);
  const Eigen::VectorXd tail = weighted.squared_error_tail(&gram);
  auto weighted_error = [&](const LowRank& f) {
    return std::pow(data_norm(rows.left * (joint - f.b * f.a), gram), 2);
  };
  for (int rank = 1; rank < weighted.max_rank(); ++rank) {
    const LowRank f = weighted.factor(rank);
    EXPECT_NEAR(tail[rank], std::pow(data_norm(joint - f.b * f.a, gram), 2), 1e-6 * tail[0]) << rank;
    EXPECT_NEAR(weighted_error(f), weighted.singular_values().tail(weighted.max_rank() - rank).squaredNorm(),
                1e-6 * weighted.singular_values().squaredNorm());
    EXPECT_LE(weighted_error(f), weighted_error(plain.factor(rank)) * (1 + 1e-9)) << rank;
  }
  EXPECT_LT(data_norm(joint - weighted.factor(weighted.max_rank()).b * weighted.factor(weighted.max_rank()).a, gram),
            1e-8 * data_norm(joint, gram));
}

TEST(OutputRefit, RecoversAPlantedOutputMap) {
  std::mt19937 rng(6);
  const int width = 8, d = 8, S = 60;
  const Matrix wo = random_f(d, width, rng), planted = random_f(d, width, rng);
  // Original head outputs o with W_o o = W* o' exactly: o = W_o⁻¹ W* o'.
  const Matrix to_original = (wo.cast<double>().inverse() * planted.cast<double>()).cast<float>();
  std::vector<Matrix> original, compressed;
  for (int s = 0; s < 5; ++s) {
    compressed.push_back(random_f(S, width, rng));
    original.push_back(compressed.back() * to_original.transpose());
  }
  const OutputRefit refit = refit_output(wo, original, compressed, 2);
  EXPECT_GT(refit.heldout_before, 0.5);
  EXPECT_LT(refit.heldout_after, 1e-2);
  EXPECT_LT(refit.fit_after, 1e-2);
  EXPECT_DOUBLE_EQ(refit.lambda, 1e-4);  // no noise: the weakest ridge wins
  EXPECT_LT((refit.wo - planted).norm(), 1e-2 * planted.norm());
}

TEST(OutputRefit, KeepsOutputProjectionWhenNothingToGain) {
  std::mt19937 rng(7);
  const Matrix wo = random_f(6, 6, rng);
  std::vector<Matrix> outputs;
  for (int s = 0; s < 3; ++s) outputs.push_back(random_f(30, 6, rng));
  const OutputRefit refit = refit_output(wo, outputs, outputs, 1);
  EXPECT_TRUE(std::isinf(refit.lambda));
  EXPECT_EQ(refit.wo, wo);
  EXPECT_THROW(refit_output(wo, outputs, outputs, 3), Error);  // nothing left to fit on
}

}  // namespace
}  // namespace ekv
