#include "ekv/rope/chunk_distance.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "ekv/core/error.hpp"

namespace ekv {

std::vector<std::pair<int, int>> sample_causal_pairs(int seq_len, int count, std::uint64_t seed,
                                                     std::uint64_t sequence) {
  const std::uint64_t total = std::uint64_t(seq_len) * std::uint64_t(seq_len + 1) / 2;
  std::vector<std::uint64_t> indices;
  if (count <= 0 || std::uint64_t(count) >= total) {
    indices.resize(total);
    for (std::uint64_t i = 0; i < total; ++i) indices[i] = i;
  } else {
    // Floyd's sampling of distinct indices; the generator is exactly specified by the standard.
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + sequence + 1);
    std::set<std::uint64_t> chosen;
    for (std::uint64_t j = total - std::uint64_t(count); j < total; ++j) {
      const std::uint64_t t = rng() % (j + 1);
      if (!chosen.insert(t).second) chosen.insert(j);
    }
    indices.assign(chosen.begin(), chosen.end());
  }
  std::vector<std::pair<int, int>> pairs;
  pairs.reserve(indices.size());
  for (const std::uint64_t i : indices) {
    // Index i enumerates (m, n) row by row: i = m(m+1)/2 + n with n <= m.
    auto m = std::uint64_t((std::sqrt(8.0 * double(i) + 1.0) - 1.0) / 2.0);
    while (m * (m + 1) / 2 > i) --m;
    while ((m + 1) * (m + 2) / 2 <= i) ++m;
    pairs.emplace_back(int(m), int(i - m * (m + 1) / 2));
  }
  return pairs;
}

ChunkDistances::ChunkDistances(std::vector<double> frequencies, int head_dim, int pairs_per_seq,
                               std::uint64_t pair_seed, bool with_attention)
    : frequencies_(std::move(frequencies)),
      head_dim_(head_dim),
      pairs_per_seq_(pairs_per_seq),
      pair_seed_(pair_seed),
      scale_(1.0 / std::sqrt(double(head_dim))),
      m_(Eigen::MatrixXd::Zero(Eigen::Index(frequencies_.size()), Eigen::Index(frequencies_.size()))),
      l1_columns_(frequencies_.size()),
      with_attention_(with_attention),
      m_attention_(Eigen::MatrixXd::Zero(Eigen::Index(frequencies_.size()), Eigen::Index(frequencies_.size()))) {
  EKV_CHECK(int(frequencies_.size()) * 2 == head_dim, "chunk distances: ", frequencies_.size(),
            " frequencies for head dim ", head_dim);
}

ChunkDistances ChunkDistances::without_l1() const {
  ChunkDistances copy(frequencies_, head_dim_, pairs_per_seq_, pair_seed_, with_attention_);
  copy.m_ = m_;
  copy.pairs_l2_ = pairs_l2_;
  copy.m_attention_ = m_attention_;
  copy.pairs_attention_ = pairs_attention_;
  return copy;
}

namespace {

// Rows t: for chunk c the four values (x1, x2, x̃1, x̃2) with x̃ = R(tω_c) x; the rotated pair is
// negated for queries so that a·b = plain − rot.
RowMatrixD4 four_vectors(const Matrix& x, const std::vector<double>& omega, bool negate_rotated) {
  const int chunks = int(omega.size());
  RowMatrixD4 out(x.rows(), 4 * chunks);
  const double sign = negate_rotated ? -1.0 : 1.0;
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (int c = 0; c < chunks; ++c) {
      const double x1 = x(t, c), x2 = x(t, c + chunks);
      const double angle = double(t) * omega[std::size_t(c)], cs = std::cos(angle), sn = std::sin(angle);
      out(t, 4 * c) = x1;
      out(t, 4 * c + 1) = x2;
      out(t, 4 * c + 2) = sign * (x1 * cs - x2 * sn);
      out(t, 4 * c + 3) = sign * (x2 * cs + x1 * sn);
    }
  return out;
}
}  // namespace

