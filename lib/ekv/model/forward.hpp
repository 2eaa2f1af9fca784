// The LLaMA decoder in fp32, layer-streaming: every sequence of a batch passes layer l before
// layer l+1's weights are loaded, so one layer's weights are resident at a time.
//
// Two extension points: a capture hook that sees each layer's attention input x (after
// RMSNorm) and q/k/v, and a per-layer attention implementation that can be swapped (the
// compressed EliteKV attention plugs in there: compressed/compressed_forward.hpp installs it for a
// model written by ekv-export; model/ knows nothing of it).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "ekv/model/model_source.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

// Rows are tokens with the sequences stacked: row = sequence * seq_len + position.
struct LayerActivations {
  int layer;
  int first_sequence;  // index of the first sequence of this micro-batch in the whole batch
  int batch;           // sequences in this micro-batch
  int seq_len;
  const Matrix& x;  // [B*S, d]       attention input after the layer's RMSNorm
  const Matrix& q;  // [B*S, H*d_h]   before RoPE
  const Matrix& k;  // [B*S, G*d_h]   before RoPE
  const Matrix& v;  // [B*S, G*d_h]
  const LayerWeights& weights;  // the layer's, as loaded for this pass
};
using CaptureHook = std::function<void(const LayerActivations&)>;

class AttentionImpl {
 public:
  virtual ~AttentionImpl() = default;
  // x: [B*S, d] normed input of `layer` for sequences [first_sequence, first_sequence + B); returns the attention block's output [B*S, d] (after
  // W_o). Calls `capture` (when set) with the layer's activations.
  virtual Matrix forward(const LayerWeights& weights, const Matrix& x, int first_sequence, int batch, int seq_len,
                         const CaptureHook& capture) = 0;
};

// Ordinary causal grouped-query attention with RoPE on every chunk.
class StandardAttention final : public AttentionImpl {
 public:
  StandardAttention(const ModelConfig& config, std::shared_ptr<const RopeTable> rope);
  Matrix forward(const LayerWeights& weights, const Matrix& x, int first_sequence, int batch, int seq_len,
                 const CaptureHook& capture) override;

 private:
  ModelConfig config_;
  std::shared_ptr<const RopeTable> rope_;
};

// Causal softmax attention for one (sequence, query head): q, k [S, d_h] (rotated), v [S, d_h].
// Writes out [S, d_h]. Masked pairs never enter the softmax (no -inf arithmetic).
void causal_attention_head(const float* q, const float* k, const float* v, int seq_len, int head_dim,
                           Eigen::Index row_stride_q, Eigen::Index row_stride_kv, float scale, float* out,
                           Eigen::Index row_stride_out);

// The general form: q [S, dq] at positions first_position + s attends the keys k [T, dq] at
// positions t ≤ first_position + s, with values v [T, dv]; out [S, dv]. Strided row views allow
// head slices of wider matrices.
using ConstRows = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
using Rows = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
void causal_attention(const ConstRows& q, const ConstRows& k, const ConstRows& v, Eigen::Index first_position,
                      float scale, Rows out);

void rms_norm(const Matrix& x, const Vector& weight, double eps, Matrix& out);

// The layer's SwiGLU MLP on normed inputs x [N, d]: out = W_down (silu(W_gate x) ⊙ W_up x).
void feed_forward(const LayerWeights& weights, const Matrix& x, Matrix& out);

class Forward {
 public:
  explicit Forward(const ModelSource& model);

  const ModelConfig& config() const { return model_.config(); }
  void set_attention(int layer, std::shared_ptr<AttentionImpl> attention);  // nullptr: standard
  // The layer's attention: the one installed, else the standard one (an EliteKV model must have
  // its CompressedAttention installed: install_compressed_attention in compressed/).
  std::shared_ptr<AttentionImpl> attention(int layer) const;
  std::shared_ptr<const RopeTable> rope() const;
  void set_capture(CaptureHook capture) { capture_ = std::move(capture); }
  // Keep every layer's weights after first use (small models, repeated batches).
  void set_keep_weights(bool keep) { keep_weights_ = keep; }
  // Within a layer, process at most this many sequences at a time (0: all): bounds the
  // activations (q/k/v, FFN intermediates) while the residual stream of all sequences stays.
  void set_micro_batch(int sequences) { micro_batch_ = sequences; }

  // tokens: [batch, seq_len] row-major. Returns the final hidden states after the final
  // norm, [batch*seq_len, d]. With last_layer < L-1 it stops after that layer and returns
  // the residual stream there (no final norm): enough for capturing layers [0, last_layer].
  Matrix hidden_states(std::span<const std::int32_t> tokens, int batch, int seq_len, int last_layer = -1);
  // Logits of `rows` rows of hidden starting at `row0`: [rows, vocab].
  Matrix logits(const Matrix& hidden, Eigen::Index row0, Eigen::Index rows);

 private:
  const LayerWeights& layer_weights(int layer, LayerWeights& scratch);

  const ModelSource& model_;
  GlobalWeights globals_;  // the output head of an untied model is loaded by the first logits()
  std::shared_ptr<const RopeTable> rope_;
  std::shared_ptr<AttentionImpl> standard_;
  std::vector<std::shared_ptr<AttentionImpl>> attention_;
  std::vector<LayerWeights> kept_;
  bool keep_weights_ = false;
  int micro_batch_ = 0;
  CaptureHook capture_;
};

}  // namespace ekv
