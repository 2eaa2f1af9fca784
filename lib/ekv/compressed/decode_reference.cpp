#include "ekv/compressed/decode_reference.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ekv {

void decode_head_reference(const float* q_a, HeadRows keys_a, const float* q_b, HeadRows keys_b, HeadRows values,
                           int tokens, float scale, float* out) {
  std::vector<double> logits(static_cast<std::size_t>(tokens));
  double peak = -INFINITY;
  for (int t = 0; t < tokens; ++t) {
    double dot = 0;
    const float* a = keys_a.data + std::size_t(t) * keys_a.stride;
    for (int i = 0; i < keys_a.width; ++i) dot += double(q_a[i]) * a[i];
    const float* b = keys_b.data + std::size_t(t) * keys_b.stride;
    for (int i = 0; i < keys_b.width; ++i) dot += double(q_b[i]) * b[i];
    logits[std::size_t(t)] = dot * scale;
    peak = std::max(peak, logits[std::size_t(t)]);
  }
  double total = 0;
  for (double& l : logits) total += (l = std::exp(l - peak));
  std::vector<double> acc(static_cast<std::size_t>(values.width), 0.0);
  for (int t = 0; t < tokens; ++t) {
    const float* v = values.data + std::size_t(t) * values.stride;
    for (int i = 0; i < values.width; ++i) acc[std::size_t(i)] += logits[std::size_t(t)] * v[i];
  }
  for (int i = 0; i < values.width; ++i) out[i] = tokens > 0 ? float(acc[std::size_t(i)] / total) : 0.0f;
}

}  // namespace ekv
