// The CPU reference of one decode step for one query head, in the form the GPU kernels take
// (lib/ekv/cuda): logit_t = scale (q_a · keys_a[t] + q_b · keys_b[t]), softmax over t < T in
// fp64, out = Σ_t p_t values[t]. Compressed cache: (q_e, k_e) and (q̃, c) with values c;
// full cache: (q, k) with values v. Rows are strided views into cache tensors. The batch forms
// below walk whole caches in the kernels' layouts: what ekv-cuda-verify compares each kernel to.
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

// Shapes of one batched decode step. Caches are [B, T_max, …] row-major fp32 (the values a
// kernel reads after converting its f16/bf16 cache); sequence b uses its first lengths[b] rows;
// query head h reads KV head h / (H / G).
struct DecodeBatchShape {
  int batch = 0, heads = 0, kv_heads = 0, max_context = 0;
  float scale = 1;
};

// Full cache: q [B, H, d_h] and k, v [B, T_max, G, d_h] (rotated), out [B, H, d_h].
void full_decode_reference(const DecodeBatchShape& shape, int head_dim, const float* q, const float* k,
                           const float* v, const int* lengths, float* out);

// Compressed cache: q_elite [B, H, 2r], q_latent [B, H, d_kv], k_elite [B, T_max, G, 2r]
// (rotated), latent [B, T_max, d_kv]; out [B, H, d_kv] is o_lat, before B_v.
void compressed_decode_reference(const DecodeBatchShape& shape, int r, int rank, const float* q_elite,
                                 const float* q_latent, const float* k_elite, const float* latent, const int* lengths,
                                 float* out);

}  // namespace ekv
