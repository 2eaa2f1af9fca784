// rope.h5 (ekv.type "rope", format version 1): elite chunks per layer and KV head.
//
//   /layers/<l>/order     int32 [G, r_max]         pick order (-1 when the method is not nested)
//   /layers/<l>/elite     int32 [G, r_max, r_max]  row r-1: the r elite chunks ascending, -1 padded
//   /layers/<l>/distance  f64   [G, r_max + 1]     dist of the r-set on the calibration X (r = 0..r_max)
//   /slot_chunks          int32 [S]                only for an engine layout: the chunk of every slot
// Root attributes: method, objective, r_max, pairs_per_seq, pair_seed, layer_begin, layer_end,
// chunks, kv_heads, head_dim, seq_len, sequences (calibration sequences searched on), and, for an
// engine layout only, layout (llama.cpp | transformers; absent: free). In a layout file every
// layer's r_max sets fit the slots (rope/slot_layout), checked on read.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ekv/io/artifact.hpp"
#include "ekv/rope/selection.hpp"
#include "ekv/rope/slot_layout.hpp"

namespace ekv {

struct ModelConfig;

inline constexpr std::int64_t kRopeFormatVersion = 1;

struct RopeData {
  SelectOptions options;
  int layer_begin = 0, layer_end = 0;
  int chunks = 0, kv_heads = 0, head_dim = 0;
  int seq_len = 0, sequences = 0;
  RopeLayout layout = RopeLayout::free;
  std::vector<int> slot_chunks;  // an engine layout's slots (empty for free)
  std::vector<LayerSelection> layers;
};

void write_rope(const RopeData& data, const std::filesystem::path& path, const std::string& model_fingerprint,
                const std::vector<ArtifactInput>& inputs);
RopeData read_rope(const std::filesystem::path& path, Provenance* provenance = nullptr);
// rope.h5 made from the model with this fingerprint and shape (`config`); another model's is
// refused, naming the file and `model_name`.
// The fingerprint says which model; the shapes must say so too (an edited file keeps it).
void require_rope_fits(const RopeData& data, const ModelConfig& config, const std::string& file,
                       const std::string& model_name);
RopeData read_rope_of(const std::filesystem::path& path, const ModelConfig& config,
                      const std::string& model_fingerprint, const std::string& model_name);
// The r elite chunks (ascending) of every KV head of `layer` (its index in the model); G empty sets
// for r = 0. Refuses a layer or r the file does not hold.
std::vector<std::vector<int>> elite_sets(const RopeData& rope, int layer, int r);

// Joins layer shards (ekv-select-rope --layers) of one model, method and objective into one
// file; the shards' layer ranges must tile a contiguous range without overlap.
void merge_rope(const std::vector<std::filesystem::path>& shards, const std::filesystem::path& output);

}  // namespace ekv
