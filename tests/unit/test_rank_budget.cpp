// The cache budget (lib/ekv/lrd/rank_budget): the element counts of the paper's cache, and the
// greedy allocation of a whole-model latent budget against an exhaustive search on planted gains.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

#include "ekv/lrd/rank_budget.hpp"

namespace ekv {
namespace {

TEST(RankBudget, CacheElementsAndRatios) {
  // LLaMA-2-7B (MHA, G = 32, d_h = 128): r = 8 and d_kv = 512 keep 1/8 of the cache.
  EXPECT_DOUBLE_EQ(cache_ratio(8, 32, 128, 512), 0.125);
  // SmolLM2 (GQA, G = 3, d_h = 64): r = 4, d_kv = 72 -> (24 + 72) / 384 = 25 %.
  EXPECT_DOUBLE_EQ(cache_ratio(4, 3, 64, 72), 0.25);
  EXPECT_DOUBLE_EQ(cache_ratio(32, 3, 64, 0), 0.5);  // all chunks elite, no latent: K only
  EXPECT_EQ(full_cache_elements(3, 64), 384);
  EXPECT_EQ(compressed_cache_elements(4, 3, 72), 96);
  // The inverse: the latent a ratio allows, negative when the rotated dims alone exceed it.
  EXPECT_DOUBLE_EQ(latent_for_ratio(0.25, 4, 3, 64), 72.0);
  EXPECT_DOUBLE_EQ(latent_for_ratio(0.05, 4, 3, 64), 0.05 * 384 - 24);
  for (int d_kv : {0, 1, 17, 72, 360}) EXPECT_NEAR(latent_for_ratio(cache_ratio(4, 3, 64, d_kv), 4, 3, 64), d_kv, 1e-9);
  ModelConfig c;
  c.layers = 3, c.kv_heads = 3, c.head_dim = 64;
  EXPECT_EQ(cache_elements_per_token(c), 3 * 384);
  c.elitekv.r = 4;
  c.elitekv.kv_rank = {72, 10, 0};
  c.elitekv.elite.assign(3, {});
  EXPECT_EQ(cache_elements_per_token(c), (24 + 72) + (24 + 10) + 24);
}

// The best total gain of `dims` dims by exhaustive search (prefixes of each layer's gains).
double best_total(const std::vector<Eigen::VectorXd>& gains, const std::vector<int>& max_ranks, long long dims,
                  std::size_t layer = 0) {
  if (layer == gains.size()) return 0;
  double best = -1, prefix = 0;
  for (int k = 0; k <= max_ranks[layer] && k <= dims; ++k) {
    if (k > 0) prefix += gains[layer][k - 1];
    best = std::max(best, prefix + best_total(gains, max_ranks, dims - k, layer + 1));
  }
  return best;
}

double total(const std::vector<Eigen::VectorXd>& gains, const std::vector<int>& ranks) {
  double sum = 0;
  for (std::size_t l = 0; l < gains.size(); ++l) sum += gains[l].head(ranks[l]).sum();
  return sum;
}

// Non-increasing gains (a whitened SVD's squared singular values): the greedy is optimal.
TEST(RankBudget, GreedyIsOptimalForNonIncreasingGains) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(0, 1);
  for (int trial = 0; trial < 200; ++trial) {
    const int layers = 1 + trial % 4;
    std::vector<Eigen::VectorXd> gains;
    std::vector<int> max_ranks;
    for (int l = 0; l < layers; ++l) {
      const int n = 1 + int(rng() % 6);
      Eigen::VectorXd g(n);
      for (int k = 0; k < n; ++k) g[k] = uniform(rng);
      std::sort(g.data(), g.data() + n, std::greater<>());
      gains.push_back(g);
      max_ranks.push_back(int(rng() % (n + 1)));
    }
    const long long dims = rng() % 12;
    const std::vector<int> ranks = allocate_budget(gains, max_ranks, dims);
    long long spent = 0;
    for (int l = 0; l < layers; ++l) {
      EXPECT_LE(ranks[std::size_t(l)], max_ranks[std::size_t(l)]);
      spent += ranks[std::size_t(l)];
    }
    long long room = 0;
    for (int m : max_ranks) room += m;
    EXPECT_EQ(spent, std::min(dims, room)) << "trial " << trial;
    EXPECT_NEAR(total(gains, ranks), best_total(gains, max_ranks, dims), 1e-12) << "trial " << trial;
  }
}

// A gain curve that rises (a weighted decomposition can give one): the greedy takes the larger
// first gain and misses the pair behind the smaller one. This is what the code does, stated.
TEST(RankBudget, GreedyIsNotOptimalWhenAGainCurveRises) {
  const std::vector<Eigen::VectorXd> gains = {(Eigen::VectorXd(2) << 0.6, 0.1).finished(),
                                              (Eigen::VectorXd(2) << 0.5, 0.9).finished()};
  const std::vector<int> ranks = allocate_budget(gains, {2, 2}, 2);
  EXPECT_EQ(ranks, (std::vector<int>{1, 1}));  // 0.6 + 0.5 = 1.1
  EXPECT_DOUBLE_EQ(best_total(gains, {2, 2}, 2), 1.4);  // layer 1 twice
}

}  // namespace
}  // namespace ekv
