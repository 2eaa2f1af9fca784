// Row layouts of W_q and W_k (docs/method.md §2). ekv works in the Hugging Face rotate_half layout:
// RoPE chunk c of a head pairs dims (c, c + d_h/2). llama.cpp's converter stores GGUF rows
// interleaved, chunk c as dims (2c, 2c+1); these convert between the two, per head.
#pragma once

#include <span>

namespace ekv {

// rows = n_heads * head_dim, each row `cols` floats; permutes the rows in place.
void gguf_to_hf_rope_rows(std::span<float> weights, int n_heads, int head_dim, int cols);
void hf_to_gguf_rope_rows(std::span<float> weights, int n_heads, int head_dim, int cols);

}  // namespace ekv
