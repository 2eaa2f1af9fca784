#include "ekv/lrd/rank_budget.hpp"

#include <queue>
#include <utility>

namespace ekv {

std::int64_t full_cache_elements(int kv_heads, int head_dim) { return 2LL * kv_heads * head_dim; }

std::int64_t compressed_cache_elements(int r, int kv_heads, int d_kv) { return 2LL * r * kv_heads + d_kv; }

double cache_ratio(int r, int kv_heads, int head_dim, int d_kv) {
  return double(compressed_cache_elements(r, kv_heads, d_kv)) / double(full_cache_elements(kv_heads, head_dim));
}

double latent_for_ratio(double ratio, int r, int kv_heads, int head_dim) {
  return ratio * double(full_cache_elements(kv_heads, head_dim)) - double(compressed_cache_elements(r, kv_heads, 0));
}

std::int64_t cache_elements_per_token(const ModelConfig& c) {
  std::int64_t total = 0;
  for (int l = 0; l < c.layers; ++l)
    total += c.elitekv.enabled() ? compressed_cache_elements(c.elitekv.r, c.kv_heads, c.elitekv.kv_rank[std::size_t(l)])
                                 : full_cache_elements(c.kv_heads, c.head_dim);
  return total;
}

std::vector<int> allocate_budget(const std::vector<Eigen::VectorXd>& gains, const std::vector<int>& max_ranks,
                                 long long dims) {
  const std::size_t layers = gains.size();
  using Gain = std::pair<double, std::size_t>;
  std::priority_queue<Gain> next;
  std::vector<int> chosen(layers, 0);
  for (std::size_t l = 0; l < layers; ++l)
    if (max_ranks[l] > 0) next.push({gains[l][0], l});
  for (long long spent = 0; spent < dims && !next.empty(); ++spent) {
    const std::size_t l = next.top().second;
    next.pop();
    const int rank = ++chosen[l];
    if (rank < max_ranks[l]) next.push({gains[l][rank], l});
  }
  return chosen;
}

}  // namespace ekv
