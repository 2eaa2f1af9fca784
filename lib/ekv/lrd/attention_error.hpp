// How much a compressed layer changes attention on stored calibration inputs, through the
// reconstruct path (docs/method.md §6): keys = RoPE'd elite dims of W_k x, plus non-elite dims
// B_k A x left unrotated; values = B_v A x; queries rotated on the elite chunks only.
#pragma once

#include <memory>
#include <vector>

#include "ekv/lrd/factorization.hpp"
#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

// Head outputs before W_o, [S, H·d_h], of the original layer and of the compressed one on one
// stored sequence, with the sums behind the logit error.
struct SequenceOutputs {
  Matrix original, compressed;
  double logit_diff = 0, logit_norm = 0;  // Σ(ℓ' − ℓ)², Σ ℓ² over causal pairs and heads
};

// x_original, x_compressed: [S, d] row-major, the inputs of one sequence to each layer (the
// same pointer, or the compressed model's own inputs for sequential calibration).
SequenceOutputs attention_outputs(const LayerWeights& weights, const ModelConfig& config,
                                  const std::vector<std::vector<int>>& elite, const JointLayout& layout,
                                  const LowRank& factor, const float* x_original, const float* x_compressed,
                                  int seq_len, const RopeTable& rope);

// The original layer's projections of x_original before RoPE: q [S, H·d_h], k and v [S, G·d_h].
struct OriginalProjections {
  Matrix q, k, v;
};
// The same, given those projections (the forward pass that produced x has them already);
// `logit_sums` false skips the sums behind the logit error (two more S × S products a head).
SequenceOutputs attention_outputs(const LayerWeights& weights, const ModelConfig& config,
                                  const std::vector<std::vector<int>>& elite, const JointLayout& layout,
                                  const LowRank& factor, const float* x_original, const float* x_compressed,
                                  OriginalProjections original, int seq_len, const RopeTable& rope, bool logit_sums);

struct AttentionError {
  double logits = 0;  // ‖ℓ' − ℓ‖ / ‖ℓ‖ over causal pairs, heads and sequences
  double output = 0;  // ‖o' − o‖ / ‖o‖ of the attention outputs before W_o
  double block = 0;   // ‖W_o' o' − W_o o‖ / ‖W_o o‖: the attention block's output (W_o' = refitted or W_o)
};

// x: [sequences, S, d] row-major (calib.h5 layout); uses sequences [first, first + count).
// output_proj: the compressed layer's W_o (nullptr: the original's).
AttentionError attention_error(const LayerWeights& weights, const ModelConfig& config,
                               const std::vector<std::vector<int>>& elite, const JointLayout& layout,
                               const LowRank& factor, const std::vector<float>& x, int first, int count,
                               int seq_len, const RopeTable& rope, const Matrix* output_proj = nullptr);

// The exact factor of a joint matrix (A = I, B = W_J): the compressed layer with no low-rank
// error, whose attention error is the RoPElite floor.
LowRank exact_factor(const MatrixD& joint);

}  // namespace ekv
