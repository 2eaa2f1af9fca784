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

void full_decode_reference(const DecodeBatchShape& s, int head_dim, const float* q, const float* k, const float* v,
                           const int* lengths, float* out) {
  const int G = s.kv_heads, dh = head_dim;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      const int j = h / (s.heads / G);
      const std::size_t bh = std::size_t(b) * s.heads + h, first = (std::size_t(b) * s.max_context * G + j) * dh;
      const HeadRows keys{k + first, std::size_t(G) * dh, dh}, values{v + first, std::size_t(G) * dh, dh};
      decode_head_reference(q + bh * dh, keys, nullptr, {}, values, lengths[b], s.scale, out + bh * dh);
    }
}

void compressed_decode_reference(const DecodeBatchShape& s, int r, int rank, const float* q_elite,
                                 const float* q_latent, const float* k_elite, const float* latent, const int* lengths,
                                 float* out) {
  const int G = s.kv_heads, da = 2 * r;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      const int j = h / (s.heads / G);
      const std::size_t bh = std::size_t(b) * s.heads + h;
      const HeadRows elite{k_elite + (std::size_t(b) * s.max_context * G + j) * da, std::size_t(G) * da, da};
      const HeadRows cache{latent + std::size_t(b) * s.max_context * rank, std::size_t(rank), rank};
      decode_head_reference(q_elite + bh * da, elite, q_latent + bh * rank, cache, cache, lengths[b], s.scale,
                            out + bh * rank);
    }
}

}  // namespace ekv
