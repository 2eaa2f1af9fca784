#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>

#include "ekv/core/error.hpp"
#include "ekv/cuda/decode_attention.hpp"
#include "ekv/cuda/split_softmax.hpp"

namespace ekv::cuda {

namespace {

constexpr int kThreads = 128;

__device__ inline float to_float(__half x) { return __half2float(x); }
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// One kernel serves both caches. The logit of query head h at token t is
//   scale · (q_a · cache_a[t, group] + q_b · cache_b[t, group or 0]),
// and the value is values[t, group or 0]. Compressed: a = (q_e, k_e) per KV head, b = (q̃, c)
// shared, values = c. Full: a = (q, k) per KV head, no b, values = v per KV head.
struct SplitParams {
  int batch, heads, kv_heads, max_context, splits;
  float scale;
  const float* q_a;  // [B, H, da]
  int da;
  const void* cache_a;  // [B, T, G, da]
  const float* q_b;     // [B, H, db] (db may be 0)
  int db;
  const void* cache_b;  // [B, T, Gb, db]
  bool b_shared;        // Gb = 1 (the latent) instead of G
  const void* values;   // [B, T, Gv, dv]
  int dv;
  bool values_shared;
  const int* lengths;
  float* partial_out;  // [B, H, splits, dv] unnormalized
  float* partial_max;  // [B, H, splits]
  float* partial_sum;  // [B, H, splits]
};

__device__ float block_reduce(float value, float* scratch, bool is_max) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = is_max ? fmaxf(value, other) : value + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read by the previous reduction
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  float result = is_max ? -FLT_MAX : 0.0f;
  for (int w = 0; w < int(blockDim.x / 32); ++w) result = is_max ? fmaxf(result, scratch[w]) : result + scratch[w];
  return result;
}

template <class T>
__global__ void split_attention(SplitParams p) {
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int j = h / (p.heads / p.kv_heads);
  const int length = p.lengths[b];
  const SplitRange range = split_range(split, length);
  const int t0 = range.begin, t1 = range.end;
  extern __shared__ float shared[];
  float* q = shared;                       // [da + db]
  float* weights = q + p.da + p.db;        // [kSplitTokens]
  float* scratch = weights + kSplitTokens;  // [32]
  for (int i = threadIdx.x; i < p.da; i += blockDim.x) q[i] = p.q_a[(std::size_t(b) * p.heads + h) * p.da + i];
  for (int i = threadIdx.x; i < p.db; i += blockDim.x) q[p.da + i] = p.q_b[(std::size_t(b) * p.heads + h) * p.db + i];
  __syncthreads();

  const T* cache_a = static_cast<const T*>(p.cache_a);
  const T* cache_b = static_cast<const T*>(p.cache_b);
  const T* values = static_cast<const T*>(p.values);
  const int gb = p.b_shared ? 1 : p.kv_heads, jb = p.b_shared ? 0 : j;
  const int gv = p.values_shared ? 1 : p.kv_heads, jv = p.values_shared ? 0 : j;
  float local_max = -FLT_MAX;
  for (int t = t0 + int(threadIdx.x); t < t1; t += blockDim.x) {
    const std::size_t row = std::size_t(b) * p.max_context + t;
    const T* ka = cache_a + (row * p.kv_heads + j) * p.da;
    const T* kb = cache_b + (row * gb + jb) * p.db;
    float dot = 0;
    for (int i = 0; i < p.da; ++i) dot += q[i] * to_float(ka[i]);
    for (int i = 0; i < p.db; ++i) dot += q[p.da + i] * to_float(kb[i]);
    const float logit = dot * p.scale;
    weights[t - t0] = logit;
    local_max = fmaxf(local_max, logit);
  }
  const float peak = block_reduce(local_max, scratch, true);
  float local_sum = 0;
  for (int t = t0 + int(threadIdx.x); t < t1; t += blockDim.x) {
    const float w = split_exp(weights[t - t0] - peak);
    weights[t - t0] = w;
    local_sum += w;
  }
  const float total = block_reduce(local_sum, scratch, false);  // also orders the weights' writes

  const std::size_t slot = (std::size_t(b) * p.heads + h) * p.splits + split;
  for (int dim = threadIdx.x; dim < p.dv; dim += blockDim.x) {
    float acc = 0;
    for (int t = t0; t < t1; ++t)
      acc += weights[t - t0] * to_float(values[((std::size_t(b) * p.max_context + t) * gv + jv) * p.dv + dim]);
    p.partial_out[slot * p.dv + dim] = acc;
  }
  if (threadIdx.x == 0) {
    p.partial_max[slot] = t0 < t1 ? peak : -FLT_MAX;
    p.partial_sum[slot] = t0 < t1 ? total : 0.0f;
  }
}

// out[b, h, :] = Σ_s e^{m_s − M} o_s / Σ_s e^{m_s − M} l_s over the splits that saw tokens
// (split_softmax.hpp, the arithmetic the CPU tests check).
__global__ void combine_splits(int heads, int splits, int dv, const float* partial_out, const float* partial_max,
                               const float* partial_sum, float* out) {
  const int h = blockIdx.x, b = blockIdx.y;
  const std::size_t base = (std::size_t(b) * heads + h) * splits;
  const float* max = partial_max + base;
  const float* sum = partial_sum + base;
  const float peak = merged_peak(max, sum, splits);
  float denominator = 0;
  for (int s = 0; s < splits; ++s) denominator += merge_weight(max[s], sum[s], peak) * sum[s];
  for (int dim = threadIdx.x; dim < dv; dim += blockDim.x) {
    float numerator = 0;
    for (int s = 0; s < splits; ++s)
      if (sum[s] > 0) numerator += merge_weight(max[s], sum[s], peak) * partial_out[(base + s) * dv + dim];
    out[(std::size_t(b) * heads + h) * dv + dim] = denominator > 0 ? numerator / denominator : 0.0f;
  }
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  EKV_CHECK(status == cudaSuccess, what, ": ", cudaGetErrorString(status));
}

void launch(SplitParams p, CacheType type, void* workspace, float* out, void* stream_handle) {
  auto* stream = static_cast<cudaStream_t>(stream_handle);
  float* base = static_cast<float*>(workspace);
  const std::size_t slots = std::size_t(p.batch) * p.heads * p.splits;
  p.partial_out = base;
  p.partial_max = base + slots * p.dv;
  p.partial_sum = p.partial_max + slots;
  const dim3 grid(unsigned(p.splits), unsigned(p.heads), unsigned(p.batch));
  const std::size_t shared = sizeof(float) * (std::size_t(p.da + p.db) + kSplitTokens + 32);
  if (type == CacheType::f16)
    split_attention<__half><<<grid, kThreads, shared, stream>>>(p);
  else
    split_attention<__nv_bfloat16><<<grid, kThreads, shared, stream>>>(p);
  check_launch("split attention");
  combine_splits<<<dim3(unsigned(p.heads), unsigned(p.batch)), kThreads, 0, stream>>>(
      p.heads, p.splits, p.dv, p.partial_out, p.partial_max, p.partial_sum, out);
  check_launch("combine splits");
}

// The fields both caches share, shape-checked.
SplitParams common_params(int batch, int heads, int kv_heads, int max_context, float scale, const int* lengths) {
  EKV_CHECK(batch > 0 && heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && max_context > 0,
            "decode attention: batch ", batch, ", heads ", heads, ", KV heads ", kv_heads, ", context ", max_context,
            " is not a valid shape");
  SplitParams p{};
  p.batch = batch;
  p.heads = heads;
  p.kv_heads = kv_heads;
  p.max_context = max_context;
  p.splits = splits_for(max_context);
  p.scale = scale;
  p.lengths = lengths;
  return p;
}

}  // namespace

