// How much a compressed layer changes attention on stored calibration inputs, through the
// reconstruct path (METHOD.md §6): keys = RoPE'd elite dims of W_k x, plus non-elite dims
// B_k A x left unrotated; values = B_v A x; queries rotated on the elite chunks only.
#pragma once

#include <memory>
#include <vector>

#include "ekv/lrd/factorization.hpp"
#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/weights.hpp"
#include "ekv/rope/frequencies.hpp"

namespace ekv {

struct AttentionError {
  double logits = 0;  // ‖ℓ' − ℓ‖ / ‖ℓ‖ over causal pairs, heads and sequences
  double output = 0;  // ‖o' − o‖ / ‖o‖ of the attention outputs before W_o
};

// x: [sequences, S, d] row-major (calib.h5 layout); uses the first `sequences` of them.
AttentionError attention_error(const LayerWeights& weights, const ModelConfig& config,
                               const std::vector<std::vector<int>>& elite, const JointLayout& layout,
                               const LowRank& factor, const std::vector<float>& x, int sequences, int seq_len,
                               const RopeTable& rope);

}  // namespace ekv
