// Batched decode attention on the GPU, one new token per sequence (docs/method.md §6), for the
// compressed cache and, as the baseline, for an ordinary full K/V cache. Split-KV (flash-
// decoding): each block attends one (sequence, head, context split) with fp32 softmax and
// accumulation, then a combine kernel merges the splits by their max and sum.
//
// This is the first, correctness-first version: it has not yet run on a GPU (no GPU was lent
// when it was written). ekv-cuda-verify checks it against the CPU reference; tuning
// (tensor cores, sharing one read of the latent between the heads) waits for measurements.
#pragma once

#include <cstdint>

#include "ekv/cuda/split_softmax.hpp"  // kSplitTokens

namespace ekv::cuda {

enum class CacheType { f16, bf16 };

// Device pointers. Caches are [B, T_max, ...] row-major in `cache_type`; lengths[b] ≤ T_max.
struct CompressedDecodeArgs {
  int batch = 0, heads = 0, kv_heads = 0, r = 0, rank = 0, max_context = 0;
  float scale = 1;
  CacheType cache_type = CacheType::f16;
  const float* q_elite = nullptr;   // [B, H, 2r]    rotated elite query dims
  const float* q_latent = nullptr;  // [B, H, d_kv]  absorbed query q̃ = W̃_q x
  const void* k_elite = nullptr;    // [B, T_max, G, 2r]  post-RoPE
  const void* latent = nullptr;     // [B, T_max, d_kv]
  const int* lengths = nullptr;     // [B]
  float* out = nullptr;             // [B, H, d_kv]  o_lat (B_v and W_o follow)
};

struct FullDecodeArgs {
  int batch = 0, heads = 0, kv_heads = 0, head_dim = 0, max_context = 0;
  float scale = 1;
  CacheType cache_type = CacheType::f16;
  const float* q = nullptr;    // [B, H, d_h] rotated
  const void* k = nullptr;     // [B, T_max, G, d_h] rotated
  const void* v = nullptr;     // [B, T_max, G, d_h]
  const int* lengths = nullptr;
  float* out = nullptr;        // [B, H, d_h]
};

// Workspace bytes the calls below need (partial outputs, maxima and sums of every split).
std::size_t compressed_decode_workspace(const CompressedDecodeArgs& args);
std::size_t full_decode_workspace(const FullDecodeArgs& args);

// Asynchronous on `stream` (a cudaStream_t); throws ekv::Error on a launch error.
void compressed_decode(const CompressedDecodeArgs& args, void* workspace, void* stream);
void full_decode(const FullDecodeArgs& args, void* workspace, void* stream);

}  // namespace ekv::cuda
