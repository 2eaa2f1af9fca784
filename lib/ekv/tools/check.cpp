#include "ekv/tools/check.hpp"

#include <cstdio>
#include <filesystem>

#include "ekv/check/perplexity.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tokenizer.hpp"

namespace ekv {

namespace fs = std::filesystem;

void PplOptions::register_with(CLI::App& command) {
  command.add_option("--model,-m", model, "A .gguf file or an HF folder (with tokenizer.json)")->required();
  command.add_option("--text,-t", text, "UTF-8 text file to score (e.g. the evaluation corpus)")->required();
  command.add_option("--window", window, "Tokens per window; every token but the first is scored")
      ->capture_default_str();
  command.add_option("--max-windows", max_windows, "Score at most this many windows (0: all full windows)")
      ->capture_default_str();
  command.add_option("--batch", batch, "Windows per forward pass")->capture_default_str();
  command.add_option("--threads", threads, "Compute threads (0: library defaults)")->capture_default_str();
}

void PplOptions::check() const {
  EKV_CHECK(window >= 2, "--window ", window, ": must be at least 2");
  EKV_CHECK(max_windows >= 0, "--max-windows ", max_windows, ": must not be negative");
  EKV_CHECK(batch >= 1, "--batch ", batch, ": must be at least 1");
  EKV_CHECK(fs::is_regular_file(text), text, ": no such text file");
}

void run_check_ppl(const PplOptions& options) {
  options.check();
  set_compute_threads(options.threads);
  const auto model = ModelSource::open(options.model);
  EKV_CHECK(options.window <= model->config().context, "--window ", options.window, " exceeds the model context ",
            model->config().context);
  const Tokenizer tokenizer = Tokenizer::for_model(options.model);
  const std::vector<std::int32_t> tokens = tokenizer.encode(read_file(options.text));
  log::info(cat("tokenized ", options.text, ": ", tokens.size(), " tokens"));
  Forward forward(*model);
  forward.set_keep_weights(true);
  const PerplexityResult result = perplexity(forward, tokens, {options.window, options.max_windows, options.batch});
  std::printf("final: ppl=%.4f nll=%.6f tokens=%lld windows=%d window=%d text_tokens=%lld\n", result.perplexity(),
              result.mean_nll(), (long long)result.scored, result.windows, result.window,
              (long long)result.text_tokens);
  std::fflush(stdout);
}

}  // namespace ekv
