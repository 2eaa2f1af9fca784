#include "ekv/jlrd/jlrd_run.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "ekv/core/available_memory.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/lrd/attention_error.hpp"
#include "ekv/lrd/rank_budget.hpp"

namespace ekv {

namespace fs = std::filesystem;

namespace {

const JlrdSettings& checked(const JlrdSettings& settings) {
  settings.check();
  return settings;
}

fs::path csv_path_of(const std::string& output) { return fs::path(output).replace_extension(".csv"); }

// What the output-aware options chose in one layer, as jlrd.h5 records it.
JlrdLayerChoices choices_of(const RefinedLayer& refined, const OutputRefit* refit) {
  JlrdLayerChoices choices;
  choices.chunk_map = name_of(refined.map_kind);
  choices.floor_unrotated = refined.floor_unrotated;
  choices.floor_mapped = refined.floor_mapped;
  choices.key_scale = refined.key_scale;
  if (refined.map_kind != ChunkMapKind::none)
    for (const ChunkMap& map : refined.maps)
      choices.maps.push_back({double(map.head), double(map.chunk), map.m[0], map.m[1], map.m[2], map.m[3]});
  if (refit && std::isfinite(refit->lambda)) {
    choices.o_proj = &refit->wo;
    choices.ridge = refit->lambda;
    choices.heldout_before = refit->heldout_before;
    choices.heldout_after = refit->heldout_after;
    choices.fit_after = refit->fit_after;
  }
  return choices;
}

void write_sweep_csv(const std::vector<JlrdSweepRow>& table, const AtomicOutput& output) {
  // No create_directories: AtomicOutput has checked the folder exists, and for a bare file name
  // ("jlrd.h5") the parent is "", which create_directories rejects (after every SVD was done).
  std::ofstream csv(output.temp_path());
  csv << kJlrdSweepColumns << '\n';
  for (const auto& row : table)
    csv << row.layer << ',' << row.rank << ',' << row.cache_ratio << ',' << row.weight_error << ','
        << row.data_error << ',' << row.logit_error << ',' << row.output_error << ',' << row.block_error << '\n';
  EKV_CHECK(csv.good(), output.final_path().string(), ": write failed (disk full?): ", std::strerror(errno));
}

}  // namespace

JlrdRun::JlrdRun(const JlrdSettings& settings)
    : settings_(checked(settings)),
      inputs_(settings_),
      plan_(settings_, inputs_.config().kv_heads, inputs_.config().head_dim, inputs_.end() - inputs_.begin()),
      kept_(std::size_t(inputs_.end() - inputs_.begin())),
      streamed_refits_(kept_.size()),
      csv_output_(csv_path_of(settings_.output)),
      writer_(settings_.output, inputs_.model().fingerprint(), inputs_.provenance()) {
  if (settings_.sequential) {
    EKV_CHECK(inputs_.begin() == 0, "--sequential runs the stored sequences from the embedding: it needs layers from "
              "0 (not ", inputs_.begin(), ":", inputs_.end(), ")");
    streams_ = std::make_unique<SequentialStreams>(inputs_.model(), inputs_.calib_header());
  }
  summary_.layer_begin = inputs_.begin();
  summary_.layer_end = inputs_.end();
}

JlrdRun::~JlrdRun() = default;

void JlrdRun::plan_ranks() {
  if (!plan_.budgeted() && !settings_.refit_stream) return;
  std::vector<Eigen::VectorXd> gains;
  std::vector<int> max_ranks;
  std::vector<StreamedLayer> layers_to_fit;
  bool keep = true;
  Progress progress("jlrd decompose", std::uint64_t(layers()), "layers");
  for (int index = 0; index < layers(); ++index) {
    const int l = inputs_.begin() + index;
    DecomposedLayer layer = inputs_.decompose(l, inputs_.model().layer(l), plan_.choice_rank());
    if (plan_.budgeted()) {
      gains.push_back(layer.refined.factors->relative_data_gains());
      max_ranks.push_back(layer.refined.factors->max_rank());
    } else {  // the stored rank is known now: take what the stream needs while the layer is here
      layers_to_fit.push_back(streamed_layer(index, layer));
    }
    if (index == 0) keep = !settings_.low_memory && fits_in_memory(layer, layers());
    if (keep) kept_[std::size_t(index)] = std::move(layer);
    progress.advance();
  }
  progress.finish();
  if (!keep)
    log::info(cat("ekv-jlrd: decomposing each layer again for the sweep (", layers(), " layers would not ",
                  settings_.low_memory ? "be kept: --low-memory" : "fit in a quarter of the free memory", ")"));
  if (plan_.budgeted()) {
    plan_.place_budget(gains, max_ranks);
    // The stored ranks are known only now: take the stream's factors from the kept layers, or
    // decompose each again (--low-memory, or too large to keep).
    for (int index = 0; settings_.refit_stream && index < layers(); ++index) {
      const int l = inputs_.begin() + index;
      const std::optional<DecomposedLayer>& kept = kept_[std::size_t(index)];
      if (kept)
        layers_to_fit.push_back(streamed_layer(index, *kept));
      else
        layers_to_fit.push_back(streamed_layer(index, inputs_.decompose(l, inputs_.model().layer(l), plan_.choice_rank())));
    }
  }
  if (settings_.refit_stream) stream_refits(std::move(layers_to_fit));
}

StreamedLayer JlrdRun::streamed_layer(int index, const DecomposedLayer& layer) const {
  const int l = inputs_.begin() + index;
  const LayerFactors& f = *layer.refined.factors;
  return {l, layer.elite, f.layout(), f.factor(plan_.layer_ranks(index, l, f.max_rank())[0])};
}

void JlrdRun::stream_refits(std::vector<StreamedLayer> layers_to_fit) {
  // Layers in groups whose moments fit a quarter of the free memory: one pass over the sequences each.
  const auto available = available_memory_bytes();
  const double per_layer = refit_moment_bytes(inputs_.config());
  const int group = available ? std::clamp(int(0.25 * double(*available) / per_layer), 1, layers()) : layers();
  log::info(cat("ekv-jlrd: the W_o refit streams all ", inputs_.calib_header().num_seqs, " sequences of ",
                settings_.calib, " (", settings_.refit_heldout, " held out for the ridge), ", layers(), " layers in ",
                (layers() + group - 1) / group, " pass(es)"));
  for (int first = 0; first < layers(); first += group) {
    const std::vector<StreamedLayer> part(layers_to_fit.begin() + first,
                                          layers_to_fit.begin() + std::min(first + group, layers()));
    std::vector<OutputRefit> refits = stream_output_refits(inputs_.model(), inputs_.calib_header(), part,
                                                           settings_.refit_heldout, inputs_.rope_table());
    for (std::size_t i = 0; i < part.size(); ++i) streamed_refits_[std::size_t(first) + i] = std::move(refits[i]);
  }
}

void JlrdRun::sweep_layer(int index) {
  const int l = inputs_.begin() + index;
  const ModelConfig& c = inputs_.config();
  std::optional<DecomposedLayer>& kept = kept_[std::size_t(index)];
  // One load of the layer's weights serves its decomposition (unless kept) and its errors and refit.
  const LayerWeights weights = inputs_.with_samples() || !kept ? inputs_.model().layer(l) : LayerWeights();
  const DecomposedLayer layer = kept ? std::move(*kept) : inputs_.decompose(l, weights, plan_.choice_rank());
  kept.reset();
  const LayerFactors& f = *layer.refined.factors;
  const LayerSamples samples = inputs_.samples(layer.stats);
  const std::vector<int> ranks = plan_.layer_ranks(index, l, f.max_rank());
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const int rank = ranks[i];
    const LowRank low = f.factor(rank);
    JlrdSweepRow row{l,  rank, cache_ratio(settings_.r, c.kv_heads, c.head_dim, rank), f.weight_error(rank),
                     f.data_error(rank), NAN, NAN, NAN};
    std::optional<OutputRefit> refit;
    if (i == 0 && streamed_refits_[std::size_t(index)])
      refit = std::move(streamed_refits_[std::size_t(index)]);
    else if (i == 0 && settings_.refit_output)
      refit = refit_layer_output(weights, c, layer.elite, f.layout(), low, samples, inputs_.rope_table(),
                                 settings_.refit_heldout, streams_.get(), settings_.compensate);
    if (inputs_.with_samples()) {
      const AttentionError e =
          attention_error(weights, c, layer.elite, f.layout(), low, layer.stats.x, 0, inputs_.attention_seqs(),
                          inputs_.calib_header().seq_len, inputs_.rope_table(), refit ? &refit->wo : nullptr);
      row.logit_error = e.logits;
      row.output_error = e.output;
      row.block_error = e.block;
    }
    table_.push_back(row);
    if (i > 0) continue;
    const OutputRefit* stored_refit = refit ? &*refit : nullptr;
    writer_.write_layer(l, f, low, choices_of(layer.refined, stored_refit));
    stored_ranks_.push_back(rank);
    stored_rows_.push_back(row);
    cached_ += double(compressed_cache_elements(settings_.r, c.kv_heads, rank));
    summary_.floor_unrotated += layer.refined.floor_unrotated;
    summary_.floor_mapped += layer.refined.floor_mapped;
    if (stored_refit) {
      ++summary_.refits;
      summary_.refit_fit_error += stored_refit->fit_after;
      summary_.refit_heldout_before += stored_refit->heldout_before;
      summary_.refit_heldout_after += stored_refit->heldout_after;
    }
  }
}

