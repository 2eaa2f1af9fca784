// A naive fp64 forward pass of a TinyModel written from the definitions (docs/method.md §1-§3,
// §10), every loop explicit: the reference the forward, export and bias tests compare against.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "gguf_builder.hpp"

namespace ekv::test {

using Dense = Eigen::MatrixXd;

Dense rms(const Dense& x, const Vector& w, double eps);

// Logits of one sequence. With `elite` ([layer][kv head] chunks), RoPE acts on those chunks only
// and every other chunk is a plain product (RoPElite without any low-rank step); the key bias,
// where the model has one, is kept whole.
Dense reference_logits(const TinyModel& m, const std::vector<std::int32_t>& tokens,
                       const std::vector<std::vector<std::vector<int>>>* elite = nullptr);

}  // namespace ekv::test
