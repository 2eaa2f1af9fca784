#include "ekv/tools/calibrate.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>
#include <tuple>

#include "ekv/calib/calib_file.hpp"
#include "ekv/core/available_memory.hpp"
#include "ekv/core/cli.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/layer_range.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/io/safetensors.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tokenizer.hpp"

namespace ekv {

namespace fs = std::filesystem;

void CalibrateOptions::register_with(CLI::App& app) {
  app.add_option("--model,-m", model, "A .gguf file or an HF folder");
  app.add_option("--text,-t", texts, "Calibration text files (UTF-8), tokenized and concatenated in order");
  app.add_option("--tokens", tokens, "Pre-tokenized input instead of --text: safetensors with an I32 'tokens' tensor");
  app.add_option("--seq-len,-S", seq_len, "Tokens per sampled sequence")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--num-seqs,-N", num_seqs, "Sequences sampled from the token stream")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", seed, "Seed of the sequence sampler (same seed, same bytes)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--shard", shard,
                 "I/N: process only slice I (from 0) of N near-equal slices (whole micro-batches) of the sampled "
                 "sequences, one job of a sharded run; `ekv-calibrate merge` of all N slices in order gives the "
                 "unsharded file");
  app.add_option("--layers", layers, "Layer range a:b (b exclusive) to capture; default: all layers");
  app.add_option("--store-dtype", store_dtype, "Storage of the kept attention inputs X")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  app.add_option("--keep-seqs,-K", keep_seqs, "Store X of the first K sequences (all N feed the statistics)")
      ->check(CLI::NonNegativeNumber)->default_str("min(8, N)");
  app.add_option("--micro-batch", micro_batch, "Sequences per step inside a layer (bounds memory)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  add_threads_option(app, threads);
  app.add_option("--output,-o", output, "Output calib.h5 (written atomically)");
}

void CalibrateOptions::check() const {
  EKV_CHECK(!model.empty(), "--model is required");
  EKV_CHECK(!output.empty(), "--output is required");
  EKV_CHECK(texts.empty() != tokens.empty(), "give either --text files or --tokens, not both and not neither");
  for (const auto& text : texts) require_text_corpus(text);
  EKV_CHECK(tokens.empty() || fs::is_regular_file(tokens), tokens, ": no such token file");
  EKV_CHECK(seq_len >= 2, "--seq-len ", seq_len, ": must be at least 2");
  EKV_CHECK(num_seqs >= 1, "--num-seqs ", num_seqs, ": must be at least 1");
  EKV_CHECK(keep_seqs >= -1 && kept() <= num_seqs, "--keep-seqs ", keep_seqs, ": must be within [0, --num-seqs]");
  EKV_CHECK(micro_batch >= 1, "--micro-batch ", micro_batch, ": must be at least 1");
  int index = 0, count = 1;
  EKV_CHECK(shard.empty() || parse_shard(shard, index, count), "--shard ", shard, ": expected I/N with 0 <= I < N");
  EKV_CHECK(count <= (num_seqs + micro_batch - 1) / micro_batch, "--shard ", shard, ": more slices than the ",
            (num_seqs + micro_batch - 1) / micro_batch, " micro-batches of --num-seqs ", num_seqs, " / --micro-batch ",
            micro_batch, " (a slice is whole micro-batches)");
  std::vector<fs::path> inputs{model, tokens};
  inputs.insert(inputs.end(), texts.begin(), texts.end());
  require_output_path(output, inputs);
}

void MergeOptions::register_with(CLI::App& command) {
  command.add_option("shards", shards, "calib.h5 shards of the same model, made from different sequences")
      ->required()
      ->expected(2, -1);
  command.add_option("--output,-o", output, "Merged calib.h5")->required();
}

void MergeOptions::check() const {
  require_output_path(output, {shards.begin(), shards.end()});
}

namespace {

std::vector<std::int32_t> read_token_file(const std::string& path) {
  const SafetensorsFile file(path);
  const SafetensorsEntry* entry = file.find("tokens");
  EKV_CHECK(entry, path, ": no tensor named tokens");
  EKV_CHECK(entry->dtype == DType::i32, path, ": tensor tokens: expected I32, found ", dtype_name(entry->dtype));
  std::vector<std::int32_t> tokens(entry->elements());
  std::memcpy(tokens.data(), file.bytes(*entry).data(), tokens.size() * sizeof(std::int32_t));
  return tokens;
}

}  // namespace

// Starts of N sequences of S tokens, uniform over the stream, from a fixed-algorithm generator
// (std::mt19937_64 is specified exactly, so offsets are the same on every platform).
std::vector<std::int64_t> sample_offsets(std::int64_t stream, int seq_len, int num_seqs, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto span = std::uint64_t(stream - seq_len + 1);
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(num_seqs));
  for (auto& offset : offsets) offset = std::int64_t(rng() % span);
  return offsets;
}

