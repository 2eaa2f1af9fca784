// What ekv-jlrd is asked to do, typed: the tool's options once parsed (every choice an enum), or
// a test's. check() holds the rules between settings; lrd() and refine() are what the layers below
// take; recorded() is how jlrd.h5 writes them down.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ekv/lrd/layer_factors.hpp"
#include "ekv/refine/layer_refinement.hpp"

namespace ekv {

struct JlrdSettings {
  std::string model;
  std::string rope;
  std::string calib;  // needed for whitened SVD, balancing, data and attention errors, budget
  std::string output;
  int r = 4;
  FactorMode mode = FactorMode::joint;
  SvdBasis svd = SvdBasis::weight;
  bool balance_kv = false;
  // Exactly one of: latent sizes d_kv (the first stored, all swept), target cache ratios (uniform
  // d_kv), or one whole-model cache ratio with ranks placed per layer.
  std::vector<int> ranks;
  std::vector<double> cache_ratios;
  double budget = 0;
  std::string layers;  // a:b; empty: every layer the rope (and calibration) files hold
  SvdPrecision precision = SvdPrecision::f64;
  int attention_seqs = 2;  // stored calibration sequences used for the attention errors and choices
  ChunkMapChoice chunk_map = ChunkMapChoice::none;
  RowWeighting weighting = RowWeighting::none;
  bool refit_output = false;  // ridge refit of W_o on the stored sequences
  int refit_heldout = 2;      // sequences (the last) that choose the refit's ridge
  bool refit_stream = false;  // refit on every calib.h5 sequence, streamed from its tokens (jlrd/refit_stream)
  bool sequential = false;    // refit on the inputs of the already-compressed layers below
  bool compensate = false;    // the refit also closes the residual-stream gap left below
  bool low_memory = false;    // --budget: decompose each layer again instead of keeping it

  // Refuses contradictory or incomplete settings, and an output that would overwrite an input.
  void check() const;
  bool measures_on_samples() const;  // an output-aware option is on: stored sequences are needed
  LrdOptions lrd() const;
  RefineOptions refine() const;
  std::vector<std::pair<std::string, std::string>> recorded() const;
};

}  // namespace ekv
