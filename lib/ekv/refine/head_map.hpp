// Per-KV-head key maps (docs/method.md §9): one linear map over all non-elite dims of a KV head
// instead of a 2×2 map per chunk. The plain score q_nᵀ M k_n replaces the rotated non-elite score
// Σ_c q_cᵀ R((n−m)ω_c) k_c; M is fitted by least squares over causal pairs weighted by the
// original attention probabilities, like the chunk maps, but may mix chunks. It folds into W_k's
// non-elite rows (k_n ← M k_n) before J-LRD: the cache layout does not change.
#pragma once

#include <vector>

#include "ekv/core/matrix.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

struct HeadMap {
  int head = 0;           // KV head j
  std::vector<int> dims;  // its non-elite dims within the head (both halves of each chunk)
  Eigen::MatrixXd m;      // [dims, dims]: k_dims ← m k_dims
};

// The maps of every KV head of one layer, fitted on stored sequences first .. first+sequences-1
// of x [*, S, d] (the original layer's inputs).
std::vector<HeadMap> fit_head_maps(const LayerWeights& weights, const ModelConfig& config,
                                   const std::vector<std::vector<int>>& elite, const std::vector<float>& x, int first,
                                   int sequences, int seq_len, const RopeTable& rope);

// W_k with each KV head's non-elite rows replaced by m times them.
Matrix apply_head_maps(const Matrix& wk, const ModelConfig& config, const std::vector<HeadMap>& maps);

}  // namespace ekv
