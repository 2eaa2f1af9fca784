// calib.h5 (ekv.type "calib", format version 1): what ekv-calibrate measured.
//
//   /tokens                   int32 [N, S]   the sampled sequences
//   /offsets                  int64 [N]      where each starts in the token stream
//   /kept_sequences           int64 [K]      which sequences of /tokens the stored x belong to
//   /layers/<l>/gram          f64 [d, d]     Σ x xᵀ (attribute count: tokens)
//   /layers/<l>/q_norm_sum    f64 [H, n_c]   Σ ‖q_c‖ per query head and chunk
//   /layers/<l>/k_norm_sum    f64 [G, n_c]   Σ ‖k_c‖ per KV head and chunk
//   /layers/<l>/x             f32 [K, S, d]  attention inputs of the first K sequences
//                             (uint16 bf16 bit patterns with store_dtype = bf16)
// Root attributes: seq_len, num_seqs, keep_seqs, seeds (JSON list), layer_begin, layer_end,
// store_dtype, hidden, heads, kv_heads, head_dim, sources (JSON list of token sources), and
// shard ("I/N") on one slice of a sharded run (ekv-calibrate --shard; absent when whole).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ekv/calib/statistics.hpp"
#include "ekv/io/artifact.hpp"

namespace ekv {

inline constexpr std::int64_t kCalibFormatVersion = 1;

struct CalibData {
  int hidden = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int seq_len = 0;
  int num_seqs = 0;
  int keep_seqs = 0;
  std::vector<std::uint64_t> seeds;  // one per merged shard
  int shard_index = 0, shard_count = 1;  // --shard I/N: this file holds slice I of N of one sample
  int layer_begin = 0, layer_end = 0;
  std::string store_dtype = "f32";   // f32 | bf16
  std::vector<std::string> sources;
  std::vector<std::int32_t> tokens;   // [N, S]
  std::vector<std::int64_t> offsets;  // [N]
  std::vector<std::int64_t> kept;     // [K] indices into tokens of the stored x
  std::vector<LayerStatistics> layers;  // layer_begin .. layer_end-1
};

// Writes calib.h5 one layer at a time, so a run holds one layer's statistics in memory.
// Nothing is visible at the path until finish() commits it.
class CalibWriter {
 public:
  CalibWriter(const std::filesystem::path& path, const std::string& model_fingerprint,
              const std::vector<ArtifactInput>& inputs);
  void write_layer(const LayerStatistics& stats, const std::string& store_dtype, int seq_len);
  // Writes tokens, offsets, kept sequences and the root attributes of `header` (its layers
  // are not written again), then commits.
  void finish(const CalibData& header);

 private:
  ArtifactWriter writer_;
};

void write_calib(const CalibData& data, const std::filesystem::path& path, const std::string& model_fingerprint,
                 const std::vector<ArtifactInput>& inputs);

// Reads and validates every dataset against the root attributes. `with_x` = false skips the
// stored inputs (they are the largest part).
CalibData read_calib(const std::filesystem::path& path, bool with_x = true, Provenance* provenance = nullptr);
// The root attributes, tokens, offsets and kept indices, without any layer.
CalibData read_calib_header(const ArtifactReader& reader);
LayerStatistics read_calib_layer(const ArtifactReader& reader, const CalibData& header, int layer, bool with_x);

// "I/N" with 0 <= I < N (ekv-calibrate --shard); false when malformed.
bool parse_shard(const std::string& text, int& index, int& count);

// Sums the shards' statistics and concatenates their samples into `output`, one layer at a
// time; refuses shards of another model, sequence length, layer range, shape or storage
// dtype, naming the file. Slices of one --shard run must come all together and in order; the
// result is then the unsharded run's file (up to the order of floating-point sums). Returns
// the merged header (without layers).
CalibData merge_calib(const std::vector<std::filesystem::path>& shards, const std::filesystem::path& output);

}  // namespace ekv
