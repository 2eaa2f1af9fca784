// ekv-select-rope: RoPElite greedy search (and its baselines) over calibration inputs, and
// `evaluate`: the held-out logit distance of rope.h5 files side by side.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace ekv {

struct SelectRopeOptions {
  std::string model;
  std::string calib;
  std::string method = "elite";
  std::string objective = "l1";
  int r_max = 16;
  int pairs_per_seq = 4096;
  std::uint64_t pair_seed = 0;
  std::string layers;
  // An engine layout (rope/slot_layout): the search keeps every layer within slots an MLA engine
  // holds; --slots (default r_max · G, the free layout's cache) of them, --slot-chunks to fix them.
  std::string layout = "free";
  int slots = 0;
  std::vector<int> slot_chunks;
  int threads = 0;
  std::string output;

  void register_with(CLI::App& app);
  void check() const;
};

struct EvaluateRopeOptions {
  std::string model;
  std::string calib;  // held-out inputs (ekv-calibrate on evaluation text)
  std::vector<std::string> ropes;
  std::vector<int> ranks = {2, 4, 8, 16};
  int pairs_per_seq = 4096;
  int threads = 0;

  void register_with(CLI::App& command);
  void check() const;
};

struct MergeRopeOptions {
  std::vector<std::string> shards;
  std::string output;
  void register_with(CLI::App& command);
};

void run_merge_rope(const MergeRopeOptions& options);

// Returns the seconds spent searching (layer weights loaded and X read excluded).
double run_select_rope(const SelectRopeOptions& options);
// Writes a markdown table (one row per rope file, one column per r) of the mean |Δlogit|.
void run_evaluate_rope(const EvaluateRopeOptions& options, std::ostream& out);

}  // namespace ekv
