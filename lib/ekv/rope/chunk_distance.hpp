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
//   L1: D_c on a deterministic subsample of causal pairs (a matrix [pairs, n_c]).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "ekv/model/weights.hpp"

namespace ekv {

enum class Objective { l1, l2 };

struct ChunkDistanceInput {
  std::vector<Matrix> queries;  // per query head of the group: [S, d_h] before RoPE, one sequence
  Matrix keys;                  // [S, d_h] before RoPE
};

class ChunkDistances {
 public:
  // pairs_per_seq = 0 keeps every causal pair for L1.
  ChunkDistances(std::vector<double> frequencies, int head_dim, int pairs_per_seq, std::uint64_t pair_seed);

  void add_sequence(const ChunkDistanceInput& input, std::uint64_t sequence_index);

  int chunks() const { return int(frequencies_.size()); }
  std::int64_t pairs_l2() const { return pairs_l2_; }    // pairs × query heads behind M
  std::int64_t pairs_l1() const { return std::int64_t(l1_rows_.size()) / chunks(); }

  // dist(E): L1 = mean |ℓ_E − ℓ| over the sampled pairs; L2 = mean (ℓ_E − ℓ)² over all pairs.
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
  // scores[c] = dist(E ∪ {c}) for the candidates c (the others keep their value).
  void l1_scores(const std::vector<double>& residual, const std::vector<bool>& candidate,
                 std::vector<double>& scores) const;
  void l2_scores(const Eigen::VectorXd& u, const std::vector<bool>& candidate, std::vector<double>& scores) const;

  std::vector<double> frequencies_;
  int head_dim_;
  int pairs_per_seq_;
  std::uint64_t pair_seed_;
  double scale_;
  Eigen::MatrixXd m_;            // Σ D_c D_c'
  std::int64_t pairs_l2_ = 0;
  std::vector<float> l1_rows_;   // [pairs, n_c] row-major
};

// Causal pairs (m, n), n ≤ m < S, sampled for one sequence: all of them when count = 0 or
// count >= S(S+1)/2, else `count` distinct pairs from a generator seeded by (seed, sequence).
std::vector<std::pair<int, int>> sample_causal_pairs(int seq_len, int count, std::uint64_t seed,
                                                     std::uint64_t sequence);

}  // namespace ekv
