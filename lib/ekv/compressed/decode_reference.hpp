// The CPU reference of one decode step for one query head, in the form the GPU kernels take
// (lib/ekv/cuda): logit_t = scale (q_a · keys_a[t] + q_b · keys_b[t]), softmax over t < T in
// fp64, out = Σ_t p_t values[t]. Compressed cache: (q_e, k_e) and (q̃, c) with values c;
// full cache: (q, k) with values v. Rows are strided views into cache tensors.
#pragma once

#include <cstddef>

namespace ekv {

struct HeadRows {
  const float* data = nullptr;  // row t starts at data + t * stride
  std::size_t stride = 0;
  int width = 0;
};

void decode_head_reference(const float* q_a, HeadRows keys_a, const float* q_b, HeadRows keys_b, HeadRows values,
                           int tokens, float scale, float* out);

}  // namespace ekv
