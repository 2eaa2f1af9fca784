#include "ekv/tools/check.hpp"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "ekv/calib/calib_file.hpp"
#include "ekv/check/decode_check.hpp"
#include "ekv/check/fidelity.hpp"
#include "ekv/check/held_out_windows.hpp"
#include "ekv/check/perplexity.hpp"
#include "ekv/compressed/compressed_forward.hpp"
#include "ekv/compressed/decode_pack.hpp"
#include "ekv/core/atomic_output.hpp"
#include "ekv/core/cli.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/core/version.hpp"
#include "ekv/lrd/rank_budget.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tokenizer.hpp"

namespace ekv {

namespace fs = std::filesystem;

namespace {
std::vector<std::int32_t> tokenize_text(const std::string& model_path, const std::string& text_path) {
  const Tokenizer tokenizer = Tokenizer::for_model(model_path);
  std::vector<std::int32_t> tokens = tokenizer.encode(read_file(text_path), text_path);
  log::info(cat("tokenized ", text_path, ": ", tokens.size(), " tokens"));
  return tokens;
}

// Logits of a compressed model against another model than its source compare two models (with a
// smaller vocabulary the KL was -nan). The source passes, and so does a copy ekv made of it
// (ekv-convert: the same model in another container, whose ekv_source is the same source).
void require_made_from(const ModelSource& compressed, const ModelSource& original) {
  EKV_CHECK(compressed.config().vocab == original.config().vocab, compressed.path().string(), ": a vocabulary of ",
            compressed.config().vocab, " tokens, ", original.path().string(), " has ", original.config().vocab,
            ": not the model it was made from");
  const std::string& source = compressed.source_fingerprint();
  if (source.empty()) return;  // a folder ekv did not write records no source
  EKV_CHECK(source == original.fingerprint() || source == original.source_fingerprint(), compressed.path().string(),
            "/config.json: ekv_source.fingerprint ", source.substr(0, 16), "… is not the fingerprint of ",
            original.path().string(), " (", original.fingerprint().substr(0, 16),
            "…): it was made from another model (give --model the model it was made from)");
}
}  // namespace

void PplOptions::register_with(CLI::App& command) {
  command.add_option("--model,-m", model, "A .gguf file or an HF folder (with tokenizer.json)")->required();
  command.add_option("--text,-t", text, "UTF-8 text file to score (e.g. the evaluation corpus)")->required();
  command.add_option("--window", window, "Tokens per window; every token but the first is scored")
      ->capture_default_str();
  command.add_option("--max-windows", max_windows, "Score at most this many windows (0: all full windows)")
      ->capture_default_str();
  command.add_option("--batch", batch, "Windows per forward pass")->capture_default_str();
  add_threads_option(command, threads);
}

void PplOptions::check() const {
  EKV_CHECK(window >= 2, "--window ", window, ": must be at least 2");
  EKV_CHECK(max_windows >= 0, "--max-windows ", max_windows, ": must not be negative");
  EKV_CHECK(batch >= 1, "--batch ", batch, ": must be at least 1");
  require_text_corpus(text);
}

void run_check_ppl(const PplOptions& options) {
  options.check();
  set_compute_threads(options.threads);
  const auto model = ModelSource::open(options.model);
  EKV_CHECK(options.window <= model->config().context, "--window ", options.window, " exceeds the model context ",
            model->config().context);
  const std::vector<std::int32_t> tokens = tokenize_text(options.model, options.text);
  Forward forward(*model);
  install_compressed_attention(forward);
  forward.set_keep_weights(true);
  const PerplexityResult result = perplexity(forward, tokens, {options.window, options.max_windows, options.batch});
  std::printf("final: ppl=%.4f nll=%.6f tokens=%lld windows=%d window=%d text_tokens=%lld\n", result.perplexity(),
              result.mean_nll(), (long long)result.scored, result.windows, result.window,
              (long long)result.text_tokens);
  std::fflush(stdout);
}


void CompareOptions::register_with(CLI::App& command) {
  command.add_option("--model,-m", model, "The original model (.gguf or HF folder)")->required();
  command.add_option("--compressed,-c", compressed, "The ekv-export folder")->required();
  command.add_option("--text,-t", text, "Held-out UTF-8 text (e.g. the evaluation corpus)")->required();
  command.add_option("--window", window, "Tokens per window; every token but the first is scored")
      ->capture_default_str();
  command.add_option("--max-windows", max_windows, "Windows to score (0: every full window)")->capture_default_str();
  command.add_option("--held-out-from", held_out_from,
                     "calib.h5 made from --text: score only windows that none of its sampled sequences touches, "
                     "spread over the text (the calibration corpus's own held-out windows; make fit)");
  command.add_option("--batch", batch, "Windows per forward pass")->capture_default_str();
  add_threads_option(command, threads);
  command.add_option("--output,-o", output, "report.json")->required();
}

void CompareOptions::check() const {
  EKV_CHECK(window >= 2, "--window ", window, ": must be at least 2");
  EKV_CHECK(max_windows >= 0, "--max-windows ", max_windows, ": must not be negative");
  EKV_CHECK(batch >= 1, "--batch ", batch, ": must be at least 1");
  require_text_corpus(text);
  if (!output.empty()) require_output_path(output, {model, compressed, text, held_out_from});
}

HeldOutWindows calibration_held_out(const std::string& calib_path, const ModelSource& original,
                                    const std::string& text_path, const std::vector<std::int32_t>& tokens, int window,
                                    int max_windows) {
  const ArtifactReader reader(calib_path, "calib", kCalibFormatVersion);
  reader.require_model(original.fingerprint(), original.path().string());
  const CalibData calib = read_calib_header(reader);
  EKV_CHECK(calib.shard_count == 1, calib_path, ": shard: slice ", calib.shard_index, " of ", calib.shard_count,
            "; give the merged calib.h5 (its held-out windows are those no slice read)");
  const std::size_t seq_len = std::size_t(calib.seq_len);
  for (std::size_t i = 0; i < calib.offsets.size(); ++i) {
    const std::int64_t offset = calib.offsets[i];
    const bool inside = offset >= 0 && std::size_t(offset) + seq_len <= tokens.size();
    EKV_CHECK(inside && std::equal(calib.tokens.begin() + std::ptrdiff_t(i * seq_len),
                                   calib.tokens.begin() + std::ptrdiff_t((i + 1) * seq_len),
                                   tokens.begin() + (inside ? offset : 0)),
              calib_path, ": tokens: sequence ", i, " (offset ", offset, ") is not in ", text_path,
              ": the calibration was made from another text (ekv-calibrate --text)");
  }
  HeldOutWindows held_out = held_out_windows(tokens, window, max_windows, calib.offsets, calib.seq_len);
  log::info(cat(calib_path, ": ", held_out.free, " of the text's ", held_out.total, " windows of ", window,
                " tokens are held out from its ", calib.offsets.size(), " sampled sequences; scoring ",
                held_out.chosen));
  return held_out;
}

void run_check_compare(const CompareOptions& options) {
  options.check();
  set_compute_threads(options.threads);
  const auto original = ModelSource::open(options.model);
  const auto compressed = ModelSource::open(options.compressed);
  require_made_from(*compressed, *original);
  EKV_CHECK(compressed->config().elitekv.enabled(), options.compressed, ": config.json: not an EliteKV model "
            "(model_type ", kEliteKvModelType, " with elitekv_* fields); make one with ekv-export");
  require_original_attention(*original, "--model of ekv-check compare");
  std::vector<std::int32_t> tokens = tokenize_text(options.model, options.text);
  int max_windows = options.max_windows;
  nlohmann::json held_out_report = nullptr;
  if (!options.held_out_from.empty()) {
    HeldOutWindows held_out = calibration_held_out(options.held_out_from, *original, options.text, tokens,
                                                   options.window, options.max_windows);
    tokens = std::move(held_out.tokens);
    max_windows = held_out.chosen;
    held_out_report = {{"calib", options.held_out_from}, {"free_windows", held_out.free},
                       {"text_windows", held_out.total}};
  }
  const FidelityResult result =
      compare_models(*original, *compressed, tokens, {options.window, max_windows, options.batch});

  const ModelConfig& cc = compressed->config();
  const std::int64_t full = cache_elements_per_token(original->config()), kept = cache_elements_per_token(cc);
  const double ratio = double(kept) / double(full);
  double mean_layer = 0;
  for (double e : result.layer_error) mean_layer += e / double(result.layer_error.size());

  std::printf("| layer | attention-block error |\n|---|---|\n");
  for (std::size_t l = 0; l < result.layer_error.size(); ++l) std::printf("| %zu | %.4f |\n", l, result.layer_error[l]);
  std::printf("\n| model | ppl | cache elements/token | cache bytes/token (fp16) |\n|---|---|---|---|\n");
  std::printf("| original | %.4f | %lld | %lld |\n", result.original.perplexity(), (long long)full, (long long)full * 2);
  std::printf("| compressed (r=%d) | %.4f | %lld | %lld |\n", cc.elitekv.r, result.compressed.perplexity(),
              (long long)kept, (long long)kept * 2);
  std::printf("\nmean KL(orig‖comp) = %.5f nats, top-1 agreement = %.2f %%, cache ratio = %.4f, %d windows × %d\n",
              result.mean_kl(), 100 * result.top1(), ratio, result.original.windows, options.window);

  nlohmann::json report = {
      {"model", options.model},
      {"compressed", options.compressed},
      {"text", options.text},
      {"held_out_from", held_out_report},
      {"window", options.window},
      {"windows", result.original.windows},
      {"scored_tokens", result.original.scored},
      {"r", cc.elitekv.r},
      {"kv_rank", cc.elitekv.kv_rank},
      {"layer_error", result.layer_error},
      {"mean_layer_error", mean_layer},
      {"ppl_original", result.original.perplexity()},
      {"ppl_compressed", result.compressed.perplexity()},
      {"mean_kl", result.mean_kl()},
      {"top1_agreement", result.top1()},
      {"cache_elements_per_token", {{"original", full}, {"compressed", kept}}},
      {"cache_bytes_per_token_fp16", {{"original", 2 * full}, {"compressed", 2 * kept}}},
      {"cache_ratio", ratio},
      {"producer", std::string(version())},
  };
  write_text_atomically(options.output, report.dump(2) + "\n");
  std::printf("final: ppl_original=%.4f ppl_compressed=%.4f kl=%.5f top1=%.4f cache_ratio=%.4f mean_layer_error=%.4f "
              "report=%s\n",
              result.original.perplexity(), result.compressed.perplexity(), result.mean_kl(), result.top1(), ratio,
              mean_layer, options.output.c_str());
  std::fflush(stdout);
}

void DecodeOptions::register_with(CLI::App& command) {
  command.add_option("--compressed,-c", compressed, "The ekv-export folder")->required();
  command.add_option("--model,-m", model, "The original model, to report KL / top-1 of the decoded positions");
  command.add_option("--pack", pack, "decode-pack.h5 (default: the export's own; 'none' skips the pack path)");
  command.add_option("--text,-t", text, "UTF-8 text: the prompt and the teacher-forced tokens")->required();
  command.add_option("--prompt", prompt, "Tokens put into the cache first")->capture_default_str();
  command.add_option("--steps", steps, "Decoding steps, one token each")->capture_default_str();
  command.add_option("--tolerance", tolerance, "Max |Δlogit| / max |logit| allowed against the prefill")
      ->capture_default_str();
  add_threads_option(command, threads);
}

void DecodeOptions::check() const {
  EKV_CHECK(prompt >= 1 && steps >= 1, "--prompt and --steps must be positive");
  EKV_CHECK(tolerance > 0, "--tolerance ", tolerance, ": must be positive");
  require_text_corpus(text);
}

void run_check_decode(const DecodeOptions& options) {
  options.check();
  set_compute_threads(options.threads);
  const auto compressed = ModelSource::open(options.compressed);
  EKV_CHECK(compressed->config().elitekv.enabled(), options.compressed,
            ": config.json: not an EliteKV model; make one with ekv-export");
  std::unique_ptr<ModelSource> original;
  if (!options.model.empty()) {
    original = ModelSource::open(options.model);
    require_original_attention(*original, "--model of ekv-check decode");
    require_made_from(*compressed, *original);
  }
  std::unique_ptr<ArtifactReader> pack;
  const std::string pack_path =
      options.pack.empty() ? (fs::path(options.compressed) / "decode-pack.h5").string() : options.pack;
  if (pack_path != "none") {
    pack = std::make_unique<ArtifactReader>(pack_path, "decode-pack", kDecodePackFormatVersion);
    pack->require_model(compressed->fingerprint(), options.compressed);
  }
  const std::vector<std::int32_t> tokens = tokenize_text(options.compressed, options.text);
  const DecodeCheckResult result =
      check_decode(*compressed, original.get(), pack.get(), tokens, {options.prompt, options.steps});
  std::printf("| path | max |Δlogit| / max |logit| vs prefill | top-1 = prefill |\n|---|---|---|\n");
  bool ok = true;
  for (const auto& p : result.paths) {
    std::printf("| %s | %.3g | %d / %d |\n", p.path, p.max_relative_diff, p.top1_agree, result.steps);
    ok = ok && p.max_relative_diff <= options.tolerance;
  }
  const ModelConfig& c = compressed->config();
  const std::int64_t full = 2LL * c.kv_heads * c.head_dim * c.layers * (options.prompt + options.steps);
  std::printf("\ncache after %d tokens: %lld elements (a full K/V cache: %lld, ratio %.4f)\n",
              options.prompt + options.steps, (long long)result.cache_elements, (long long)full,
              double(result.cache_elements) / double(full));
  if (original)
    std::printf("vs the original model: mean KL %.5f nats, top-1 agreement %.1f %%\n", result.kl_vs_original,
                100 * result.top1_vs_original);
  double worst = 0;
  for (const auto& p : result.paths) worst = std::max(worst, p.max_relative_diff);
  std::printf("final: decode steps=%d paths=%zu max_rel_diff=%.3g tolerance=%.1g %s\n", result.steps,
              result.paths.size(), worst, options.tolerance, ok ? "agree" : "DISAGREE");
  std::fflush(stdout);
  EKV_CHECK(ok, "decode: a path differs from the compressed prefill by ", worst, " > tolerance ", options.tolerance);
}

}  // namespace ekv
