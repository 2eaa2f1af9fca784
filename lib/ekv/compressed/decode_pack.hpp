// The decode pack (ekv.type "decode-pack", format version 1), written by ekv-export: per layer
// what an absorbed decode kernel needs (docs/method.md §6), with the query side pre-multiplied.
//
//   /layers/<l>/wq_elite     f32 [H, 2r, d]    elite query rows of head h (its group's chunks, k_e layout)
//   /layers/<l>/wq_absorbed  f32 [H, d_kv, d]  W̃_q^h = B_k^{jᵀ} W_qn^h, so q̃^h = W̃_q^h x
//   /layers/<l>/wk_rope      f32 [G·2r, d]     elite key rows (k_e before RoPE)
//   /layers/<l>/kv_a         f32 [d_kv, d]     A (c = A x)
//   /layers/<l>/b_v          f32 [G·d_h, d_kv] B_v (o^h = B_v^j o_lat^h; not folded into W_o)
//   /layers/<l>/wo           f32 [d, H·d_h]
//   /layers/<l>/elite_chunks i32 [G, r]
//   /layers/<l>/rope_cos, rope_sin  f32 [P, G, r]  cos and sin of m·ω_c (angles in fp64), m < P
// A model with attention biases (docs/method.md §10) adds, per layer:
//   /layers/<l>/bq_elite     f32 [H, 2r]       elite rows of the query bias
//   /layers/<l>/bq_absorbed  f32 [H, d_kv]     B_k^{jᵀ} b_qn^h (so q̃^h = W̃_q^h x + this)
//   /layers/<l>/bk_rope      f32 [G·2r]        elite key bias (before RoPE)
//   /layers/<l>/bo           f32 [d]           W_o times each head's value bias: the value
//                                              bias leaves attention unchanged (Σ p = 1)
// Root attributes: heads, kv_heads, head_dim, hidden, r, layers, positions (P), cache_dtype
// (the dtype the kernel stores k_e and c in), softmax_scale.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ekv/io/artifact.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

inline constexpr std::int64_t kDecodePackFormatVersion = 1;

struct PackHeader {
  int heads = 0, kv_heads = 0, head_dim = 0, hidden = 0, r = 0, layers = 0;
  std::int64_t positions = 0;
  std::string cache_dtype;
  double softmax_scale = 0;
};

struct PackLayer {
  int rank = 0;                    // d_kv
  std::vector<Matrix> wq_elite;     // [H] of [2r, d]
  std::vector<Matrix> wq_absorbed;  // [H] of [d_kv, d]
  Matrix wk_rope, kv_a, b_v, wo;
  // Empty when the model has no attention biases.
  std::vector<Vector> bq_elite, bq_absorbed;  // [H] of [2r], [d_kv]
  Vector bk_rope, bo;                         // [G·2r], [d]
  std::vector<std::vector<int>> elite;    // [G][r]
  std::vector<float> rope_cos, rope_sin;  // [P][G][r]
};

// Writes the pack one layer at a time, in any order: ekv-export hands it each layer it builds for
// model.safetensors, so a layer is built once and one is resident. The model fingerprint, known
// only once the checkpoint is written, comes at commit. config: the compressed model's.
class DecodePackWriter {
 public:
  DecodePackWriter(const ModelConfig& config, std::int64_t positions, std::string cache_dtype,
                   const std::filesystem::path& path, const std::vector<ArtifactInput>& inputs);
  void add_layer(int layer, const LayerWeights& weights);  // each layer once
  void commit(const std::string& model_fingerprint);        // after every layer

 private:
  ModelConfig config_;
  std::int64_t positions_;
  std::string cache_dtype_;
  RopeTable rope_;
  ArtifactWriter writer_;
  std::vector<bool> added_;
};

// The whole pack in layer order; layer(l): the compressed weights (e.g. an exported model's).
void write_decode_pack(const ModelConfig& config, const std::function<LayerWeights(int)>& layer,
                       std::int64_t positions, const std::string& cache_dtype, const std::filesystem::path& path,
                       const std::string& model_fingerprint, const std::vector<ArtifactInput>& inputs);

PackHeader read_pack_header(const ArtifactReader& pack);
PackLayer read_pack_layer(const ArtifactReader& pack, const PackHeader& header, int layer);

// Absorbed decode from the pack alone, as a kernel does it: per appended token k_e (rotated
// with the pack's tables) and c = A x go to the sequence's cache, then per head
// logits = s(q_e·k_e + (W̃_q x)·c), o_lat = softmax · c, out = W_o [B_v o_lat]. Ignores the
// LayerWeights it is given: the pack is the whole truth. Appends always (decoding only).
class PackAttention final : public AttentionImpl {
 public:
  PackAttention(PackHeader header, PackLayer layer, int sequences);
  Matrix forward(const LayerWeights& ignored, const Matrix& x, int first_sequence, int batch, int seq_len,
                 const CaptureHook& capture) override;

 private:
  PackHeader header_;
  PackLayer layer_;
  std::vector<Matrix> k_elite_, latent_;  // per sequence [T, G*2r], [T, d_kv]
};

}  // namespace ekv
