// Non-elite chunk maps (docs/method.md §9): RoPElite drops the rotation of a non-elite chunk, which
// leaves the plain score q_cᵀk_c that the original only had at relative distance 0. Replacing it
// by q_cᵀ M_c k_c, with M_c a scalar or a 2×2 matrix fitted by least squares against the rotated
// score q_cᵀ R((n−m)ω_c) k_c over causal pairs weighted by the original attention probabilities,
// keeps the attention-weighted mean of the rotation. M_c folds into W_k's two rows of the chunk
// (k_c ← M_c k_c) before J-LRD, so the cache layout does not change.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "ekv/core/name_table.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

// per_chunk: each chunk's scalar or 2×2 map, whichever fits held-out sequences better.
// head: one map over all non-elite dims of a KV head (refine/head_map), not per chunk.
enum class ChunkMapKind { none, scalar, matrix, per_chunk, head };
const NameTable<ChunkMapKind>& name_table(ChunkMapKind);

struct ChunkMap {
  int head = 0;   // KV head j
  int chunk = 0;  // a non-elite chunk c of that head
  std::array<double, 4> m{1, 0, 0, 1};  // row-major 2×2 acting on (k_c, k_{c+n_c})
};

// The maps of every non-elite chunk of every KV head of one layer, fitted on stored sequences
// x [sequences, S, d] (the original layer's inputs). kind none: identity maps. kind per_chunk
// chooses each chunk's kind on the `heldout` stored sequences after the fitted ones.
std::vector<ChunkMap> fit_chunk_maps(const LayerWeights& weights, const ModelConfig& config,
                                     const std::vector<std::vector<int>>& elite, const std::vector<float>& x,
                                     int sequences, int seq_len, const RopeTable& rope, ChunkMapKind kind,
                                     int heldout = 0);

// W_k with k_c ← M_c k_c on the two rows of every mapped chunk.
Matrix apply_chunk_maps(const Matrix& wk, const ModelConfig& config, const std::vector<ChunkMap>& maps);

}  // namespace ekv