std::pair<int, int> CalibrateOptions::shard_position() const {
  int index = 0, count = 1;
  if (!shard.empty()) parse_shard(shard, index, count);
  return {index, count};
}

std::pair<int, int> CalibrateOptions::slice() const {
  const std::pair<int, int> position = shard_position();
  const int index = position.first, count = position.second;
  // Slices are made of whole micro-batches, so each micro-batch holds the sequences it holds in
  // the unsharded run and the forward computes the same bits (BLAS rounding depends on shapes).
  const std::int64_t batches = (num_seqs + micro_batch - 1) / micro_batch;
  const auto start = [&](std::int64_t i) { return int(std::min<std::int64_t>(batches * i / count * micro_batch, num_seqs)); };
  return {start(index), start(index + 1)};
}

namespace {

constexpr double kMostSampledPerInputToken = 4;

// The residual stream of every sequence is held through the forward (4·hidden bytes a token),
// with its token ids twice (the stream and the sampled copy) and one layer's stored X.
void require_calibration_fits(const CalibrateOptions& options, const ModelConfig& config) {
  const auto [first, end] = options.slice();  // this run's sequences
  const double tokens = double(end - first) * options.seq_len;
  const double bytes = tokens * (8.0 + 4.0 * config.hidden) + double(options.kept()) * options.seq_len * config.hidden * 4.0;
  const auto available = available_memory_bytes();
  EKV_CHECK(!available || bytes <= double(*available), "--num-seqs ", end - first, " × --seq-len ",
            options.seq_len, " needs about ", bytes / double(1 << 30), " GiB (", tokens, " tokens × hidden ",
            config.hidden, "), more than the ", double(available.value_or(0)) / double(1 << 30),
            " GiB available: calibrate in shards (--shard I/N, then ekv-calibrate merge)");
}

}  // namespace

