// What the key maps (chunk_map, head_map) fit against: the original layer's rotated queries and
// keys, and its causal attention probabilities, which weight each query-key pair.
#pragma once

#include "ekv/core/matrix.hpp"
#include "ekv/model/rope_frequencies.hpp"

namespace ekv {

// Rotates every chunk of every head of a [S, heads·d_h] matrix, row t at position t.
Matrix rotated(const Matrix& a, int head_dim, const RopeTable& rope);

// Causal softmax of scale·logits, row by row; entries above the diagonal are 0.
Matrix causal_probabilities(const Matrix& logits, float scale);

}  // namespace ekv
