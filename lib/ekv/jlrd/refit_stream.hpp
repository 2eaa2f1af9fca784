// The W_o refit on every calibration sequence (docs/method.md §9; issue 31). The stored
// sequences of calib.h5 are few (32 × 512 tokens: their inputs x are the file's largest part),
// and the refit is the one choice that keeps gaining from data. Its normal equations are sums,
// so they need no stored inputs: every sequence of calib.h5 runs from its tokens through the
// original model, a few sequences at a time, and at each layer the original and the compressed
// head outputs are added to that layer's moments and dropped; once a layer has seen the last
// sequence, its refit is solved from them (with the W_o of that pass) and the moments freed.
//
// Memory: per layer four matrices (UᵀU and RᵀU, fit and held-out: 2 (H·d_h)² + 2 d·H·d_h
// doubles) and one chunk's activations, the same for 64 sequences or 6400. At the 7B shape
// (H·d_h = d = 4096) that is 512 MiB per layer: ekv-jlrd streams the layers in groups that fit
// a quarter of the free memory, one pass over the sequences per group.
#pragma once

#include <vector>

#include "ekv/calib/calib_file.hpp"
#include "ekv/lrd/factorization.hpp"
#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/refine/output_refit.hpp"

namespace ekv {

// One layer's compressed attention, as the refit sees it.
struct StreamedLayer {
  int layer = 0;
  std::vector<std::vector<int>> elite;
  JointLayout layout;
  LowRank factor;
};

// Bytes of moments one layer of `config` holds.
double refit_moment_bytes(const ModelConfig& config);

// The W_o refit of each of `layers` (ascending, any subset of the model's), fitted on every
// sequence of calib.h5's /tokens; the last `heldout` sequences are summed apart to choose the
// ridge. `sequences_per_pass` bounds the activations held at once.
std::vector<OutputRefit> stream_output_refits(const ModelSource& model, const CalibData& header,
                                              const std::vector<StreamedLayer>& layers, int heldout,
                                              const RopeTable& rope, int sequences_per_pass = 8);

}  // namespace ekv