void run_calibrate(const CalibrateOptions& options) {
  options.check();
  set_compute_threads(options.threads);
  const auto model = ModelSource::open(options.model);
  require_original_attention(*model, "ekv-calibrate");
  const ModelConfig& config = model->config();
  EKV_CHECK(options.seq_len <= config.context, "--seq-len ", options.seq_len, " exceeds the model context ",
            config.context);
  // Named variables, not a structured binding: the capture below needs clang >= 16 for those.
  const std::pair<int, int> layer_range = parse_layer_range(options.layers, 0, config.layers, "the model");
  const int layer_begin = layer_range.first, layer_end = layer_range.second;
  require_calibration_fits(options, config);

  std::vector<std::int32_t> stream;
  std::vector<ArtifactInput> inputs = {{options.model, model->format(), "fingerprint:" + model->fingerprint()}};
  CalibData data;
  if (!options.tokens.empty()) {
    stream = read_token_file(options.tokens);
    inputs.push_back(file_input(options.tokens, "tokens"));
    data.sources.push_back(options.tokens);
  } else {
    const Tokenizer tokenizer = Tokenizer::for_model(options.model);
    for (const auto& text : options.texts) {
      const auto ids = tokenizer.encode(read_file(text), text);
      log::info(cat("tokenized ", text, ": ", ids.size(), " tokens"));
      stream.insert(stream.end(), ids.begin(), ids.end());
      inputs.push_back(file_input(text, "text"));
      data.sources.push_back(text);
    }
  }
  EKV_CHECK(stream.size() >= std::size_t(options.seq_len), "the calibration input has ", stream.size(),
            " tokens, fewer than one sequence of --seq-len ", options.seq_len);
  for (auto id : stream)
    EKV_CHECK(id >= 0 && id < config.vocab, "token id ", id, " is outside the model's vocabulary of ", config.vocab);
  // Windows are drawn with replacement; far more sampled tokens than the input holds only
  // repeats the same text (and is most often a typo in -N).
  const double coverage = double(options.num_seqs) * options.seq_len / double(stream.size());
  EKV_CHECK(coverage <= kMostSampledPerInputToken, "--num-seqs ", options.num_seqs, " × --seq-len ", options.seq_len,
            " samples ", coverage, "× the ", stream.size(), " tokens of the calibration input (at most ",
            kMostSampledPerInputToken, "×): give more text or fewer sequences");

  data.hidden = config.hidden;
  data.heads = config.heads;
  data.kv_heads = config.kv_heads;
  data.head_dim = config.head_dim;
  // The whole sample is drawn, then this run's slice of it is kept: slices of one seed merge
  // into exactly the unsharded sample. The kept X are those of the sample's first K sequences.
  const auto [first, end] = options.slice();
  const int num_seqs = end - first;
  const int keep = std::clamp(options.kept() - first, 0, num_seqs);
  std::tie(data.shard_index, data.shard_count) = options.shard_position();
  data.seq_len = options.seq_len;
  data.num_seqs = num_seqs;
  data.keep_seqs = keep;
  data.seeds = {options.seed};
  data.layer_begin = layer_begin;
  data.layer_end = layer_end;
  data.store_dtype = options.store_dtype;
  const auto sample = sample_offsets(std::int64_t(stream.size()), options.seq_len, options.num_seqs, options.seed);
  data.offsets.assign(sample.begin() + first, sample.begin() + end);
  for (auto offset : data.offsets)
    data.tokens.insert(data.tokens.end(), stream.begin() + offset, stream.begin() + offset + options.seq_len);
  for (int k = 0; k < keep; ++k) data.kept.push_back(k);

  // Each layer's statistics go to the file as soon as its last micro-batch is through, so one
  // layer's sums are in memory at a time (the peak does not grow with depth).
  CalibWriter writer(options.output, model->fingerprint(), inputs);
  LayerStatistics current(layer_begin, config);
  Forward forward(*model);
  forward.set_micro_batch(options.micro_batch);
  const std::uint64_t tokens_per_layer = std::uint64_t(num_seqs) * std::uint64_t(options.seq_len);
  Progress progress("calibrate", tokens_per_layer * std::uint64_t(layer_end), "token-layers");
  forward.set_capture([&](const LayerActivations& a) {
    if (a.layer >= layer_begin) {
      current.add(a, keep);
      if (a.first_sequence + a.batch == num_seqs) {
        writer.write_layer(current, options.store_dtype, options.seq_len);
        current = LayerStatistics(a.layer + 1, config);
      }
    }
    progress.advance(std::uint64_t(a.batch) * std::uint64_t(a.seq_len));
  });
  const auto start = std::chrono::steady_clock::now();
  forward.hidden_states(data.tokens, num_seqs, options.seq_len, layer_end - 1);
  progress.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  writer.finish(data);
  std::printf("final: calib=%s seqs=%d seq_len=%d tokens=%llu layers=%d:%d keep=%d store=%s shard=%s tokens/s=%.1f\n",
              options.output.c_str(), num_seqs, options.seq_len, (unsigned long long)tokens_per_layer,
              layer_begin, layer_end, keep, options.store_dtype.c_str(), options.shard.empty() ? "whole" : options.shard.c_str(),
              double(tokens_per_layer) / seconds);
  std::fflush(stdout);
}

void run_calibrate_merge(const MergeOptions& options) {
  options.check();
  const CalibData merged =
      merge_calib(std::vector<fs::path>(options.shards.begin(), options.shards.end()), options.output);
  std::printf("final: calib=%s shards=%zu seqs=%d keep=%d layers=%d:%d\n", options.output.c_str(),
              options.shards.size(), merged.num_seqs, merged.keep_seqs, merged.layer_begin, merged.layer_end);
  std::fflush(stdout);
}

}  // namespace ekv
