// fp32 weights of one decoder layer and of the model's ends, in the HF layout.
#pragma once

#include <Eigen/Core>

#include "ekv/core/matrix.hpp"

namespace ekv {

struct LayerWeights {
  int index = 0;
  Vector attn_norm;  // [d]
  Matrix wq;         // [H*d_h, d]
  Matrix wk;         // [G*d_h, d]
  Matrix wv;         // [G*d_h, d]
  Matrix wo;         // [d, H*d_h]
  // Biases, empty where the model has none (ModelConfig::attention_bias; docs/method.md §10).
  Vector bq;  // [H*d_h]
  Vector bk;  // [G*d_h]   original attention only
  Vector bv;  // [G*d_h]   the value bias; in an EliteKV layer, v_b_proj's bias
  // An EliteKV layer (ModelConfig::elitekv) has these instead of wk and wv (docs/method.md §6):
  Matrix wk_rope;  // [G*2r, d]        elite key rows; per head the r dims c, then the r dims c + d_h/2
  Matrix kv_a;     // [d_kv, d]        A: the shared latent c = A x
  Matrix k_b;      // [G(d_h-2r), d_kv] B_k: the non-elite key dims of each head, ascending
  Matrix v_b;      // [G*d_h, d_kv]     B_v
  Vector bk_rope;  // [G*2r]           elite rows of the key bias (empty without biases)
  Vector ffn_norm;   // [d]
  Matrix w_gate;     // [ffn, d]
  Matrix w_up;       // [ffn, d]
  Matrix w_down;     // [d, ffn]
};

struct GlobalWeights {
  Matrix embedding;   // [vocab, d]
  Vector final_norm;  // [d]
  Matrix output;      // [vocab, d]; empty when the model ties it to the embedding
};

}  // namespace ekv
