// Attention-aware row weights for J-LRD (docs/method.md §9). The logit error of query head h is
// s·q_nᵀ Δk_n, so the non-elite key rows of KV head j are weighted by Q_j^{1/2} with
// Q_j = Σ_{h∈j} W_qn^h C W_qn^hᵀ / N (the second moment of the query dims that read them); the
// output error is W_o^h Δv, so the value rows of head j are weighted by O_j^{1/2} with
// O_j = Σ_{h∈j} W_o^hᵀ W_o^h. The key blocks are scaled by β, chosen per layer by measured error.
#pragma once

#include <Eigen/Core>

#include "ekv/lrd/factorization.hpp"
#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

// The key blocks of L carry β·Q_j^{1/2}, the value blocks O_j^{1/2}; both are normalised to unit
// mean eigenvalue first so that β = 1 weighs keys and values by their shapes alone.
// gram: Σ x xᵀ over `tokens` calibration tokens.
RowWeights attention_row_weights(const LayerWeights& weights, const ModelConfig& config, const JointLayout& layout,
                                 const Eigen::MatrixXd& gram, double key_scale);

// β that makes the key and value blocks of L·W_J·S equally heavy (‖·‖_F), the centre of the
// per-layer search.
double balanced_key_scale(const MatrixD& joint, const JointLayout& layout, const RowWeights& unit_weights,
                          const Eigen::MatrixXd& gram);

}  // namespace ekv
