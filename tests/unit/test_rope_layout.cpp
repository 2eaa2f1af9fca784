// The GGUF (interleaved) and HF (rotate_half) layouts describe the same attention: RoPE on
// interleaved pairs of the permuted rows gives exactly the logits of rotate_half RoPE on the
// original rows (docs/method.md §2).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ekv/model/rope_layout.hpp"

namespace ekv {
namespace {

// Rotates one head vector at `position`; pairs are (c, c+half) or (2c, 2c+1).
std::vector<double> rotate(const std::vector<double>& v, int position, double theta, bool interleaved) {
  const int d = int(v.size()), half = d / 2;
  std::vector<double> out(v.size());
  for (int c = 0; c < half; ++c) {
    const double angle = position * std::pow(theta, -2.0 * c / d);
    const int a = interleaved ? 2 * c : c, b = interleaved ? 2 * c + 1 : c + half;
    out[a] = v[a] * std::cos(angle) - v[b] * std::sin(angle);
    out[b] = v[b] * std::cos(angle) + v[a] * std::sin(angle);
  }
  return out;
}

std::vector<double> project(const std::vector<float>& w, int row0, int rows, const std::vector<float>& x) {
  const int cols = int(x.size());
  std::vector<double> out(rows);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) out[r] += double(w[size_t((row0 + r) * cols + c)]) * x[size_t(c)];
  return out;
}

TEST(RopeLayout, PermutationIsInvertible) {
  std::vector<float> w(3 * 8 * 5);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(i);
  std::vector<float> p = w;
  hf_to_gguf_rope_rows(p, 3, 8, 5);
  EXPECT_NE(p, w);
  // Head 1, HF row 4 + 1 (second element of chunk 1) sits at GGUF row 2*1 + 1 = 3.
  EXPECT_EQ(p[size_t((8 + 3) * 5)], w[size_t((8 + 5) * 5)]);
  gguf_to_hf_rope_rows(p, 3, 8, 5);
  EXPECT_EQ(p, w);
}

TEST(RopeLayout, BothLayoutsGiveIdenticalLogits) {
  const int heads = 2, head_dim = 16, cols = 12;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> wq(size_t(heads * head_dim * cols)), wk(wq.size()), xm(cols), xn(cols);
  for (auto* v : {&wq, &wk, &xm, &xn})
    for (auto& value : *v) value = normal(rng);
  std::vector<float> wq_gguf = wq, wk_gguf = wk;
  hf_to_gguf_rope_rows(wq_gguf, heads, head_dim, cols);
  hf_to_gguf_rope_rows(wk_gguf, heads, head_dim, cols);
  for (int h = 0; h < heads; ++h)
    for (int m : {0, 1, 17, 900})
      for (int n : {0, 5, 17}) {
        auto logit = [&](const std::vector<float>& q, const std::vector<float>& k, bool interleaved) {
          const auto qm = rotate(project(q, h * head_dim, head_dim, xm), m, 1e5, interleaved);
          const auto kn = rotate(project(k, h * head_dim, head_dim, xn), n, 1e5, interleaved);
          double dot = 0;
          for (int i = 0; i < head_dim; ++i) dot += qm[size_t(i)] * kn[size_t(i)];
          return dot;
        };
        const double hf = logit(wq, wk, false), gguf = logit(wq_gguf, wk_gguf, true);
        EXPECT_NEAR(hf, gguf, 1e-9 * (1 + std::abs(hf))) << "head " << h << " m " << m << " n " << n;
        // Mixing the conventions is the pitfall docs/method.md §8 names: it changes the logits.
        if (m != n) {
          EXPECT_GT(std::abs(hf - logit(wq_gguf, wk_gguf, false)), 1e-6);
        }
      }
}

}  // namespace
}  // namespace ekv
