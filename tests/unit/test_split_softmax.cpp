// The decode kernels' split-KV arithmetic (lib/ekv/cuda/split_softmax.hpp), run on the CPU: the
// splits of a context cover each sequence's tokens exactly once, the workspace holds every
// split's partial state, and merging per-split softmax states with the kernels' own functions
// gives the single-pass CPU reference, also when a sequence ends inside a split or before it.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "ekv/compressed/decode_reference.hpp"
#include "ekv/cuda/split_softmax.hpp"

namespace ekv::cuda {
namespace {

TEST(SplitSoftmax, SplitsCoverEachSequenceOnce) {
  EXPECT_EQ(splits_for(1), 1);
  EXPECT_EQ(splits_for(kSplitTokens), 1);
  EXPECT_EQ(splits_for(kSplitTokens + 1), 2);
  EXPECT_EQ(splits_for(32768), 32768 / kSplitTokens);
  for (int max_context : {1, 511, 512, 513, 1500, 4096})
    for (int length : {1, max_context / 2 + 1, max_context}) {
      std::vector<int> seen(std::size_t(max_context), 0);
      for (int s = 0; s < splits_for(max_context); ++s) {
        const SplitRange r = split_range(s, length);
        EXPECT_LE(r.begin, r.end);
        EXPECT_LE(r.end - r.begin, kSplitTokens);
        for (int t = r.begin; t < r.end; ++t) ++seen[std::size_t(t)];
      }
      for (int t = 0; t < max_context; ++t)
        EXPECT_EQ(seen[std::size_t(t)], t < length ? 1 : 0) << "context " << max_context << " length " << length;
    }
  // Outputs, maxima and sums of every (sequence, head, split), in fp32.
  EXPECT_EQ(split_workspace_bytes(2, 3, 4, 5), sizeof(float) * 2 * 3 * 4 * (5 + 2));
}

// One head through the splits, as split_attention and combine_splits compute it.
std::vector<float> split_then_merge(const std::vector<float>& q, const std::vector<float>& keys,
                                    const std::vector<float>& values, int dim, int length, int max_context,
                                    float scale) {
  const int splits = splits_for(max_context);
  const auto count = static_cast<std::size_t>(splits);
  std::vector<float> max(count), sum(count), out(count * std::size_t(dim), 0.0f);
  for (int s = 0; s < splits; ++s) {
    const SplitRange r = split_range(s, length);
    float peak = -FLT_MAX;
    std::vector<float> logits;
    for (int t = r.begin; t < r.end; ++t) {
      float dot = 0;
      for (int i = 0; i < dim; ++i) dot += q[std::size_t(i)] * keys[std::size_t(t) * dim + i];
      logits.push_back(dot * scale);
      peak = std::max(peak, logits.back());
    }
    float total = 0;
    for (int t = r.begin; t < r.end; ++t) {
      const float w = split_exp(logits[std::size_t(t - r.begin)] - peak);
      total += w;
      for (int i = 0; i < dim; ++i) out[std::size_t(s) * dim + i] += w * values[std::size_t(t) * dim + i];
    }
    max[std::size_t(s)] = r.begin < r.end ? peak : -FLT_MAX;
    sum[std::size_t(s)] = r.begin < r.end ? total : 0.0f;
  }
  const float peak = merged_peak(max.data(), sum.data(), splits);
  float denominator = 0;
  for (int s = 0; s < splits; ++s) denominator += merge_weight(max[std::size_t(s)], sum[std::size_t(s)], peak) * sum[std::size_t(s)];
  std::vector<float> merged(std::size_t(dim), 0.0f);
  for (int i = 0; i < dim; ++i) {
    float numerator = 0;
    for (int s = 0; s < splits; ++s)
      if (sum[std::size_t(s)] > 0)
        numerator += merge_weight(max[std::size_t(s)], sum[std::size_t(s)], peak) * out[std::size_t(s) * dim + i];
    merged[std::size_t(i)] = denominator > 0 ? numerator / denominator : 0.0f;
  }
  return merged;
}

TEST(SplitSoftmax, MergedSplitsEqualTheSinglePassReference) {
  const int dim = 16, max_context = 1500;  // three splits, the last one short
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  auto draw = [&](std::size_t n, float sigma) {
    std::vector<float> v(n);
    for (float& x : v) x = sigma * normal(rng);
    return v;
  };
  // Large logits (σ 4 over 16 dims): the splits' maxima differ by far more than e^1, so a merge
  // that forgot its rescaling would be far off.
  const auto q = draw(dim, 4.0f), keys = draw(std::size_t(max_context) * dim, 1.0f),
             values = draw(std::size_t(max_context) * dim, 1.0f);
  const float scale = 0.25f;
  for (int length : {1, 300, kSplitTokens, kSplitTokens + 1, 1100, max_context}) {
    const std::vector<float> merged = split_then_merge(q, keys, values, dim, length, max_context, scale);
    std::vector<float> reference(static_cast<std::size_t>(dim));
    decode_head_reference(q.data(), {keys.data(), std::size_t(dim), dim}, nullptr, {},
                          {values.data(), std::size_t(dim), dim}, length, scale, reference.data());
    for (int i = 0; i < dim; ++i)
      EXPECT_NEAR(merged[std::size_t(i)], reference[std::size_t(i)], 1e-5f * (1 + std::abs(reference[std::size_t(i)])))
          << "length " << length << " dim " << i;
  }
}

}  // namespace
}  // namespace ekv::cuda