void ChunkDistances::add_sequence(const ChunkDistanceInput& input, std::uint64_t sequence_index) {
  const int chunks = this->chunks(), S = int(input.keys.rows());
  EKV_CHECK(input.keys.cols() == head_dim_, "chunk distances: keys have ", input.keys.cols(), " dims, expected ",
            head_dim_);
  const RowMatrixD4 b = four_vectors(input.keys, frequencies_, false);  // [S, 4n_c]
  std::vector<RowMatrixD4> a;
  for (const auto& q : input.queries) {
    EKV_CHECK(q.rows() == S && q.cols() == head_dim_, "chunk distances: a query head has shape ", q.rows(), "×",
              q.cols(), ", expected ", S, "×", head_dim_);
    a.push_back(four_vectors(q, frequencies_, true));
  }
  const double s2 = scale_ * scale_;

  // L2, exact over all causal pairs: P(m) = Σ_{n<=m} b(n) b(n)ᵀ; M_cc' += s² a_c(m)ᵀ P_cc'(m) a_c'(m).
  Eigen::MatrixXd prefix = Eigen::MatrixXd::Zero(4 * chunks, 4 * chunks);
  Eigen::MatrixXd y(4 * chunks, chunks);
  for (int m = 0; m < S; ++m) {
    prefix.noalias() += b.row(m).transpose() * b.row(m);
    for (const auto& ah : a) {
      for (int c = 0; c < chunks; ++c)
        y.col(c).noalias() = prefix.middleCols(4 * c, 4) * ah.row(m).segment(4 * c, 4).transpose();
      for (int c = 0; c < chunks; ++c)
        m_.row(c).noalias() += s2 * (ah.row(m).segment(4 * c, 4) * y.middleRows(4 * c, 4));
    }
  }
  pairs_l2_ += std::int64_t(a.size()) * S * (S + 1) / 2;

  // L1 on the pair subsample: one row of D_c per (pair, query head).
  for (const auto& [m, n] : sample_causal_pairs(S, pairs_per_seq_, pair_seed_, sequence_index))
    for (const auto& ah : a)
      for (int c = 0; c < chunks; ++c)
        l1_columns_[std::size_t(c)].push_back(float(scale_ * ah.row(m).segment(4 * c, 4).dot(b.row(n).segment(4 * c, 4))));
  if (with_attention_) add_attention_rows(a, b, input, sequence_index);
}

void ChunkDistances::add_attention_rows(const std::vector<RowMatrixD4>& a, const RowMatrixD4& b,
                                        const ChunkDistanceInput& input, std::uint64_t sequence_index) {
  const int chunks = this->chunks(), S = int(input.keys.rows());
  // Keys drawn per query: as many rows per sequence as the L1 sample has pairs (8 when it keeps all).
  const int draws = pairs_per_seq_ > 0 ? std::max(1, (pairs_per_seq_ + S - 1) / S) : 8;
  // The rotated keys k̃ (columns 4c+2, 4c+3 of b), for the original logits.
  Eigen::MatrixXd keys(S, 2 * chunks);
  for (int c = 0; c < chunks; ++c) keys.middleCols(2 * c, 2) = b.middleCols(4 * c + 2, 2);
  for (std::size_t h = 0; h < a.size(); ++h) {
    const RowMatrixD4& ah = a[h];
    Eigen::MatrixXd queries(S, 2 * chunks);  // q̃ = −(columns 4c+2, 4c+3 of a): a holds it negated
    for (int c = 0; c < chunks; ++c) queries.middleCols(2 * c, 2) = -ah.middleCols(4 * c + 2, 2);
    // p(m, ·): the original attention, causal.
    Eigen::MatrixXd p = scale_ * queries * keys.transpose();
    for (int m = 0; m < S; ++m) {
      const double top = p.row(m).head(m + 1).maxCoeff();
      double total = 0;
      for (int n = 0; n <= m; ++n) total += p(m, n) = std::exp(p(m, n) - top);
      p.row(m).head(m + 1) /= total;
      p.row(m).tail(S - m - 1).setZero();
    }
    const Eigen::MatrixXd mean_b = p * b;  // Σ_n p(m,n) b(n): [S, 4 n_c]
    std::mt19937_64 rng(pair_seed_ * 0x9E3779B97F4A7C15ull + sequence_index * 0x2545F4914F6CDD1Dull + h + 1);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    Eigen::MatrixXd rows(Eigen::Index(S) * draws, chunks);
    for (int m = 0; m < S; ++m) {
      Eigen::VectorXd mean(chunks);  // D̄_c(m) = Σ_n p(m,n) D_c(m,n)
      for (int c = 0; c < chunks; ++c) mean[c] = scale_ * ah.row(m).segment(4 * c, 4).dot(mean_b.row(m).segment(4 * c, 4));
      for (int k = 0; k < draws; ++k) {
        // n ~ p(m, ·) by inverse CDF.
        double u = uniform(rng), cumulative = 0;
        int n = 0;
        for (; n < m; ++n) {
          cumulative += p(m, n);
          if (u < cumulative) break;
        }
        const Eigen::Index row = Eigen::Index(m) * draws + k;
        for (int c = 0; c < chunks; ++c)
          rows(row, c) = scale_ * ah.row(m).segment(4 * c, 4).dot(b.row(n).segment(4 * c, 4)) - mean[c];
      }
    }
    m_attention_.noalias() += rows.transpose() * rows;
    pairs_attention_ += rows.rows();
  }
}

double ChunkDistances::distance(const std::vector<bool>& elite, Objective objective) const {
  const int chunks = this->chunks();
  EKV_CHECK(int(elite.size()) == chunks, "distance: ", elite.size(), " flags for ", chunks, " chunks");
  if (objective != Objective::l1) {
    EKV_CHECK(objective != Objective::attention || with_attention_, "chunk distances: built without the attention objective");
    Eigen::VectorXd u(chunks);
    for (int c = 0; c < chunks; ++c) u[c] = elite[std::size_t(c)] ? 0.0 : 1.0;
    const std::int64_t count = quadratic_count(objective);
    return count ? u.dot(quadratic(objective) * u) / double(count) : 0.0;
  }
  const std::int64_t rows = pairs_l1();
  std::vector<double> residual(std::size_t(rows), 0.0);  // each pair's sum in ascending chunk order
  for (int c = 0; c < chunks; ++c)
    if (!elite[std::size_t(c)]) add_column(residual, c, 1.0);
  double total = 0;  // summed in row order: the same bits for any thread count
  for (double value : residual) total += std::abs(value);
  return rows ? total / double(rows) : 0.0;
}

