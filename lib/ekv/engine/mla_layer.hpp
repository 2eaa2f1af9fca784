// One EliteKV attention layer as an MLA layer of DeepSeek's format (docs/method.md §11), in the
// layout both engines read (row-major [out, in], HF names in the comments):
//   q_proj             [H·(nope + n_rot), d]  per query head: its group's non-elite query rows
//                                              (ascending), then n_rot rotary rows, slot i as the
//                                              consecutive pair (2i, 2i+1)
//   kv_a_proj_with_mqa [kv_lora + n_rot, d]    s·A (zero rows up to kv_lora), then the slots' keys
//   kv_a_layernorm     [kv_lora]               w_n
//   kv_b_proj          [H·(nope + d_h), kv_lora] per query head: its group's B_k, then B_v, times 1/κ
//   o_proj             [d, H·d_h]              W_o
// The logit of query head h is query_scale · engine scale · (q_nope·k_nope + q_pe·k_pe), which
// equals EliteKV's s·(q_e·k_e + q_n·B_k c) when query_scale · engine scale = 1/sqrt(d_h):
// query_scale is folded into q_proj.
#pragma once

#include "ekv/engine/latent_norm.hpp"
#include "ekv/engine/slot_plan.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

struct MlaLayer {
  Matrix q;        // q_proj
  Matrix kv_a;     // kv_a_proj_with_mqa
  Vector kv_norm;  // kv_a_layernorm
  Matrix kv_b;     // kv_b_proj
  Matrix o;        // o_proj
  // With attention biases (Qwen2; empty otherwise, docs/method.md §10): the query bias in
  // q_proj's row layout (times query_scale), the elite key bias on kv_a's slot rows (zero on the
  // latent's: A has none), and W_o [b_v of each head's group], which the value bias amounts to.
  Vector q_bias, kv_a_bias, o_bias;
};

// `w` an EliteKV layer (k_rope_proj, kv_a_proj, k_b_proj, v_b_proj, and their biases) of `config`.
MlaLayer mla_layer(const LayerWeights& w, const ModelConfig& config, const SlotPlan& plan, int layer,
                   const LatentNorm& norm, double query_scale);

}  // namespace ekv
