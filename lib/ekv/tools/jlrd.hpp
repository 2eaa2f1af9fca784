// ekv-jlrd: joint (or separate) low-rank factorization of the non-elite keys and the values,
// with rank sweeps and cache accounting (docs/method.md §5-6).
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
  std::string mode = "joint";  // joint | separate | values
  std::string svd = "weight";  // weight | whitened
  bool balance_kv = false;
  std::vector<int> ranks;              // d_kv per layer; the first is stored, all are swept
  std::vector<double> cache_ratios;    // or target cache ratios (uniform d_kv)
  double budget = 0;                   // or a whole-model cache ratio with per-layer ranks
  std::string layers;
  std::string precision = "f64";  // of the SVD: f64 | f32
  int attention_seqs = 2;  // stored calibration sequences used for the attention errors and choices
  std::string chunk_map = "none";  // none | scalar | matrix | auto: non-elite chunk maps
  std::string weighting = "none";  // none | attention: attention-aware row weights
  bool refit_output = false;       // ridge refit of W_o on the stored sequences
  int refit_heldout = 2;           // stored sequences that choose the refit's ridge
  bool sequential = false;         // refit on the inputs of the already-compressed layers below
  bool compensate = false;         // the refit also closes the residual-stream gap left below
  bool low_memory = false;         // --budget: decompose each layer again instead of keeping it
  int threads = 0;
  std::string output;

  void register_with(CLI::App& app);
  void check() const;
};

void run_jlrd(const JlrdOptions& options);

}  // namespace ekv
