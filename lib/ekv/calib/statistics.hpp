// Per-layer calibration statistics, kept as sums and counts so that shards merge exactly
// (docs/method.md §4-5, docs/formats.md): the Gram sum Σ x xᵀ in fp64, per-chunk norm sums of q
// (per query head) and k (per KV head) for the MHA2MLA 2-norm baseline, and the attention
// inputs X of the first few sequences.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "ekv/model/config.hpp"
#include "ekv/model/forward.hpp"

namespace ekv {

struct LayerStatistics {
  int layer = 0;
  Eigen::MatrixXd gram;        // [d, d]   Σ_t x_t x_tᵀ
  Eigen::MatrixXd q_norm_sum;  // [H, n_c] Σ_t ‖q_c(t)‖ (pair (c, c + n_c), before RoPE: rotation keeps norms)
  Eigen::MatrixXd k_norm_sum;  // [G, n_c] Σ_t ‖k_c(t)‖
  std::int64_t count = 0;      // tokens summed
  std::vector<float> x;        // [kept sequences, S, d] attention inputs of the first sequences
  int kept_sequences = 0;

  LayerStatistics() = default;
  LayerStatistics(int layer, const ModelConfig& config);

  // Adds a micro-batch; sequences with index < keep_seqs also store their X.
  void add(const LayerActivations& activations, int keep_seqs);
  // Adds another shard's sums and appends its stored sequences.
  void merge(const LayerStatistics& other);
};

}  // namespace ekv
