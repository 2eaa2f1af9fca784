// The logit change of dropping RoPE on chunks (docs/method.md §3-4), for one KV head of one layer.
//
// For chunk c, D_c(m,n) = plain_c − rot_c = s · a_c(m) · b_c(n) with
//   a_c(m) = (q1, q2, −q̃1, −q̃2),  b_c(n) = (k1, k2, k̃1, k̃2),
// (q1, q2) = (q_c, q_{c+n_c}) of a query head at m, q̃ = R(mω_c) q, and likewise for k at n.
// With non-elite set U (indicator u), ℓ_E − ℓ = Σ_{c∈U} D_c.
//
// One pass over the sequences builds both objectives:
//   L2: M_cc' = Σ_pairs D_c D_c' over ALL causal pairs n ≤ m of every sequence and query head
//       of the group, exactly, with 4n_c × 4n_c prefix sums of b b^T (O(S · n_c²) per sequence);
//   L1: D_c on a deterministic subsample of causal pairs (a matrix [pairs, n_c]);
//   attention (when asked for): Var_p(ℓ_E − ℓ) under the original attention p(m, ·) of each
//     query, whose half is to second order the KL between the original and the RoPElite
//     attention distributions: softmax ignores a shift of a whole row, and the pairs a query
//     barely attends to weigh little. Estimated from keys drawn from p(m, ·) for every query m,
//     each row centred by its exact mean Σ_n p(m,n) D_c(m,n); an n_c × n_c matrix like L2's.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "ekv/model/weights.hpp"

namespace ekv {

enum class Objective { l1, l2, attention };

struct ChunkDistanceInput {
  std::vector<Matrix> queries;  // per query head of the group: [S, d_h] before RoPE, one sequence
  Matrix keys;                  // [S, d_h] before RoPE
};

// Rows of (x1, x2, x̃1, x̃2) per chunk: [S, 4 n_c] (see the .cpp).
using RowMatrixD4 = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

class ChunkDistances {
 public:
  // pairs_per_seq = 0 keeps every causal pair for L1. with_attention: also the attention
  // objective's statistics (the original attention of every query: S² per query head).
  ChunkDistances(std::vector<double> frequencies, int head_dim, int pairs_per_seq, std::uint64_t pair_seed,
                 bool with_attention = false);

  void add_sequence(const ChunkDistanceInput& input, std::uint64_t sequence_index);

  int chunks() const { return int(frequencies_.size()); }
  // The same without the L1 rows (tens of MB a head): what a search over all layers keeps when
  // its objective is quadratic (l2, attention), whose state is an n_c × n_c matrix.
  ChunkDistances without_l1() const;
  static bool quadratic_objective(Objective objective) { return objective != Objective::l1; }
  std::int64_t pairs_l2() const { return pairs_l2_; }    // pairs × query heads behind M
  std::int64_t pairs_l1() const { return std::int64_t(l1_columns_.front().size()); }
  std::int64_t pairs_attention() const { return pairs_attention_; }  // keys drawn × query heads

  // dist(E): L1 = mean |ℓ_E − ℓ| over the sampled pairs; L2 = mean (ℓ_E − ℓ)² over all pairs;
  // attention = mean over queries of Var_p(ℓ_E − ℓ) (≈ twice the attention KL).
  double distance(const std::vector<bool>& elite, Objective objective) const;

  // Greedy from the empty set, ties to the lowest chunk: the pick order, the distance after
  // each pick (element 0 is dist(∅)), and optionally every candidate's score in every round
  // (scores[round][c], NaN for chunks already elite).
  struct Search {
    std::vector<int> order;
    std::vector<double> distance;
    std::vector<std::vector<double>> scores;
  };
  Search greedy(int r_max, Objective objective, bool keep_scores = false) const;

  // A greedy search's state at a set E, so that searches can be stepped one pick at a time (the
  // constrained search of an engine layout, rope/slot_layout, steps every KV head of a layer).
  struct State {
    std::vector<bool> elite;
    std::vector<double> residual;  // L1: Σ_{c∉E} D_c per sampled pair
  };
  State start(Objective objective) const;  // E = ∅
  void add(State& state, int chunk, Objective objective) const;
  // One greedy round from the state: dist(E ∪ {c}) for every chunk c with allowed[c] and not in E
  // (NaN for the others).
  std::vector<double> candidate_distances(const State& state, const std::vector<bool>& allowed,
                                          Objective objective) const;

  const Eigen::MatrixXd& gram() const { return m_; }  // M, [n_c, n_c]

 private:
  // residual[pair] += sign · D_chunk(pair): the L1 state's update, one contiguous column.
  void add_column(std::vector<double>& residual, int chunk, double sign) const;
  // scores[c] = dist(E ∪ {c}) for the candidates c (the others keep their value).
  void l1_scores(const std::vector<double>& residual, const std::vector<bool>& candidate,
                 std::vector<double>& scores) const;
  // The quadratic objectives (L2, attention): uᵀ M u / count for the indicator u of the non-elite.
  const Eigen::MatrixXd& quadratic(Objective objective) const { return objective == Objective::l2 ? m_ : m_attention_; }
  std::int64_t quadratic_count(Objective objective) const {
    return objective == Objective::l2 ? pairs_l2_ : pairs_attention_;
  }
  void quadratic_scores(const Eigen::VectorXd& u, const std::vector<bool>& candidate, Objective objective,
                        std::vector<double>& scores) const;
  void add_attention_rows(const std::vector<RowMatrixD4>& a, const RowMatrixD4& b, const ChunkDistanceInput& input,
                          std::uint64_t sequence_index);

  std::vector<double> frequencies_;
  int head_dim_;
  int pairs_per_seq_;
  std::uint64_t pair_seed_;
  double scale_;
  Eigen::MatrixXd m_;            // Σ D_c D_c'
  std::int64_t pairs_l2_ = 0;
  // D_c per sampled (pair, query head), one column per chunk: a greedy pick reads one column and
  // a round of scores each column once, both contiguous (tens of MB a head).
  std::vector<std::vector<float>> l1_columns_;  // [n_c][pairs]
  bool with_attention_ = false;
  Eigen::MatrixXd m_attention_;  // Σ D̃_c D̃_c' over the drawn keys, D̃ centred under p(m, ·)
  std::int64_t pairs_attention_ = 0;
};

// Causal pairs (m, n), n ≤ m < S, sampled for one sequence: all of them when count = 0 or
// count >= S(S+1)/2, else `count` distinct pairs from a generator seeded by (seed, sequence).
std::vector<std::pair<int, int>> sample_causal_pairs(int seq_len, int count, std::uint64_t seed,
                                                     std::uint64_t sequence);

}  // namespace ekv
