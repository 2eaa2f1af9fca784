#include "ekv/tools/jlrd.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <queue>
#include <sstream>

#include "ekv/calib/calib_file.hpp"
#include "ekv/core/atomic_output.hpp"
#include "ekv/core/cli.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/layer_range.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/io/artifact_matrix.hpp"
#include "ekv/lrd/attention_error.hpp"
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

std::vector<float> as_floats(const MatrixD& m) {
  std::vector<float> out(std::size_t(m.size()));
  for (Eigen::Index i = 0; i < m.size(); ++i) out[std::size_t(i)] = float(m.data()[i]);
  return out;
}

struct SweepRow {
  int layer, rank;
  double cache_ratio, weight_error, data_error, logit_error, output_error, block_error;
};

constexpr const char* kSweepColumns =
    "layer,rank,cache_ratio,weight_error,data_error,logit_error,output_error,block_error";

LayerSamples samples_of(const LayerStatistics& stats, const CalibData& header) {
  if (stats.gram.size() == 0) return {};
  return {&stats.gram, stats.x.empty() ? nullptr : &stats.x, stats.kept_sequences, header.seq_len};
}

// What the output-aware options chose in one layer: the chunk maps (folded into B_k already,
// kept for the record), β, the refitted W_o and its errors.
void write_layer_refinement(ArtifactWriter& writer, int layer, const RefinedLayer& refined, const OutputRefit* refit) {
  const std::string a = layer_dataset(layer, "a");
  writer.set_attribute(a, "chunk_map", std::string(chunk_map_kind_name(refined.map_kind)));
  writer.set_attribute(a, "floor_unrotated", refined.floor_unrotated);
  writer.set_attribute(a, "floor_mapped", refined.floor_mapped);
  writer.set_attribute(a, "key_scale", refined.key_scale);
  if (refined.map_kind != ChunkMapKind::none) {
    std::vector<double> maps;
    for (const ChunkMap& map : refined.maps) maps.insert(maps.end(), {double(map.head), double(map.chunk), map.m[0], map.m[1], map.m[2], map.m[3]});
    writer.write(layer_dataset(layer, "chunk_maps"), std::span<const double>(maps), {refined.maps.size(), 6});
    writer.set_attribute(layer_dataset(layer, "chunk_maps"), "columns", std::string("head,chunk,m00,m01,m10,m11"));
  }
  if (refit && std::isfinite(refit->lambda)) {
    writer.write(layer_dataset(layer, "o_proj"), std::span<const float>(refit->wo.data(), std::size_t(refit->wo.size())),
                 {std::uint64_t(refit->wo.rows()), std::uint64_t(refit->wo.cols())});
    writer.set_attribute(layer_dataset(layer, "o_proj"), "ridge", refit->lambda);
    writer.set_attribute(layer_dataset(layer, "o_proj"), "heldout_before", refit->heldout_before);
    writer.set_attribute(layer_dataset(layer, "o_proj"), "heldout_after", refit->heldout_after);
    writer.set_attribute(layer_dataset(layer, "o_proj"), "fit_after", refit->fit_after);
  }
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

// Per-layer ranks for a total of `dims` latent dims. Each dim costs one cached element per
// token and lowers its layer's squared relative data error by its gain
// (LayerFactors::relative_data_gains), so the greedy takes the largest next gain of any layer.
// Ranks are prefixes; for whitened SVD the gains fall within a layer and the greedy is optimal.
std::vector<int> allocate_budget(const std::vector<const LayerFactors*>& factors, long long dims) {
  const std::size_t layers = factors.size();
  using Gain = std::pair<double, std::size_t>;
  std::priority_queue<Gain> next;
  std::vector<Eigen::VectorXd> gains(layers);
  std::vector<int> chosen(layers, 0);
  for (std::size_t l = 0; l < layers; ++l) {
    const auto& f = *factors[l];
    gains[l] = f.relative_data_gains();
    if (f.max_rank() > 0) next.push({gains[l][0], l});
  }
  for (long long spent = 0; spent < dims && !next.empty(); ++spent) {
    const std::size_t l = next.top().second;
    next.pop();
    const int rank = ++chosen[l];
    if (rank < factors[l]->max_rank()) next.push({gains[l][rank], l});
  }
  return chosen;
}

// The stored factors of one layer: A, B_k, B_v, the (head, dim) of each B_k row, σ, α and λ.
void write_layer_factors(ArtifactWriter& writer, int layer, const LayerFactors& f, const LowRank& low) {
  const auto rank = std::uint64_t(low.a.rows()), hidden = std::uint64_t(low.a.cols());
  const int keys = f.layout().key_rows;
  const auto values = std::uint64_t(low.b.rows() - keys);
  writer.write(layer_dataset(layer, "a"), std::span<const float>(as_floats(low.a)), {rank, hidden});
  writer.write(layer_dataset(layer, "b_k"), std::span<const float>(as_floats(low.b.topRows(keys))),
               {std::uint64_t(keys), rank});
  writer.write(layer_dataset(layer, "b_v"), std::span<const float>(as_floats(low.b.bottomRows(Eigen::Index(values)))),
               {values, rank});
  std::vector<std::int32_t> key_dims;
  for (int k = 0; k < keys; ++k) {
    key_dims.push_back(f.layout().rows[std::size_t(k)].head);
    key_dims.push_back(f.layout().rows[std::size_t(k)].dim);
  }
  writer.write(layer_dataset(layer, "key_dims"), std::span<const std::int32_t>(key_dims), {std::uint64_t(keys), 2});
  const Eigen::VectorXd sigma = f.singular_values();
  writer.write(layer_dataset(layer, "sigma"), std::span<const double>(sigma.data(), std::size_t(sigma.size())),
               {std::uint64_t(sigma.size())});
  writer.set_attribute(layer_dataset(layer, "a"), "alpha", f.alpha());
  writer.set_attribute(layer_dataset(layer, "a"), "lambda", f.lambda());
}

void write_sweep_csv(const std::vector<SweepRow>& table, const AtomicOutput& output, const fs::path& path) {
  fs::create_directories(fs::path(output.temp_path()).parent_path());
  std::ofstream csv(output.temp_path());
  csv << kSweepColumns << '\n';
  for (const auto& row : table)
    csv << row.layer << ',' << row.rank << ',' << row.cache_ratio << ',' << row.weight_error << ','
        << row.data_error << ',' << row.logit_error << ',' << row.output_error << ',' << row.block_error << '\n';
  EKV_CHECK(csv.good(), path.string(), ": write failed");
}
}  // namespace