JlrdSummary JlrdRun::finish() {
  const ModelConfig& c = inputs_.config();
  const int n = layers();
  summary_.cache_ratio = cached_ / (double(full_cache_elements(c.kv_heads, c.head_dim)) * n);
  JlrdMethod method;
  method.settings = settings_.recorded();
  method.r = settings_.r;
  method.layer_begin = inputs_.begin();
  method.layer_end = inputs_.end();
  method.cache_ratio = summary_.cache_ratio;
  write_sweep_csv(table_, csv_output_);
  writer_.finish(table_, stored_ranks_, method);
  csv_output_.commit();
  for (const JlrdSweepRow& row : stored_rows_) {
    summary_.data_error += row.data_error;
    summary_.output_error += row.output_error;
    summary_.block_error += row.block_error;
  }
  for (double* mean : {&summary_.data_error, &summary_.output_error, &summary_.block_error,
                       &summary_.floor_unrotated, &summary_.floor_mapped})
    *mean /= n;
  if (summary_.refits > 0)
    for (double* mean : {&summary_.refit_fit_error, &summary_.refit_heldout_before, &summary_.refit_heldout_after})
      *mean /= summary_.refits;
  return summary_;
}

JlrdSummary run_jlrd_layers(const JlrdSettings& settings) {
  JlrdRun run(settings);
  run.plan_ranks();
  Progress progress(settings.budget > 0 ? "jlrd sweep" : "jlrd", std::uint64_t(run.layers()), "layers");
  for (int index = 0; index < run.layers(); ++index) {
    run.sweep_layer(index);
    progress.advance();
  }
  progress.finish();
  return run.finish();
}

}  // namespace ekv