ChunkDistances::State ChunkDistances::start(Objective objective) const {
  const int chunks = this->chunks();
  State state;
  state.elite.assign(std::size_t(chunks), false);
  if (objective == Objective::l1) {
    state.residual.assign(std::size_t(pairs_l1()), 0.0);
    for (int c = 0; c < chunks; ++c) add_column(state.residual, c, 1.0);  // in ascending chunk order
  }
  return state;
}

void ChunkDistances::add(State& state, int chunk, Objective objective) const {
  EKV_CHECK(chunk >= 0 && chunk < chunks() && !state.elite[std::size_t(chunk)], "greedy search: chunk ", chunk,
            " cannot be added");
  state.elite[std::size_t(chunk)] = true;
  if (objective != Objective::l1) return;
  add_column(state.residual, chunk, -1.0);
}

void ChunkDistances::add_column(std::vector<double>& residual, int chunk, double sign) const {
  const std::vector<float>& column = l1_columns_[std::size_t(chunk)];
  for (std::size_t r = 0; r < column.size(); ++r) residual[r] += sign * double(column[r]);
}

void ChunkDistances::l1_scores(const std::vector<double>& residual, const std::vector<bool>& candidate,
                               std::vector<double>& scores) const {
  const int chunks = this->chunks();
  // Each candidate's score is summed by one thread in row order: the same bits for any thread count.
#pragma omp parallel for schedule(dynamic)
  for (int c = 0; c < chunks; ++c) {
    if (!candidate[std::size_t(c)]) continue;
    const std::vector<float>& column = l1_columns_[std::size_t(c)];
    double total = 0;
    for (std::size_t r = 0; r < column.size(); ++r) total += std::abs(residual[r] - double(column[r]));
    scores[std::size_t(c)] = column.empty() ? 0.0 : total / double(column.size());
  }
}

void ChunkDistances::quadratic_scores(const Eigen::VectorXd& u, const std::vector<bool>& candidate,
                                      Objective objective, std::vector<double>& scores) const {
  EKV_CHECK(objective != Objective::attention || with_attention_, "chunk distances: built without the attention objective");
  const Eigen::MatrixXd& m = quadratic(objective);
  const std::int64_t count = quadratic_count(objective);
  const Eigen::VectorXd mu = m * u;
  const double base = u.dot(mu);
  for (int c = 0; c < chunks(); ++c)
    if (candidate[std::size_t(c)]) scores[std::size_t(c)] = count ? (base - 2 * mu[c] + m(c, c)) / double(count) : 0.0;
}

std::vector<double> ChunkDistances::candidate_distances(const State& state, const std::vector<bool>& allowed,
                                                        Objective objective) const {
  const int chunks = this->chunks();
  EKV_CHECK(int(state.elite.size()) == chunks && int(allowed.size()) == chunks, "candidate distances: ",
            state.elite.size(), " and ", allowed.size(), " flags for ", chunks, " chunks");
  std::vector<bool> candidate(std::size_t(chunks), false);
  for (int c = 0; c < chunks; ++c) candidate[std::size_t(c)] = allowed[std::size_t(c)] && !state.elite[std::size_t(c)];
  std::vector<double> scores(std::size_t(chunks), std::numeric_limits<double>::quiet_NaN());
  if (objective == Objective::l1) {
    l1_scores(state.residual, candidate, scores);
  } else {
    Eigen::VectorXd u(chunks);
    for (int c = 0; c < chunks; ++c) u[c] = state.elite[std::size_t(c)] ? 0.0 : 1.0;
    quadratic_scores(u, candidate, objective, scores);
  }
  return scores;
}

ChunkDistances::Search ChunkDistances::greedy(int r_max, Objective objective, bool keep_scores) const {
  const int chunks = this->chunks();
  EKV_CHECK(r_max >= 0 && r_max <= chunks, "greedy search: r_max ", r_max, " outside [0, ", chunks, "]");
  Search search;
  State state = start(objective);
  search.distance.push_back(distance(state.elite, objective));
  const std::vector<bool> all(std::size_t(chunks), true);
  for (int round = 0; round < r_max; ++round) {
    std::vector<double> scores = candidate_distances(state, all, objective);
    int best = -1;
    for (int c = 0; c < chunks; ++c)  // strict '<': ties go to the lowest chunk
      if (!state.elite[std::size_t(c)] && (best < 0 || scores[std::size_t(c)] < scores[std::size_t(best)])) best = c;
    add(state, best, objective);
    search.order.push_back(best);
    search.distance.push_back(scores[std::size_t(best)]);
    if (keep_scores) search.scores.push_back(std::move(scores));
  }
  return search;
}

}  // namespace ekv
