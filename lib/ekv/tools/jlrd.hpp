// ekv-jlrd: joint (or separate) low-rank factorization of the non-elite keys and the values,
// with rank sweeps and cache accounting (METHOD.md §5-6).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace ekv {

struct JlrdOptions {
  std::string model;
  std::string rope;
  std::string calib;  // needed for whitened SVD, balancing, data and attention errors, budget
  int r = 4;
  std::string mode = "joint";  // joint | separate
  std::string svd = "weight";  // weight | whitened
  bool balance_kv = false;
  std::vector<int> ranks;              // d_kv per layer; the first is stored, all are swept
  std::vector<double> cache_ratios;    // or target cache ratios (uniform d_kv)
  double budget = 0;                   // or a whole-model cache ratio with per-layer ranks
  std::string layers;
  std::string precision = "f64";  // of the SVD: f64 | f32
  int attention_seqs = 2;  // stored calibration sequences used for the attention errors
  int threads = 0;
  std::string output;

  void register_with(CLI::App& app);
  void check() const;
};

void run_jlrd(const JlrdOptions& options);

}  // namespace ekv
