// Perplexity by docs/method.md §7: non-overlapping windows of N tokens; in each window every token
// but the first is scored by the logits of the position before it; ppl = exp(mean NLL).
#pragma once

#include <cstdint>
#include <vector>

#include "ekv/model/forward.hpp"

namespace ekv {

struct PerplexityOptions {
  int window = 512;
  int max_windows = 0;  // 0: every full window of the text
  int batch = 4;        // windows per forward pass
};

struct PerplexityResult {
  double nll_sum = 0;
  std::int64_t scored = 0;   // tokens scored: windows * (window - 1)
  int windows = 0;
  int window = 0;
  std::int64_t text_tokens = 0;  // tokens in the whole text (a partial last window is not used)
  double mean_nll() const { return scored ? nll_sum / double(scored) : 0.0; }
  double perplexity() const;
};

// -log softmax(logits)[target], with the log-sum-exp in fp64.
double token_nll(const float* logits, int vocab, int target);

PerplexityResult perplexity(Forward& forward, const std::vector<std::int32_t>& tokens,
                            const PerplexityOptions& options);

}  // namespace ekv
