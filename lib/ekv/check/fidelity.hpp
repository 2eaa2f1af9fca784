// Fidelity of a compressed model against its original (docs/method.md §7), on held-out windows:
// per layer the relative attention-block error with the original model's inputs (both
// attentions see the same x; the original's output continues), and for the whole model mean
// KL(p_orig ‖ p_comp) over next-token distributions, top-1 agreement and both perplexities.
#pragma once

#include <cstdint>
#include <vector>

#include "ekv/check/perplexity.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/model_source.hpp"

namespace ekv {

struct FidelityResult {
  std::vector<double> layer_error;  // ‖o' − o‖ / ‖o‖ of the attention block output (after W_o)
  PerplexityResult original, compressed;
  double kl_sum = 0;              // Σ KL(p_orig ‖ p_comp) in nats over the scored positions
  std::int64_t top1_agree = 0;    // positions where both argmaxes agree
  double mean_kl() const { return original.scored ? kl_sum / double(original.scored) : 0; }
  double top1() const { return original.scored ? double(top1_agree) / double(original.scored) : 0; }
};

// KL(p ‖ q) of the softmaxes of two logit rows, in fp64.
double softmax_kl(const float* logits_p, const float* logits_q, int vocab);

// Both models on the same windows of `tokens` (PerplexityOptions: window, max_windows, batch).
FidelityResult compare_models(const ModelSource& original, const ModelSource& compressed,
                              const std::vector<std::int32_t>& tokens, const PerplexityOptions& options);

}  // namespace ekv
