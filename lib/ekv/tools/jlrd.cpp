#include "ekv/tools/jlrd.hpp"

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "ekv/calib/calib_file.hpp"
#include "ekv/core/atomic_output.hpp"
#include "ekv/core/available_memory.hpp"
#include "ekv/core/cli.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/layer_range.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/io/artifact_matrix.hpp"
#include "ekv/lrd/attention_error.hpp"
#include "ekv/lrd/jlrd_file.hpp"
#include "ekv/lrd/rank_budget.hpp"
#include "ekv/lrd/layer_factors.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/refine/layer_refinement.hpp"
#include "ekv/refine/sequential_streams.hpp"
#include "ekv/rope/rope_file.hpp"

namespace ekv {

namespace fs = std::filesystem;

void JlrdOptions::register_with(CLI::App& app) {
  app.add_option("--model,-m", model, "The model");
  app.add_option("--rope", rope, "rope.h5 from ekv-select-rope (the elite chunks)");
  app.add_option("--calib,-c", calib, "calib.h5: Gram for whitening/balancing/data error, X for attention errors");
  app.add_option("--r", r, "Elite chunks per KV head (at most the rope file's r_max)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--mode", mode,
                 "joint (J-LRD), separate (S-LRD baseline), or values (non-elite keys dropped, values factored "
                 "alone: with select-rope --method uniform, the KV-Latent-style baseline)")
      ->check(CLI::IsMember({"joint", "separate", "values"}))
      ->capture_default_str();
  app.add_option("--svd", svd, "weight (the paper) or whitened by the calibration Gram")
      ->check(CLI::IsMember({"weight", "whitened"}))
      ->capture_default_str();
  app.add_flag("--balance-kv", balance_kv, "Scale K rows by ‖W_v X‖/‖W_kn X‖ before factoring");
  add_list_option(app, "--rank", ranks, "Latent sizes d_kv, comma-separated; the first is stored, all are swept");
  add_list_option(app, "--cache-ratio", cache_ratios, "Or target cache ratios (uniform d_kv), comma-separated");
  app.add_option("--budget", budget, "Or one whole-model cache ratio with ranks chosen per layer")
      ->check(unit_fraction());
  app.add_option("--layers", layers, "Layer range a:b (b exclusive); default: the rope file's range");
  app.add_option("--precision", precision, "SVD in f64, or f32 (LAPACKE_sgesdd: faster on 7B-size layers)")
      ->check(CLI::IsMember({"f64", "f32"}))
      ->capture_default_str();
  app.add_option("--attention-seqs", attention_seqs, "Stored sequences for the attention errors (0: skip)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--chunk-map", chunk_map,
                 "Non-elite chunks: none (unrotated), scalar or matrix (a fitted map folded into W_k), "
                 "auto (per layer the one with the lowest measured error)")
      ->check(CLI::IsMember({"none", "scalar", "matrix", "auto"}))
      ->capture_default_str();
  app.add_option("--weighting", weighting,
                 "none, or attention: weight key rows by the queries that read them and value rows by W_o "
                 "(needs --svd whitened; the key/value balance is chosen per layer by measured error)")
      ->check(CLI::IsMember({"none", "attention"}))
      ->capture_default_str();
  app.add_flag("--refit-output", refit_output,
               "Refit W_o by ridge regression so the compressed block output matches the original's");
  app.add_flag("--sequential", sequential,
               "With --refit-output: fit each layer on the inputs that the already-compressed layers below produce "
               "(the stored sequences run through both models, GPTQ's order)");
  app.add_flag("--compensate", compensate,
               "With --sequential: the refit target also closes the residual-stream gap the layers below left");
  app.add_option("--refit-heldout", refit_heldout, "Stored sequences held out to choose the refit's ridge")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--low-memory", low_memory,
               "With --budget: keep no decomposed layer between the two passes (each is decomposed again for the "
               "sweep: same result, more time); chosen by itself when the layers would not fit in a quarter of the "
               "free memory");
  add_threads_option(app, threads);
  app.add_option("--output,-o", output, "Output jlrd.h5 (and a .csv sweep table beside it)");
}

