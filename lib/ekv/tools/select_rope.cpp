#include "ekv/tools/select_rope.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <numeric>
#include <ostream>

#include "ekv/calib/calib_file.hpp"
#include "ekv/core/cli.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/layer_range.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/rope/rope_file.hpp"

namespace ekv {

namespace fs = std::filesystem;

void SelectRopeOptions::register_with(CLI::App& app) {
  app.add_option("--model,-m", model, "The model the calibration file was made from");
  app.add_option("--calib,-c", calib, "calib.h5 with stored inputs X (ekv-calibrate --keep-seqs > 0)");
  app.add_option("--method", method, "elite (greedy search) or a baseline")
      ->check(CLI::IsMember({"elite", "uniform", "high", "low", "norm"}))
      ->capture_default_str();
  app.add_option("--objective", objective,
                 "l1: mean |Δlogit| over sampled causal pairs (the paper); l2: mean squared, exact Gram form; "
                 "attention: the variance of Δlogit under each query's original attention (half of it is the "
                 "attention KL to second order: shifts of a whole row and pairs nobody attends to cost nothing)")
      ->check(CLI::IsMember({"l1", "l2", "attention"}))
      ->capture_default_str();
  app.add_option("--r-max", r_max, "Largest number of elite chunks per KV head; every r <= r-max is stored")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--pairs-per-seq", pairs_per_seq, "Causal pairs sampled per sequence for l1 (0: all)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--pair-seed", pair_seed, "Seed of the pair sample")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--layers", layers, "Layer range a:b (b exclusive); default: the calibration file's range");
  app.add_option("--layout", layout,
                 "free: any chunks per KV head; llama.cpp / transformers: only selections that the engine's "
                 "latent-attention format holds exactly (one rotary key per slot, slots shared by all layers; "
                 "docs/method.md §11), for r = --r-max")
      ->check(CLI::IsMember({"free", "llama.cpp", "transformers"}))
      ->capture_default_str();
  app.add_option("--slots", slots,
                 "Rotary slots of an engine layout (each caches 2 elements per token and layer); "
                 "0: r-max × KV heads, the cache of the free layout")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  add_list_option(app, "--slot-chunks", slot_chunks,
                  "The slots' chunks, fixed (comma-separated; llama.cpp: a progression c0, c0+Δ, ...); default: "
                  "chosen by the search over all layers");
  add_threads_option(app, threads);
  app.add_option("--output,-o", output, "Output rope.h5 (written atomically)");
}

void SelectRopeOptions::check() const {
  EKV_CHECK(!model.empty() && !calib.empty() && !output.empty(), "--model, --calib and --output are required");
  EKV_CHECK(r_max >= 1, "--r-max ", r_max, ": must be at least 1");
  EKV_CHECK(pairs_per_seq >= 0, "--pairs-per-seq ", pairs_per_seq, ": must not be negative");
  const RopeLayout kind = parse_rope_layout(layout);
  EKV_CHECK(kind == RopeLayout::free || method == "elite", "--layout ", layout, ": only --method elite searches "
            "within an engine's slots");
  EKV_CHECK(kind != RopeLayout::free || (slots == 0 && slot_chunks.empty()), "--slots and --slot-chunks belong "
            "to an engine --layout");
  EKV_CHECK(kind == RopeLayout::free || layers.empty() || !slot_chunks.empty(), "--layout ", layout,
            ": the slots are chosen over all layers; a --layers shard needs them fixed with --slot-chunks");
  EKV_CHECK(slot_chunks.empty() || slots == 0 || slots == int(slot_chunks.size()), "--slots ", slots, " but --slot-chunks lists ",
            slot_chunks.size(), " chunks");
  require_output_path(output, {model, calib});
}

