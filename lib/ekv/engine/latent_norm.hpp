// The latent RMSNorm of an MLA engine, made to cost nothing (docs/method.md §11).
//
// MLA engines normalise the cached latent: c ↦ w_n · c / sqrt(mean(c²) + eps) (llama.cpp's
// attn_kv_a_norm, transformers' kv_a_layernorm); EliteKV has no such norm. Scaling the latent
// by a small s (folded into the down-projection A) makes mean((s c)²) ≪ eps, where the norm is
// linear: w_n · s · c / sqrt(eps) = κ c with κ = s · w_n / sqrt(eps), and the up-projections
// are divided by κ. The relative error is ≤ mean((s c)²) / (2 eps).
//
// s needs no data: the attention input is x = RMSNorm(h) ⊙ w, so ‖x‖² < d · max w², and
// mean(c²) = ‖A x‖² / kv_lora_rank ≤ σ_max(A)² · d · max w² / kv_lora_rank for every token of
// every text. s and w_n are powers of two, so scaling A and writing w_n round nothing (also in
// bf16), and κ lies in [2^-½, 2^½] so the cached latent keeps the scale of c.
#pragma once

#include "ekv/core/matrix.hpp"

namespace ekv {

struct LatentNorm {
  double scale = 1;     // s, multiplies A
  double weight = 1;    // w_n, every element of the norm's weight
  double up_scale = 1;  // 1/κ, multiplies B_k and B_v
  double bound = 0;     // the bound on mean(c²) that s was chosen from
  double max_relative_error = 0;  // bound · s² / (2 eps): the norm's largest departure from κ c
};

inline constexpr double kLinearNormTolerance = 1.0 / (1 << 30);

// The scales for any vector whose mean square is at most `bound`: mean((s v)²) ≤ tolerance · eps.
LatentNorm linear_rms_norm(double bound, double eps, double tolerance = kLinearNormTolerance);

// `a` [d_kv, d], `attn_norm` [d] the layer's input RMSNorm weight, `kv_lora_rank` ≥ d_kv the
// latent's width in the engine (padded with zeros), `eps` the norm's epsilon in the engine.
LatentNorm linear_latent_norm(const Matrix& a, const Vector& attn_norm, int kv_lora_rank, double eps,
                              double tolerance = kLinearNormTolerance);

// A bound on mean(x²) over the d + 1 values [x; 1] of an attention input x = RMSNorm(h) ⊙ w:
// the query's low-rank path that carries a query bias through an engine (hf_deepseek_export).
double input_with_one_bound(const Vector& attn_norm);

}  // namespace ekv
