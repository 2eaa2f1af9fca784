// ekv-calibrate: run the unmodified model on calibration text and store per-layer statistics
// (calib.h5); `merge` joins shards made from different sequences of the same model.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ekv {

struct CalibrateOptions {
  std::string model;
  std::vector<std::string> texts;
  std::string tokens;  // safetensors with an I32 "tokens" tensor, instead of texts
  int seq_len = 512;
  int num_seqs = 64;
  std::uint64_t seed = 0;
  std::string shard;   // "I/N": only slice I of the N equal slices of the sampled sequences
  std::string layers;  // "a:b", empty: all
  std::string store_dtype = "f32";
  int keep_seqs = -1;  // -1: min(8, num_seqs)
  int micro_batch = 8;
  int threads = 0;
  std::string output;

  void register_with(CLI::App& app);
  void check() const;
  int kept() const { return keep_seqs < 0 ? std::min(8, num_seqs) : keep_seqs; }
  // (I, N) of --shard I/N; (0, 1) without it. Valid once check() passed.
  std::pair<int, int> shard_position() const;
  // The sequences [first, end) of the whole sample that this run processes (all without --shard).
  std::pair<int, int> slice() const;
};

struct MergeOptions {
  std::vector<std::string> shards;
  std::string output;

  void register_with(CLI::App& command);
  void check() const;
};

// Starts of `num_seqs` windows of `seq_len` tokens in a stream of `stream` tokens, uniform and
// reproducible from the seed on every platform.
std::vector<std::int64_t> sample_offsets(std::int64_t stream, int seq_len, int num_seqs, std::uint64_t seed);

void run_calibrate(const CalibrateOptions& options);
void run_calibrate_merge(const MergeOptions& options);

}  // namespace ekv
