// RoPElite selection for one layer (docs/method.md §4): per KV head, which RoPE chunks keep their
// rotation, for every r up to r_max, by the greedy search or by a baseline.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ekv/calib/statistics.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/weights.hpp"
#include "ekv/rope/chunk_distance.hpp"

namespace ekv {

enum class SelectMethod { elite, uniform, high, low, norm };
SelectMethod parse_select_method(const std::string& name);
std::string select_method_name(SelectMethod method);
Objective parse_objective(const std::string& name);
std::string objective_name(Objective objective);

struct SelectOptions {
  SelectMethod method = SelectMethod::elite;
  Objective objective = Objective::l1;
  int r_max = 16;
  int pairs_per_seq = 4096;  // L1 pair subsample per sequence (0: all causal pairs)
  std::uint64_t pair_seed = 0;
};

struct LayerSelection {
  int layer = 0;
  std::vector<std::vector<int>> order;                   // [G][r_max] pick order; -1 when not nested
  std::vector<std::vector<std::vector<int>>> sets;       // [G][r-1] the r elite chunks, ascending
  std::vector<std::vector<double>> distance;             // [G][r_max+1] dist of the r-set on calibration X
};

// Distances of one layer's KV heads on the stored inputs X ([K, S, d]) of `stats`.
std::vector<ChunkDistances> layer_chunk_distances(const LayerWeights& weights, const LayerStatistics& stats,
                                                  const ModelConfig& config, int seq_len,
                                                  const SelectOptions& options);

LayerSelection select_layer(const LayerWeights& weights, const LayerStatistics& stats, const ModelConfig& config,
                            int seq_len, const SelectOptions& options);

// The r chunks of a baseline (ascending), per KV head where it matters (norm).
std::vector<int> uniform_chunks(int chunks, int r);

}  // namespace ekv
