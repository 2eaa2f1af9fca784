// RoPE frequencies ω_c = θ^(-2c/d_h) after the model's scaling rule (none, linear, llama3),
// and cos/sin tables with angles m·ω_c computed in fp64 (docs/method.md §2 and pitfalls).
#pragma once

#include <cstdint>
#include <vector>

#include "ekv/model/config.hpp"

namespace ekv {

std::vector<double> rope_frequencies(const ModelConfig& config);  // n_c values

// cos and sin of m·ω_c for positions [0, positions), stored [position][chunk] as fp32.
class RopeTable {
 public:
  RopeTable(const std::vector<double>& frequencies, std::int64_t positions);
  int chunks() const { return chunks_; }
  std::int64_t positions() const { return positions_; }
  const float* cos(std::int64_t position) const { return cos_.data() + position * chunks_; }
  const float* sin(std::int64_t position) const { return sin_.data() + position * chunks_; }

 private:
  int chunks_;
  std::int64_t positions_;
  std::vector<float> cos_, sin_;
};

// Rotates one head vector in the rotate_half layout: chunk c is the pair (c, c + n_c).
void rotate_half_inplace(float* head, int chunks, const float* cos, const float* sin);

}  // namespace ekv
