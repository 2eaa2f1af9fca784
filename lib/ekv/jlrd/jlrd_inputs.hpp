// The inputs of an ekv-jlrd run, opened and checked against each other once (the model, rope.h5
// at r, calib.h5 when given, the layer range all of them hold), and the decomposition of one
// layer from them: its elite sets, calibration statistics and refined factors.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "ekv/calib/calib_file.hpp"
#include "ekv/io/artifact.hpp"
#include "ekv/jlrd/jlrd_settings.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/refine/layer_refinement.hpp"
#include "ekv/rope/rope_file.hpp"

namespace ekv {

// One layer, decomposed: everything its sweep needs, dropped once the layer is written.
struct DecomposedLayer {
  std::vector<std::vector<int>> elite;  // per KV head
  LayerStatistics stats;
  RefinedLayer refined;
};

// Whether `layers` layers like this one (Gram, stored inputs, joint matrix and its SVD factors)
// fit in a quarter of the memory the system has free.
bool fits_in_memory(const DecomposedLayer& layer, int layers);

class JlrdInputs {
 public:
  explicit JlrdInputs(const JlrdSettings& settings);

  const ModelSource& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config(); }
  bool has_calib() const { return calib_ != nullptr; }
  const CalibData& calib_header() const { return header_; }
  int begin() const { return begin_; }
  int end() const { return end_; }
  const RopeTable& rope_table() const { return *rope_table_; }
  // Stored sequences measure the attention errors (and the output-aware choices).
  bool with_samples() const { return has_calib() && settings_.attention_seqs > 0; }
  int attention_seqs() const;  // those asked for, at most those calib.h5 stores
  LayerSamples samples(const LayerStatistics& stats) const;
  // What jlrd.h5 records it was made from.
  std::vector<ArtifactInput> provenance() const;

  // Layer `layer`'s elite sets, statistics and refined factors; the output-aware choices are
  // made at d_kv = choice_rank. An unusable statistic is an error naming the file and the layer.
  DecomposedLayer decompose(int layer, const LayerWeights& weights, int choice_rank) const;

 private:
  const JlrdSettings& settings_;
  std::unique_ptr<ModelSource> model_;
  RopeData rope_;
  std::unique_ptr<ArtifactReader> calib_;
  CalibData header_;
  int begin_ = 0, end_ = 0;
  std::optional<RopeTable> rope_table_;  // for the stored sequences' length, known once calib.h5 is read
};

}  // namespace ekv