void run_jlrd(const JlrdOptions& options) {
  options.check();
  set_compute_threads(options.threads);
  const auto model = ModelSource::open(options.model);
  require_original_attention(*model, "ekv-jlrd");
  const ModelConfig& c = model->config();
  const RopeData rope = read_rope_of(options.rope, model->fingerprint(), options.model);
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
  const auto [begin, end] = parse_layer_range(options.layers, lowest, highest, "the rope and calibration files");
  EKV_CHECK(!options.refit_output || header.keep_seqs > options.refit_heldout, options.calib, ": keep_seqs: ",
            header.keep_seqs, " stored sequences; --refit-output needs more than --refit-heldout (",
            options.refit_heldout, "): calibrate with a larger --keep-seqs (32 in the pipeline)");
  const int G = c.kv_heads, dh = c.head_dim, full = 2 * G * dh;
  LrdOptions lrd{options.mode == "joint", options.svd == "whitened", options.balance_kv,
                 options.precision == "f32" ? SvdPrecision::f32 : SvdPrecision::f64};
  lrd.drop_keys = options.mode == "values";
  EKV_CHECK(lrd.joint || options.budget <= 0, "--budget needs --mode joint (ranks are prefixes of one SVD)");

  // One decomposition per layer; every rank of the sweep is cut from it. The output-aware
  // options (chunk maps, attention weights) are chosen at the rank that will be stored.
  const int layers = end - begin;
  const RopeTable rope_table(rope_frequencies(c), std::max(header.seq_len, 1));
  RefineOptions refine{parse_chunk_map_kind(options.chunk_map == "auto" ? "none" : options.chunk_map),
                       options.chunk_map == "auto", options.weighting == "attention", options.attention_seqs};
  const double target_rank = !options.ranks.empty()          ? double(options.ranks[0])
                             : !options.cache_ratios.empty() ? options.cache_ratios[0] * full - 2.0 * options.r * G
                                                             : options.budget * full - 2.0 * options.r * G;
  EKV_CHECK(!options.ranks.empty() || target_rank >= 0, options.budget > 0 ? "--budget " : "--cache-ratio ",
            options.budget > 0 ? options.budget : options.cache_ratios[0], " is below what r = ", options.r,
            " alone caches (", 2.0 * options.r * G / full, " of the full cache)");
  const bool with_samples = calib && options.attention_seqs > 0;
  std::vector<RefinedLayer> refined;
  std::vector<std::vector<std::vector<int>>> layer_elites;  // per layer: the elite chunks of each KV head
  std::vector<LayerStatistics> stats;
  Progress progress("jlrd decompose", std::uint64_t(layers), "layers");
  for (int l = begin; l < end; ++l) {
    const LayerWeights weights = model->layer(l);
    std::vector<std::vector<int>> elite = elite_sets(rope, l, options.r);
    stats.push_back(calib ? read_calib_layer(*calib, header, l, with_samples) : LayerStatistics());
    try {
      refined.push_back(refine_layer(weights, c, elite, samples_of(stats.back(), header), rope_table, lrd, refine,
                                     int(std::lround(target_rank))));
    } catch (const Error& e) {  // name the file and the layer whose statistics could not be used
      fail(cat(calib ? options.calib : options.model, ": layer ", l, ": ", e.what()));
    }
    layer_elites.push_back(std::move(elite));
    progress.advance();
  }
  progress.finish();
  std::vector<const LayerFactors*> factors;
  for (const auto& layer : refined) factors.push_back(layer.factors.get());

  // Ranks to sweep per layer (uniform), or the budgeted per-layer ranks.
  std::vector<std::vector<int>> sweep(static_cast<std::size_t>(layers));
  auto clamp_rank = [&](int l, double wanted) {
    return std::clamp(int(std::lround(wanted)), 0, factors[std::size_t(l)]->max_rank());
  };
  for (int l = 0; l < layers; ++l) {
    for (int rank : options.ranks) {
      EKV_CHECK(rank <= factors[std::size_t(l)]->max_rank(), "--rank ", rank, ": layer ", begin + l,
                " has at most ", factors[std::size_t(l)]->max_rank(), " latent dims (its stacked non-elite key and value rows)");
      sweep[std::size_t(l)].push_back(rank);
    }
    for (double f : options.cache_ratios) {
      const double d_kv = f * full - 2.0 * options.r * G;
      EKV_CHECK(d_kv >= 0, "--cache-ratio ", f, ": r = ", options.r, " alone caches ", 2.0 * options.r * G / full,
                " of the full cache");
      sweep[std::size_t(l)].push_back(clamp_rank(l, d_kv));
    }
  }
  if (options.budget > 0) {
    const double total = target_rank * layers;
    const std::vector<int> chosen = allocate_budget(factors, std::llround(total));
    for (int l = 0; l < layers; ++l) sweep[std::size_t(l)].push_back(chosen[std::size_t(l)]);
  }

  // Sweep table, and the factors of the first (chosen) rank of every layer.
  const bool with_attention = with_samples;
  const int attention_seqs = with_attention ? std::min(options.attention_seqs, header.keep_seqs) : 0;
  std::vector<SweepRow> table, stored_rows;
  const fs::path csv_path = fs::path(options.output).replace_extension(".csv");
  AtomicOutput csv_output(csv_path);
  std::vector<ArtifactInput> inputs{{options.model, model->format(), "fingerprint:" + model->fingerprint()},
                                    file_input(options.rope, "rope")};
  if (calib) inputs.push_back(file_input(options.calib, "calib"));
  ArtifactWriter writer(options.output, "jlrd", kJlrdFormatVersion, model->fingerprint(), inputs);
  std::vector<std::int32_t> stored_ranks;
  double cached = 0;
  RefineSummary summary;
  std::unique_ptr<SequentialStreams> streams;
  if (options.sequential) {
    EKV_CHECK(begin == 0, "--sequential runs the stored sequences from the embedding: it needs layers from 0 (not ",
              begin, ":", end, ")");
    streams = std::make_unique<SequentialStreams>(*model, header);
  }
  Progress sweeping("jlrd sweep", std::uint64_t(layers), "layers");
  for (int l = 0; l < layers; ++l) {
    const RefinedLayer& layer = refined[std::size_t(l)];
    const auto& f = *layer.factors;
    const auto& elite = layer_elites[std::size_t(l)];
    const LayerSamples samples = samples_of(stats[std::size_t(l)], header);
    const LayerWeights weights = with_attention ? model->layer(begin + l) : LayerWeights();
    for (std::size_t i = 0; i < sweep[std::size_t(l)].size(); ++i) {
      const int rank = sweep[std::size_t(l)][i];
      const LowRank low = f.factor(rank);
      SweepRow row{begin + l, rank, cache_ratio(options.r, G, dh, rank), f.weight_error(rank), f.data_error(rank), NAN, NAN, NAN};
      std::optional<OutputRefit> refit;
      if (i == 0 && options.refit_output)
        refit = refit_layer_output(weights, c, elite, f.layout(), low, samples, rope_table, options.refit_heldout,
                                   streams.get(), options.compensate);
      if (with_attention) {
        const AttentionError e = attention_error(weights, c, elite, f.layout(), low, stats[std::size_t(l)].x, 0,
                                                 attention_seqs, header.seq_len, rope_table, refit ? &refit->wo : nullptr);
        row.logit_error = e.logits;
        row.output_error = e.output;
        row.block_error = e.block;
      }
      table.push_back(row);
      if (i == 0) {
        write_layer_factors(writer, begin + l, f, low);
        write_layer_refinement(writer, begin + l, layer, refit ? &*refit : nullptr);
        summary.add(layer, refit ? &*refit : nullptr);
        stored_ranks.push_back(rank);
        stored_rows.push_back(row);
        cached += 2.0 * options.r * G + rank;
      }
    }
    sweeping.advance();
  }
  sweeping.finish();
  std::vector<double> flat;
  for (const auto& row : table)
    flat.insert(flat.end(), {double(row.layer), double(row.rank), row.cache_ratio, row.weight_error, row.data_error,
                             row.logit_error, row.output_error, row.block_error});
  writer.write("/sweep", std::span<const double>(flat), {table.size(), 8});
  writer.set_attribute("/sweep", "columns", std::string(kSweepColumns));
  writer.write("/ranks", std::span<const std::int32_t>(stored_ranks), {stored_ranks.size()});
  const double model_ratio = cached / (double(full) * layers);
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"mode", options.mode}, {"svd", options.svd}, {"balance_kv", options.balance_kv ? "true" : "false"},
           {"allocation", options.budget > 0 ? "budget" : "uniform"},
           {"precision", options.precision}, {"chunk_map", options.chunk_map}, {"weighting", options.weighting},
           {"refit_output", options.refit_output ? "true" : "false"}, {"sequential", options.sequential ? "true" : "false"},
           {"compensate", options.compensate ? "true" : "false"}})
    writer.set_attribute("/", name, value);
  writer.set_attribute("/", "r", std::int64_t(options.r));
  writer.set_attribute("/", "layer_begin", std::int64_t(begin));
  writer.set_attribute("/", "layer_end", std::int64_t(end));
  writer.set_attribute("/", "cache_ratio", model_ratio);
  write_sweep_csv(table, csv_output, csv_path);
  writer.commit();
  csv_output.commit();
  // Summary over the stored (first) rank of each layer.
  double data_sum = 0, output_sum = 0, block_sum = 0;
  for (const SweepRow& row : stored_rows) {
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
