#include "ekv/check/perplexity.hpp"

#include <algorithm>
#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/core/progress.hpp"

namespace ekv {

double PerplexityResult::perplexity() const { return std::exp(mean_nll()); }

double token_nll(const float* logits, int vocab, int target) {
  const float peak = *std::max_element(logits, logits + vocab);
  double total = 0;
  for (int i = 0; i < vocab; ++i) total += std::exp(double(logits[i]) - peak);
  return std::log(total) + double(peak) - double(logits[target]);
}

PerplexityResult perplexity(Forward& forward, const std::vector<std::int32_t>& tokens,
                            const PerplexityOptions& options) {
  EKV_CHECK(options.window >= 2, "perplexity: window ", options.window, " must be at least 2");
  EKV_CHECK(options.batch >= 1, "perplexity: batch must be at least 1");
  PerplexityResult result;
  result.window = options.window;
  result.text_tokens = std::int64_t(tokens.size());
  int windows = int(tokens.size() / std::size_t(options.window));
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  EKV_CHECK(windows > 0, "perplexity: the text has ", tokens.size(), " tokens, fewer than one window of ",
            options.window);
  const int vocab = forward.config().vocab;
  Progress progress("perplexity", std::uint64_t(windows) * std::uint64_t(options.window), "tokens");
  for (int first = 0; first < windows; first += options.batch) {
    const int batch = std::min(options.batch, windows - first);
    const std::span<const std::int32_t> chunk(tokens.data() + std::size_t(first) * std::size_t(options.window),
                                              std::size_t(batch) * std::size_t(options.window));
    const Matrix hidden = forward.hidden_states(chunk, batch, options.window);
    for (int b = 0; b < batch; ++b) {
      const Eigen::Index row0 = Eigen::Index(b) * options.window;
      const Matrix logits = forward.logits(hidden, row0, options.window - 1);  // [N-1, vocab]
      double window_nll = 0;
#pragma omp parallel for reduction(+ : window_nll) schedule(static)
      for (Eigen::Index t = 0; t < logits.rows(); ++t)
        window_nll += token_nll(logits.row(t).data(), vocab, chunk[std::size_t(row0 + t + 1)]);
      EKV_CHECK(std::isfinite(window_nll), "perplexity: window ", first + b, " has a non-finite loss (", window_nll,
                "): the model's activations overflow (huge or non-finite weights)");
      result.nll_sum += window_nll;
      result.scored += options.window - 1;
    }
    result.windows += batch;
    progress.advance(std::uint64_t(batch) * std::uint64_t(options.window));
  }
  progress.finish();
  return result;
}

}  // namespace ekv
