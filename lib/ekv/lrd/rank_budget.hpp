// The KV cache budget: what one token costs in cached elements, the ratio to the original cache,
// the latent size a ratio allows, and the allocation of a whole-model budget among layers. Every
// tool that counts cache (ekv-jlrd, ekv-check, the compression plan, the engine exports) counts
// it here (docs/method.md §6: the cache holds G·2r rotated key dims and d_kv latent dims per
// layer, the original 2·G·d_h).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "ekv/model/config.hpp"

namespace ekv {

// Elements one token caches in one layer: the original K and V, and an EliteKV layer's.
std::int64_t full_cache_elements(int kv_heads, int head_dim);
std::int64_t compressed_cache_elements(int r, int kv_heads, int d_kv);

// (2rG + d_kv) / (2 G d_h): a compressed layer's cache over the original's.
double cache_ratio(int r, int kv_heads, int head_dim, int d_kv);

// The d_kv at which a layer caches `ratio` of its original cache (unrounded; negative when the
// G·2r rotated dims alone exceed it).
double latent_for_ratio(double ratio, int r, int kv_heads, int head_dim);

// Elements one token caches over all layers of `config` (original or EliteKV).
std::int64_t cache_elements_per_token(const ModelConfig& config);

// Per-layer ranks for `dims` latent dims in all. gains[l][k] is what layer l's (k+1)-th latent
// dim lowers its error by; each dim costs one cached element, so the greedy gives the next dim
// to the layer with the largest next gain, never past max_ranks[l]. When every layer's gains are
// non-increasing (a whitened SVD's are: they are its squared singular values in order), this
// maximises the total gain; otherwise it is the greedy choice, not the best (the tests show one).
std::vector<int> allocate_budget(const std::vector<Eigen::VectorXd>& gains, const std::vector<int>& max_ranks,
                                 long long dims);

}  // namespace ekv
