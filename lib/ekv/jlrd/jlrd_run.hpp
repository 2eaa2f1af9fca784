// ekv-jlrd as a library: plan the ranks (for --budget and --refit-stream a first pass over every
// layer: its error curve, its stored factors for the streamed refit), then per layer decompose,
// sweep every rank, refit and write the stored one, then finish jlrd.h5 and its sweep table.
// The tool (tools/jlrd) parses options into JlrdSettings and prints the summary; tests drive the
// same steps.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "ekv/core/atomic_output.hpp"
#include "ekv/jlrd/jlrd_inputs.hpp"
#include "ekv/jlrd/jlrd_settings.hpp"
#include "ekv/jlrd/rank_plan.hpp"
#include "ekv/jlrd/refit_stream.hpp"
#include "ekv/lrd/jlrd_file.hpp"
#include "ekv/refine/sequential_streams.hpp"

namespace ekv {

// Means over the stored rank of every layer (the refit's over the layers it refitted).
struct JlrdSummary {
  int layer_begin = 0, layer_end = 0;
  double cache_ratio = 0;  // of the whole model, at the stored ranks
  double data_error = 0, output_error = 0, block_error = 0;
  double floor_unrotated = 0, floor_mapped = 0;
  int refits = 0;
  double refit_fit_error = 0, refit_heldout_before = 0, refit_heldout_after = 0;
};

class JlrdRun {
 public:
  // Checks the settings and opens the inputs; jlrd.h5 and its CSV are written only by finish().
  explicit JlrdRun(const JlrdSettings& settings);
  ~JlrdRun();

  int layers() const { return inputs_.end() - inputs_.begin(); }
  // --budget or --refit-stream: decomposes every layer, places the budget, streams the refits
  // over calib.h5, and keeps the layers for the sweep when they fit in a quarter of the free
  // memory (else each is decomposed again: the same result).
  void plan_ranks();
  // The index-th layer of the range: decomposed (or taken from plan_ranks), swept, written.
  void sweep_layer(int index);
  JlrdSummary finish();

 private:
  // The stored factors of the index-th layer, as the streamed refit needs them.
  StreamedLayer streamed_layer(int index, const DecomposedLayer& layer) const;
  void stream_refits(std::vector<StreamedLayer> layers_to_fit);

  const JlrdSettings settings_;
  JlrdInputs inputs_;
  RankPlan plan_;
  std::vector<std::optional<DecomposedLayer>> kept_;
  std::vector<std::optional<OutputRefit>> streamed_refits_;
  std::unique_ptr<SequentialStreams> streams_;
  AtomicOutput csv_output_;
  JlrdWriter writer_;
  std::vector<JlrdSweepRow> table_, stored_rows_;
  std::vector<std::int32_t> stored_ranks_;
  double cached_ = 0;
  JlrdSummary summary_;
};

// All of it, with progress: plan_ranks, sweep_layer over the range, finish.
JlrdSummary run_jlrd_layers(const JlrdSettings& settings);

}  // namespace ekv
