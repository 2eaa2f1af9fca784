// Token-by-token decoding of a compressed model from its real cache (docs/method.md §6): the
// prompt goes into the cache in one call, then one token per step. The absorbed path, the
// reconstruct path and (given a decode pack) the pack's absorbed kernel math must give the
// logits of the compressed model's prefill over the whole sequence; the original model's
// prefill says how far the compression moved them.
#pragma once

#include <cstdint>
#include <vector>

#include "ekv/io/artifact.hpp"
#include "ekv/model/model_source.hpp"

namespace ekv {

struct DecodeCheckOptions {
  int prompt = 64;  // tokens put into the cache before decoding
  int steps = 64;   // decoding steps, one token each
};

// Largest |Δlogit| over every decoded position, relative to the largest |logit| of the prefill.
struct PathAgreement {
  const char* path;
  double max_relative_diff = 0;
  int top1_agree = 0;  // decoded positions whose argmax equals the prefill's
};

struct DecodeCheckResult {
  std::vector<PathAgreement> paths;  // absorbed, reconstruct, pack (when given)
  int steps = 0;
  std::int64_t cache_elements = 0;  // elements cached per sequence after the last step, all layers
  double kl_vs_original = -1;       // mean KL(p_orig ‖ p_decode) over the steps (no original: -1)
  double top1_vs_original = -1;
};

// tokens: at least prompt + steps of them (teacher forcing: step k feeds tokens[prompt + k]).
DecodeCheckResult check_decode(const ModelSource& compressed, const ModelSource* original, const ArtifactReader* pack,
                               const std::vector<std::int32_t>& tokens, const DecodeCheckOptions& options);

}  // namespace ekv