void JlrdOptions::check() const {
  EKV_CHECK(!model.empty() && !rope.empty() && !output.empty(), "--model, --rope and --output are required");
  EKV_CHECK(int(!ranks.empty()) + int(!cache_ratios.empty()) + int(budget > 0) == 1,
            "give exactly one of --rank, --cache-ratio, --budget");
  EKV_CHECK(r >= 0, "--r ", r, ": must not be negative");
  EKV_CHECK(!calib.empty() || (svd == "weight" && !balance_kv && budget <= 0),
            "--svd whitened, --balance-kv and --budget need --calib");
  for (int rank : ranks) EKV_CHECK(rank >= 1, "--rank ", rank, ": must be at least 1");
  for (double f : cache_ratios) EKV_CHECK(f > 0 && f <= 1, "--cache-ratio ", f, ": must be in (0, 1]");
  EKV_CHECK(budget >= 0 && budget <= 1, "--budget ", budget, ": must be in (0, 1]");
  const bool samples = chunk_map != "none" || weighting != "none" || refit_output;
  EKV_CHECK(!samples || (!calib.empty() && attention_seqs > 0),
            "--chunk-map, --weighting and --refit-output measure on stored sequences: they need --calib and "
            "--attention-seqs > 0");
  EKV_CHECK(weighting == "none" || (svd == "whitened" && mode == "joint" && !balance_kv),
            "--weighting attention needs --svd whitened and --mode joint, and replaces --balance-kv");
  EKV_CHECK(mode != "values" || (chunk_map == "none" && !balance_kv),
            "--mode values drops the non-elite keys: --chunk-map and --balance-kv have nothing to act on");
  EKV_CHECK(!refit_output || refit_heldout >= 1, "--refit-heldout ", refit_heldout, ": must be at least 1");
  EKV_CHECK(!sequential || refit_output, "--sequential changes what --refit-output fits: give both");
  EKV_CHECK(!compensate || sequential, "--compensate closes the gap of --sequential streams: give both");
  // The sweep table lands beside the output: it must not overwrite an input either.
  for (const auto& path : {std::filesystem::path(output), std::filesystem::path(output).replace_extension(".csv")})
    require_output_path(path, {model, rope, calib});
}

