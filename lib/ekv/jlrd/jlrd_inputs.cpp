#include "ekv/jlrd/jlrd_inputs.hpp"

#include <algorithm>
#include <tuple>
#include <utility>

#include "ekv/core/available_memory.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/layer_range.hpp"

namespace ekv {

bool fits_in_memory(const DecomposedLayer& layer, int layers) {
  const auto& f = *layer.refined.factors;
  const double rows = double(f.joint().rows()), cols = double(f.joint().cols());
  const double bytes = 8.0 * (double(layer.stats.gram.size()) + 2 * rows * cols + cols * cols + rows * rows) +
                       4.0 * double(layer.stats.x.size());
  const auto available = available_memory_bytes();
  return !available || bytes * layers <= 0.25 * double(*available);
}

namespace {
std::unique_ptr<ModelSource> open_original(const std::string& path) {
  auto model = ModelSource::open(path);
  require_original_attention(*model, "ekv-jlrd");
  return model;
}
}  // namespace

JlrdInputs::JlrdInputs(const JlrdSettings& settings)
    : settings_(settings),
      model_(open_original(settings.model)),
      rope_(read_rope_of(settings.rope, model_->config(), model_->fingerprint(), settings.model)) {
  EKV_CHECK(settings.r <= rope_.options.r_max, "--r ", settings.r, ": ", settings.rope, " holds r up to ",
            rope_.options.r_max);
  int lowest = rope_.layer_begin, highest = rope_.layer_end;
  if (!settings.calib.empty()) {
    calib_ = std::make_unique<ArtifactReader>(settings.calib, "calib", kCalibFormatVersion);
    calib_->require_model(model_->fingerprint(), settings.model);
    header_ = read_calib_header(*calib_);
    lowest = std::max(lowest, header_.layer_begin);
    highest = std::min(highest, header_.layer_end);
  }
  std::tie(begin_, end_) = parse_layer_range(settings.layers, lowest, highest, "the rope and calibration files");
  if (settings.refit_stream)
    EKV_CHECK(header_.num_seqs > settings.refit_heldout, settings.calib, ": num_seqs: ", header_.num_seqs,
              " sequences; --refit-stream needs more than --refit-heldout (", settings.refit_heldout, ")");
  else
    EKV_CHECK(!settings.refit_output || header_.keep_seqs > settings.refit_heldout, settings.calib, ": keep_seqs: ",
              header_.keep_seqs, " stored sequences; --refit-output needs more than --refit-heldout (",
              settings.refit_heldout, "): calibrate with a larger --keep-seqs (32 in the pipeline)");
  rope_table_.emplace(rope_frequencies(model_->config()), std::max(header_.seq_len, 1));
}

int JlrdInputs::attention_seqs() const {
  return with_samples() ? std::min(settings_.attention_seqs, header_.keep_seqs) : 0;
}

LayerSamples JlrdInputs::samples(const LayerStatistics& stats) const {
  if (stats.gram.size() == 0) return {};
  return {&stats.gram, stats.x.empty() ? nullptr : &stats.x, stats.kept_sequences, header_.seq_len};
}

std::vector<ArtifactInput> JlrdInputs::provenance() const {
  std::vector<ArtifactInput> inputs{{settings_.model, model_->format(), "fingerprint:" + model_->fingerprint()},
                                    file_input(settings_.rope, "rope")};
  if (calib_) inputs.push_back(file_input(settings_.calib, "calib"));
  return inputs;
}

DecomposedLayer JlrdInputs::decompose(int layer, const LayerWeights& weights, int choice_rank) const {
  DecomposedLayer out{elite_sets(rope_, layer, settings_.r),
                      calib_ ? read_calib_layer(*calib_, header_, layer, with_samples()) : LayerStatistics(), {}};
  try {
    out.refined = refine_layer(weights, config(), out.elite, samples(out.stats), *rope_table_, settings_.lrd(),
                               settings_.refine(), choice_rank);
  } catch (const Error& e) {  // name the file and the layer whose statistics could not be used
    fail(cat(calib_ ? settings_.calib : settings_.model, ": layer ", layer, ": ", e.what()));
  }
  return out;
}

}  // namespace ekv