std::size_t compressed_decode_workspace(const CompressedDecodeArgs& a) {
  return split_workspace_bytes(a.batch, a.heads, splits_for(a.max_context), a.rank);
}

std::size_t full_decode_workspace(const FullDecodeArgs& a) {
  return split_workspace_bytes(a.batch, a.heads, splits_for(a.max_context), a.head_dim);
}

void compressed_decode(const CompressedDecodeArgs& a, void* workspace, void* stream) {
  SplitParams p = common_params(a.batch, a.heads, a.kv_heads, a.max_context, a.scale, a.lengths);
  p.q_a = a.q_elite;
  p.da = 2 * a.r;
  p.cache_a = a.k_elite;
  p.q_b = a.q_latent;
  p.db = a.rank;
  p.cache_b = a.latent;
  p.b_shared = true;
  p.values = a.latent;
  p.dv = a.rank;
  p.values_shared = true;
  launch(p, a.cache_type, workspace, a.out, stream);
}

void full_decode(const FullDecodeArgs& a, void* workspace, void* stream) {
  SplitParams p = common_params(a.batch, a.heads, a.kv_heads, a.max_context, a.scale, a.lengths);
  p.q_a = a.q;
  p.da = a.head_dim;
  p.cache_a = a.k;
  p.q_b = a.q;  // unused: db = 0
  p.db = 0;
  p.cache_b = a.k;
  p.b_shared = false;
  p.values = a.v;
  p.dv = a.head_dim;
  p.values_shared = false;
  launch(p, a.cache_type, workspace, a.out, stream);
}

}  // namespace ekv::cuda