void EvaluateRopeOptions::register_with(CLI::App& command) {
  command.add_option("--model,-m", model, "The model")->required();
  command.add_option("--calib,-c", calib, "calib.h5 made from HELD-OUT text (not the search's calibration text)")
      ->required();
  command.add_option("ropes", ropes, "rope.h5 files to compare")->required();
  // A comma list in one argument: a multi-value option would swallow the positional files.
  add_list_option(command, "--r", ranks, "Numbers of elite chunks to evaluate, comma-separated")->default_str("2,4,8,16");
  command.add_option("--pairs-per-seq", pairs_per_seq, "Causal pairs sampled per sequence (0: all)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  add_threads_option(command, threads);
}

void EvaluateRopeOptions::check() const {
  for (int r : ranks) EKV_CHECK(r >= 0, "--r ", r, ": must not be negative");
}

void MergeRopeOptions::register_with(CLI::App& command) {
  command.add_option("shards", shards, "rope.h5 layer shards of one model, method and objective")
      ->required()
      ->expected(2, -1);
  command.add_option("--output,-o", output, "Merged rope.h5")->required();
}

void run_merge_rope(const MergeRopeOptions& options) {
  merge_rope(std::vector<fs::path>(options.shards.begin(), options.shards.end()), options.output);
  const RopeData merged = read_rope(options.output);
  std::printf("final: rope=%s shards=%zu layers=%d:%d\n", options.output.c_str(), options.shards.size(),
              merged.layer_begin, merged.layer_end);
  std::fflush(stdout);
}

namespace {
// The model and a calibration file made from it, validated together.
struct ModelAndCalib {
  std::unique_ptr<ModelSource> model;
  std::unique_ptr<ArtifactReader> reader;
  CalibData header;
};

ModelAndCalib open_model_and_calib(const std::string& model_path, const std::string& calib_path, int threads) {
  set_compute_threads(threads);
  ModelAndCalib opened;
  opened.model = ModelSource::open(model_path);
  require_original_attention(*opened.model, "ekv-select-rope");
  opened.reader = std::make_unique<ArtifactReader>(calib_path, "calib", kCalibFormatVersion);
  opened.reader->require_model(opened.model->fingerprint(), model_path);
  opened.header = read_calib_header(*opened.reader);
  return opened;
}

// The engine layouts (rope/slot_layout). With a quadratic objective (l2, attention) every layer's
// statistics are kept (an n_c × n_c matrix per KV head), so the model-level choice can try many
// slot sets: llama.cpp searches and refines every progression and keeps the best; transformers
// starts from the multiset the free search asks for and improves it by local search. With l1 (its
// rows are tens of MB a head) llama.cpp's progressions are searched layer by layer as the layers
// stream past, and transformers takes the free search's multiset and searches every layer again.
// Returns the search seconds.
double select_in_engine_slots(const SelectRopeOptions& options, const ModelSource& model, const ArtifactReader& reader,
                              const CalibData& header, int begin, int end, RopeData& data) {
  const ModelConfig& config = model.config();
  const int r = options.r_max, chunks = config.chunks();
  const int slots = !options.slot_chunks.empty() ? int(options.slot_chunks.size())
                    : options.slots > 0         ? options.slots
                                                : r * config.kv_heads;
  const Objective objective = data.options.objective;
  const bool quadratic = ChunkDistances::quadratic_objective(objective);
  double seconds = 0;
  auto timed = [&](auto&& work) {
    const auto start = std::chrono::steady_clock::now();
    work();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto layer_heads = [&](int l) {
    const LayerWeights weights = model.layer(l);
    const LayerStatistics stats = read_calib_layer(reader, header, l, true);
    std::vector<ChunkDistances> heads;
    timed([&] { heads = layer_chunk_distances(weights, stats, config, header.seq_len, data.options); });
    return heads;
  };
  std::vector<std::vector<int>> candidates;
  if (!options.slot_chunks.empty()) candidates.push_back(options.slot_chunks);
  else if (data.layout == RopeLayout::llama_cpp) candidates = chunk_progressions(chunks, slots);
  if (data.layout == RopeLayout::llama_cpp) {
    EKV_CHECK(!candidates.empty(), "--layout llama.cpp: ", slots, " slots at distinct frequencies do not fit the ",
              chunks, " chunks of a head (lower --r-max or --slots)");
    for (const auto& candidate : candidates) {
      bool progression = true;
      for (std::size_t i = 2; i < candidate.size(); ++i)
        progression = progression && candidate[i] - candidate[i - 1] == candidate[1] - candidate[0];
      EKV_CHECK(progression && (candidate.size() < 2 || candidate[1] > candidate[0]), "--slot-chunks: llama.cpp's "
                "slots turn at an ascending progression c0, c0+Δ, c0+2Δ, ...");
    }
  }
  auto report = [&](const std::vector<std::vector<int>>& sets, const std::vector<double>& totals) {
    std::vector<std::size_t> ranked(sets.size());
    std::iota(ranked.begin(), ranked.end(), std::size_t(0));
    std::stable_sort(ranked.begin(), ranked.end(), [&](std::size_t a, std::size_t b) { return totals[a] < totals[b]; });
    for (std::size_t k = 0; k < std::min<std::size_t>(ranked.size(), 5); ++k) {
      const auto& p = sets[ranked[k]];
      log::info(cat("  slots from chunk ", p.front(), " to ", p.back(), ": summed distance ", totals[ranked[k]]));
    }
  };

  if (!quadratic) {
    if (data.layout == RopeLayout::llama_cpp) {
      ProgressionSearch search(candidates, chunks, r, objective);
      Progress progress("select-rope llama.cpp (" + std::to_string(candidates.size()) + " progressions)",
                        std::uint64_t(end - begin), "layers");
      for (int l = begin; l < end; ++l) {
        const auto heads = layer_heads(l);
        timed([&] { search.add_layer(heads, l); });
        progress.advance();
      }
      progress.finish();
      report(candidates, search.totals());
      data.slot_chunks = search.candidates()[search.best()];
      data.layers = search.best_layers();
      return seconds;
    }
    if (!candidates.empty()) {
      data.slot_chunks = candidates.front();
    } else {
      std::vector<LayerSelection> free;
      Progress first("select-rope transformers (1/2: free search)", std::uint64_t(end - begin), "layers");
      for (int l = begin; l < end; ++l) {
        const LayerWeights weights = model.layer(l);
        const LayerStatistics stats = read_calib_layer(reader, header, l, true);
        timed([&] { free.push_back(select_layer(weights, stats, config, header.seq_len, data.options)); });
        first.advance();
      }
      first.finish();
      data.slot_chunks = slot_multiset(free, r, slots, chunks);
    }
    const std::vector<int> capacity = slot_capacity(data.slot_chunks, chunks);
    Progress second("select-rope transformers (2/2: within the slots)", std::uint64_t(end - begin), "layers");
    for (int l = begin; l < end; ++l) {
      const auto heads = layer_heads(l);
      timed([&] { data.layers.push_back(select_in_slots(heads, capacity, r, objective, l)); });
      second.advance();
    }
    second.finish();
    std::sort(data.slot_chunks.begin(), data.slot_chunks.end());
    return seconds;
  }

  // Quadratic objectives: every layer's statistics at hand.
  std::vector<std::vector<ChunkDistances>> layers;
  Progress progress("select-rope " + options.layout + " (statistics)", std::uint64_t(end - begin), "layers");
  for (int l = begin; l < end; ++l) {
    std::vector<ChunkDistances> kept;
    for (const ChunkDistances& head : layer_heads(l)) kept.push_back(head.without_l1());
    layers.push_back(std::move(kept));
    progress.advance();
  }
  progress.finish();
  auto search_within = [&](const std::vector<int>& slot_chunks) {
    const std::vector<int> capacity = slot_capacity(slot_chunks, chunks);
    std::vector<LayerSelection> selections;
    double total = 0;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      selections.push_back(refine_in_slots(layers[i], capacity,
                                           select_in_slots(layers[i], capacity, r, objective, begin + int(i)),
                                           objective));
      for (const auto& distance : selections.back().distance) total += distance.back();
    }
    return std::make_pair(total, selections);
  };
  timed([&] {
    if (data.layout == RopeLayout::transformers && candidates.empty()) {
      std::vector<LayerSelection> free;
      for (std::size_t i = 0; i < layers.size(); ++i) {
        LayerSelection layer;
        layer.layer = begin + int(i);
        for (const ChunkDistances& head : layers[i]) {
          auto search = head.greedy(r, objective);
          layer.order.push_back(std::move(search.order));
          layer.distance.push_back(std::move(search.distance));
        }
        free.push_back(std::move(layer));
      }
      candidates.push_back(refine_multiset(layers, slot_multiset(free, r, slots, chunks), r, objective));
    }
    std::vector<double> totals;
    std::vector<std::vector<LayerSelection>> results;
    for (const auto& candidate : candidates) {
      auto [total, selections] = search_within(candidate);
      totals.push_back(total);
      results.push_back(std::move(selections));
    }
    report(candidates, totals);
    const std::size_t best = std::size_t(std::min_element(totals.begin(), totals.end()) - totals.begin());
    data.slot_chunks = candidates[best];
    std::sort(data.slot_chunks.begin(), data.slot_chunks.end());
    data.layers = std::move(results[best]);
  });
  return seconds;
}
}  // namespace

double run_select_rope(const SelectRopeOptions& options) {
  options.check();
  const auto [model, reader_ptr, header] = open_model_and_calib(options.model, options.calib, options.threads);
  const ArtifactReader& reader = *reader_ptr;
  const ModelConfig& config = model->config();
  const auto [begin, end] = parse_layer_range(options.layers, header.layer_begin, header.layer_end, options.calib);

  RopeData data;
  data.options = {parse_select_method(options.method), parse_objective(options.objective), options.r_max,
                  options.pairs_per_seq, options.pair_seed};
  EKV_CHECK(options.r_max <= config.chunks(), "--r-max ", options.r_max, ": the model has ", config.chunks(),
            " RoPE chunks per head");
  data.layer_begin = begin;
  data.layer_end = end;
  data.chunks = config.chunks();
  data.kv_heads = config.kv_heads;
  data.head_dim = config.head_dim;
  data.seq_len = header.seq_len;
  data.sequences = header.keep_seqs;
  data.layout = parse_rope_layout(options.layout);
  double search_seconds = 0;
  if (data.layout == RopeLayout::free) {
    Progress progress("select-rope " + options.method + "/" + options.objective, std::uint64_t(end - begin), "layers");
    for (int l = begin; l < end; ++l) {
      const LayerWeights weights = model->layer(l);
      const LayerStatistics stats = read_calib_layer(reader, header, l, true);
      const auto start = std::chrono::steady_clock::now();
      data.layers.push_back(select_layer(weights, stats, config, header.seq_len, data.options));
      search_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress.advance();
    }
    progress.finish();
  } else {
    search_seconds = select_in_engine_slots(options, *model, reader, header, begin, end, data);
  }
  write_rope(data, options.output, model->fingerprint(),
             {{options.model, model->format(), "fingerprint:" + model->fingerprint()},
              file_input(options.calib, "calib")});
  std::string slots;
  for (int c : data.slot_chunks) slots += (slots.empty() ? "" : ",") + std::to_string(c);
  std::printf("final: rope=%s method=%s objective=%s layout=%s%s%s layers=%d:%d r_max=%d sequences=%d search_s=%.2f\n",
              options.output.c_str(), options.method.c_str(), options.objective.c_str(), options.layout.c_str(),
              slots.empty() ? "" : " slots=", slots.c_str(), begin, end, options.r_max, header.keep_seqs,
              search_seconds);
  std::fflush(stdout);
  return search_seconds;
}

void run_evaluate_rope(const EvaluateRopeOptions& options, std::ostream& out) {
  options.check();
  const auto [model, reader_ptr, header] = open_model_and_calib(options.model, options.calib, options.threads);
  const ArtifactReader& reader = *reader_ptr;
  const ModelConfig& config = model->config();
  std::vector<RopeData> ropes;
  int begin = header.layer_begin, end = header.layer_end;
  for (const auto& path : options.ropes) {
    ropes.push_back(read_rope_of(path, model->config(), model->fingerprint(), options.model));
    begin = std::max(begin, ropes.back().layer_begin);
    end = std::min(end, ropes.back().layer_end);
    for (int r : options.ranks)
      EKV_CHECK(r <= ropes.back().options.r_max, path, ": r_max ", ropes.back().options.r_max, " < requested r ", r);
  }
  EKV_CHECK(begin < end, "the rope files and ", options.calib, " share no layer");
  // sums[file][rank]: Σ over layers and KV heads of the held-out mean |Δlogit|.
  std::vector<std::vector<double>> sums(ropes.size(), std::vector<double>(options.ranks.size(), 0.0));
  SelectOptions sampling;
  sampling.pairs_per_seq = options.pairs_per_seq;
  sampling.pair_seed = 12345;  // a sample of its own, unrelated to any search's
  Progress progress("evaluate", std::uint64_t(end - begin), "layers");
  for (int l = begin; l < end; ++l) {
    const LayerWeights weights = model->layer(l);
    const LayerStatistics stats = read_calib_layer(reader, header, l, true);
    const auto heads = layer_chunk_distances(weights, stats, config, header.seq_len, sampling);
    for (std::size_t f = 0; f < ropes.size(); ++f) {
      const LayerSelection& selection = ropes[f].layers[std::size_t(l - ropes[f].layer_begin)];
      for (std::size_t i = 0; i < options.ranks.size(); ++i)
        for (int j = 0; j < config.kv_heads; ++j) {
          std::vector<bool> elite(std::size_t(config.chunks()), false);
          if (options.ranks[i] > 0)
            for (int c : selection.sets[std::size_t(j)][std::size_t(options.ranks[i] - 1)]) elite[std::size_t(c)] = true;
          sums[f][i] += heads[std::size_t(j)].distance(elite, Objective::l1);
        }
    }
    progress.advance();
  }
  progress.finish();
  const double count = double(end - begin) * config.kv_heads;
  out << "| method | objective |";
  for (int r : options.ranks) out << " r=" << r << " |";
  out << "\n|---|---|";
  for (std::size_t i = 0; i < options.ranks.size(); ++i) out << "---|";
  out << "\n";
  for (std::size_t f = 0; f < ropes.size(); ++f) {
    out << "| " << select_method_name(ropes[f].options.method) << " | "
        << (ropes[f].options.method == SelectMethod::elite ? objective_name(ropes[f].options.objective) : "-") << " |";
    for (std::size_t i = 0; i < options.ranks.size(); ++i)
      out << " " << std::fixed << std::setprecision(4) << sums[f][i] / count << " |";
    out << "\n";
  }
  out << "(mean |Δlogit| over layers " << begin << ":" << end << ", KV heads, query heads and " << header.keep_seqs
      << " held-out sequences of " << header.seq_len << " tokens, " << options.pairs_per_seq
      << " causal pairs sampled per sequence)\n";
}

}  // namespace ekv