namespace {

LayerSamples samples_of(const LayerStatistics& stats, const CalibData& header) {
  if (stats.gram.size() == 0) return {};
  return {&stats.gram, stats.x.empty() ? nullptr : &stats.x, stats.kept_sequences, header.seq_len};
}

// What the output-aware options chose in one layer, as jlrd.h5 records it.
JlrdLayerChoices choices_of(const RefinedLayer& refined, const OutputRefit* refit) {
  JlrdLayerChoices choices;
  choices.chunk_map = chunk_map_kind_name(refined.map_kind);
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

// Means over layers of what the options measured, for the final line.
struct RefineSummary {
  double floor_unrotated = 0, floor_mapped = 0, refit_fit = 0, refit_before = 0, refit_after = 0;
  int layers = 0, refits = 0;
  void add(const RefinedLayer& layer, const OutputRefit* refit) {
    ++layers;
    floor_unrotated += layer.floor_unrotated;
    floor_mapped += layer.floor_mapped;
    if (refit) {
      ++refits;
      refit_fit += refit->fit_after;
      refit_before += refit->heldout_before;
      refit_after += refit->heldout_after;
    }
  }
};

// Whether every layer's decomposition can stay in memory for the sweep: the first layer's
// large parts (Gram, stored inputs, joint matrix and its SVD factors), times the layers,
// within a quarter of what the system has free.
template <class Decomposed>
bool fits_in_memory(const Decomposed& layer, int layers) {
  const auto& f = *layer.refined.factors;
  const double rows = double(f.joint().rows()), cols = double(f.joint().cols());
  const double bytes = 8.0 * (double(layer.stats.gram.size()) + 2 * rows * cols + cols * cols + rows * rows) +
                       4.0 * double(layer.stats.x.size());
  const auto available = available_memory_bytes();
  return !available || bytes * layers <= 0.25 * double(*available);
}

void write_sweep_csv(const std::vector<JlrdSweepRow>& table, const AtomicOutput& output, const fs::path& path) {
  // No create_directories: AtomicOutput has checked the folder exists, and for a bare file name
  // ("jlrd.h5") the parent is "", which create_directories rejects (after every SVD was done).
  std::ofstream csv(output.temp_path());
  csv << kJlrdSweepColumns << '\n';
  for (const auto& row : table)
    csv << row.layer << ',' << row.rank << ',' << row.cache_ratio << ',' << row.weight_error << ','
        << row.data_error << ',' << row.logit_error << ',' << row.output_error << ',' << row.block_error << '\n';
  EKV_CHECK(csv.good(), path.string(), ": write failed (disk full?): ", std::strerror(errno));
}
}  // namespace

void run_jlrd(const JlrdOptions& options) {
  options.check();
  set_compute_threads(options.threads);
  const auto model = ModelSource::open(options.model);
  require_original_attention(*model, "ekv-jlrd");
  const ModelConfig& c = model->config();
  const RopeData rope = read_rope_of(options.rope, model->config(), model->fingerprint(), options.model);
  EKV_CHECK(options.r <= rope.options.r_max, "--r ", options.r, ": ", options.rope, " holds r up to ",
            rope.options.r_max);
  std::unique_ptr<ArtifactReader> calib;
  CalibData header;
  int lowest = rope.layer_begin, highest = rope.layer_end;
  if (!options.calib.empty()) {
    calib = std::make_unique<ArtifactReader>(options.calib, "calib", kCalibFormatVersion);
    calib->require_model(model->fingerprint(), options.model);
    header = read_calib_header(*calib);
    lowest = std::max(lowest, header.layer_begin);
    highest = std::min(highest, header.layer_end);
  }
  // Named variables, not a structured binding: lambdas below capture them (clang < 16 cannot).
  const std::pair<int, int> range = parse_layer_range(options.layers, lowest, highest, "the rope and calibration files");
  const int begin = range.first, end = range.second;
  EKV_CHECK(!options.refit_output || header.keep_seqs > options.refit_heldout, options.calib, ": keep_seqs: ",
            header.keep_seqs, " stored sequences; --refit-output needs more than --refit-heldout (",
            options.refit_heldout, "): calibrate with a larger --keep-seqs (32 in the pipeline)");
  const int G = c.kv_heads, dh = c.head_dim;
  const double full = double(full_cache_elements(G, dh));
  LrdOptions lrd{options.mode == "joint", options.svd == "whitened", options.balance_kv,
                 options.precision == "f32" ? SvdPrecision::f32 : SvdPrecision::f64};
  lrd.drop_keys = options.mode == "values";
  EKV_CHECK(lrd.joint || options.budget <= 0, "--budget needs --mode joint (ranks are prefixes of one SVD)");

  // One decomposition per layer; every rank of the sweep is cut from it. The output-aware
  // options (chunk maps, attention weights) are chosen at the rank that will be stored.
  const RopeTable rope_table(rope_frequencies(c), std::max(header.seq_len, 1));
  RefineOptions refine{parse_chunk_map_kind(options.chunk_map == "auto" ? "none" : options.chunk_map),
                       options.chunk_map == "auto", options.weighting == "attention", options.attention_seqs};
  const double target_rank = !options.ranks.empty() ? double(options.ranks[0])
                                                    : latent_for_ratio(options.budget > 0 ? options.budget
                                                                                          : options.cache_ratios[0],
                                                                       options.r, G, dh);
  EKV_CHECK(!options.ranks.empty() || target_rank >= 0, options.budget > 0 ? "--budget " : "--cache-ratio ",
            options.budget > 0 ? options.budget : options.cache_ratios[0], " is below what r = ", options.r,
            " alone caches (", cache_ratio(options.r, G, dh, 0), " of the full cache)");
  const bool with_samples = calib && options.attention_seqs > 0;
  const int attention_seqs = with_samples ? std::min(options.attention_seqs, header.keep_seqs) : 0;
  const int layers = end - begin;

  // One layer, decomposed: everything the sweep needs, dropped once the layer is written.
  struct Decomposed {
    std::vector<std::vector<int>> elite;  // per KV head
    LayerStatistics stats;
    RefinedLayer refined;
  };
  auto decompose = [&](int l, const LayerWeights& weights) {
    Decomposed out{elite_sets(rope, l, options.r), calib ? read_calib_layer(*calib, header, l, with_samples)
                                                         : LayerStatistics(), {}};
    try {
      out.refined = refine_layer(weights, c, out.elite, samples_of(out.stats, header), rope_table, lrd, refine,
                                 int(std::lround(target_rank)));
    } catch (const Error& e) {  // name the file and the layer whose statistics could not be used
      fail(cat(calib ? options.calib : options.model, ": layer ", l, ": ", e.what()));
    }
    return out;
  };

  // --budget places ranks across layers from every layer's error curve: a first pass keeps the
  // curves and, when they fit in a quarter of the free memory (estimated from the first layer),
  // the decomposed layers too; otherwise the second pass decomposes each layer again (the same
  // deterministic computation), so memory stays about one layer. Without --budget every layer
  // is decomposed, swept and written in one pass.
  std::vector<int> budget_ranks;
  std::vector<std::optional<Decomposed>> kept(static_cast<std::size_t>(layers));
  if (options.budget > 0) {
    std::vector<Eigen::VectorXd> gains;
    std::vector<int> max_ranks;
    bool keep = true;
    Progress progress("jlrd decompose", std::uint64_t(layers), "layers");
    for (int l = 0; l < layers; ++l) {
      Decomposed layer = decompose(begin + l, model->layer(begin + l));
      gains.push_back(layer.refined.factors->relative_data_gains());
      max_ranks.push_back(layer.refined.factors->max_rank());
      if (l == 0) keep = !options.low_memory && fits_in_memory(layer, layers);
      if (keep) kept[std::size_t(l)] = std::move(layer);
      progress.advance();
    }
    progress.finish();
    if (!keep) log::info(cat("ekv-jlrd: decomposing each layer again for the sweep (", layers, " layers would not ",
                             options.low_memory ? "be kept: --low-memory" : "fit in a quarter of the free memory", ")"));
    budget_ranks = allocate_budget(gains, max_ranks, std::llround(target_rank * layers));
  }

  // Ranks to sweep in one layer (uniform), or its budgeted rank.
  auto sweep_ranks = [&](int l, const LayerFactors& f) {
    std::vector<int> ranks;
    for (int rank : options.ranks) {
      EKV_CHECK(rank <= f.max_rank(), "--rank ", rank, ": layer ", begin + l, " has at most ", f.max_rank(),
                " latent dims (its stacked non-elite key and value rows)");
      ranks.push_back(rank);
    }
    for (double ratio : options.cache_ratios) {
      const double d_kv = latent_for_ratio(ratio, options.r, G, dh);
      EKV_CHECK(d_kv >= 0, "--cache-ratio ", ratio, ": r = ", options.r, " alone caches ",
                cache_ratio(options.r, G, dh, 0), " of the full cache");
      ranks.push_back(std::clamp(int(std::lround(d_kv)), 0, f.max_rank()));
    }
    if (options.budget > 0) ranks.push_back(budget_ranks[std::size_t(l)]);
    return ranks;
  };

  // Sweep table, and the factors of the first (chosen) rank of every layer.
  std::vector<JlrdSweepRow> table, stored_rows;
  const fs::path csv_path = fs::path(options.output).replace_extension(".csv");
  AtomicOutput csv_output(csv_path);
  std::vector<ArtifactInput> inputs{{options.model, model->format(), "fingerprint:" + model->fingerprint()},
                                    file_input(options.rope, "rope")};
  if (calib) inputs.push_back(file_input(options.calib, "calib"));
  JlrdWriter writer(options.output, model->fingerprint(), inputs);
  std::vector<std::int32_t> stored_ranks;
  double cached = 0;
  RefineSummary summary;
  std::unique_ptr<SequentialStreams> streams;
  if (options.sequential) {
    EKV_CHECK(begin == 0, "--sequential runs the stored sequences from the embedding: it needs layers from 0 (not ",
              begin, ":", end, ")");
    streams = std::make_unique<SequentialStreams>(*model, header);
  }
  Progress sweeping(options.budget > 0 ? "jlrd sweep" : "jlrd", std::uint64_t(layers), "layers");
  for (int l = 0; l < layers; ++l) {
    // One load of the layer's weights serves its decomposition (unless kept) and its errors and refit.
    const bool was_kept = kept[std::size_t(l)].has_value();
    const LayerWeights weights = with_samples || !was_kept ? model->layer(begin + l) : LayerWeights();
    Decomposed layer = was_kept ? std::move(*kept[std::size_t(l)]) : decompose(begin + l, weights);
    kept[std::size_t(l)].reset();
    const auto& f = *layer.refined.factors;
    const LayerSamples samples = samples_of(layer.stats, header);
    const std::vector<int> ranks = sweep_ranks(l, f);
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      const int rank = ranks[i];
      const LowRank low = f.factor(rank);
      JlrdSweepRow row{begin + l, rank, cache_ratio(options.r, G, dh, rank), f.weight_error(rank), f.data_error(rank),
                       NAN, NAN, NAN};
      std::optional<OutputRefit> refit;
      if (i == 0 && options.refit_output)
        refit = refit_layer_output(weights, c, layer.elite, f.layout(), low, samples, rope_table, options.refit_heldout,
                                   streams.get(), options.compensate);
      if (with_samples) {
        const AttentionError e = attention_error(weights, c, layer.elite, f.layout(), low, layer.stats.x, 0,
                                                 attention_seqs, header.seq_len, rope_table, refit ? &refit->wo : nullptr);
        row.logit_error = e.logits;
        row.output_error = e.output;
        row.block_error = e.block;
      }
      table.push_back(row);
      if (i == 0) {
        writer.write_layer(begin + l, f, low, choices_of(layer.refined, refit ? &*refit : nullptr));
        summary.add(layer.refined, refit ? &*refit : nullptr);
        stored_ranks.push_back(rank);
        stored_rows.push_back(row);
        cached += double(compressed_cache_elements(options.r, G, rank));
      }
    }
    sweeping.advance();
  }
  sweeping.finish();
  const double model_ratio = cached / (full * layers);
  JlrdMethod method;
  method.settings = {{"mode", options.mode}, {"svd", options.svd}, {"balance_kv", options.balance_kv ? "true" : "false"},
                     {"allocation", options.budget > 0 ? "budget" : "uniform"},
                     {"precision", options.precision}, {"chunk_map", options.chunk_map}, {"weighting", options.weighting},
                     {"refit_output", options.refit_output ? "true" : "false"},
                     {"sequential", options.sequential ? "true" : "false"},
                     {"compensate", options.compensate ? "true" : "false"}};
  method.r = options.r;
  method.layer_begin = begin;
  method.layer_end = end;
  method.cache_ratio = model_ratio;
  write_sweep_csv(table, csv_output, csv_path);
  writer.finish(table, stored_ranks, method);
  csv_output.commit();
  // Summary over the stored (first) rank of each layer.
  double data_sum = 0, output_sum = 0, block_sum = 0;
  for (const JlrdSweepRow& row : stored_rows) {
    data_sum += row.data_error;
    output_sum += row.output_error;
    block_sum += row.block_error;
  }
  std::printf("final: jlrd=%s mode=%s svd=%s balance=%s chunk_map=%s weighting=%s refit_output=%s r=%d layers=%d:%d "
              "cache_ratio=%.4f mean_data_error=%.4f mean_output_error=%.4f mean_block_error=%.4f "
              "mean_floor_unrotated=%.4f mean_floor_mapped=%.4f",
              options.output.c_str(), options.mode.c_str(), options.svd.c_str(), options.balance_kv ? "yes" : "no",
              options.chunk_map.c_str(), options.weighting.c_str(), options.refit_output ? "yes" : "no", options.r,
              begin, end, model_ratio, data_sum / layers, output_sum / layers, block_sum / layers,
              summary.floor_unrotated / layers, summary.floor_mapped / layers);
  if (summary.refits > 0)
    std::printf(" refit_fit_error=%.4f refit_heldout_before=%.4f refit_heldout_after=%.4f", summary.refit_fit / summary.refits,
                summary.refit_before / summary.refits, summary.refit_after / summary.refits);
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace ekv
