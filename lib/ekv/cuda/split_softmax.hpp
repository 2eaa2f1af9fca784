// The split-KV (flash-decoding) arithmetic of the decode kernels, in plain C++ that compiles for
// host and device, so the CPU tests check the very code the kernels run: which tokens a split
// covers, how many splits and how much workspace a shape needs, and how the splits' partial
// softmax states merge into one. A split s of a head keeps m_s (its largest logit), l_s =
// Σ e^{logit − m_s} and o_s = Σ e^{logit − m_s} v; the head's output is
//   Σ_s e^{m_s − M} o_s / Σ_s e^{m_s − M} l_s,   M = max m_s over the splits that saw tokens.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstddef>

#ifdef __CUDACC__
#define EKV_HOST_DEVICE __host__ __device__
#else
#define EKV_HOST_DEVICE
#endif

namespace ekv::cuda {

// Context tokens per split; the number of splits is ceil(max_context / split_tokens).
inline constexpr int kSplitTokens = 512;

struct SplitRange {
  int begin = 0, end = 0;  // tokens [begin, end); empty when the sequence ends before the split
};

EKV_HOST_DEVICE inline int splits_for(int max_context) { return (max_context + kSplitTokens - 1) / kSplitTokens; }

EKV_HOST_DEVICE inline SplitRange split_range(int split, int length) {
  const int begin = split * kSplitTokens;
  const int end = length < begin + kSplitTokens ? length : begin + kSplitTokens;
  return {begin, end > begin ? end : begin};
}

// Partial outputs [B, H, splits, dv], then maxima and sums [B, H, splits], all fp32.
inline std::size_t split_workspace_bytes(int batch, int heads, int splits, int dv) {
  return sizeof(float) * std::size_t(batch) * heads * splits * (std::size_t(dv) + 2);
}

EKV_HOST_DEVICE inline float split_exp(float x) {
#ifdef __CUDA_ARCH__
  return __expf(x);
#else
  return std::exp(x);
#endif
}

// M: the largest maximum among the splits that saw tokens (l_s > 0); −FLT_MAX when none did.
EKV_HOST_DEVICE inline float merged_peak(const float* max, const float* sum, int splits) {
  float peak = -FLT_MAX;
  for (int s = 0; s < splits; ++s)
    if (sum[s] > 0 && max[s] > peak) peak = max[s];
  return peak;
}

// e^{m_s − M} for a split that saw tokens, 0 for an empty one (its m_s is meaningless).
EKV_HOST_DEVICE inline float merge_weight(float max, float sum, float peak) {
  return sum > 0 ? split_exp(max - peak) : 0.0f;
}

}  // namespace ekv::cuda
