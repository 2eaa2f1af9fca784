#include "ekv/model/forward.hpp"

#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/model/tensor_names.hpp"

namespace ekv {

void rms_norm(const Matrix& x, const Vector& weight, double eps, Matrix& out) {
  out.resize(x.rows(), x.cols());
#pragma omp parallel for schedule(static)
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    double sum = 0;
    for (Eigen::Index c = 0; c < x.cols(); ++c) sum += double(x(r, c)) * x(r, c);
    const float inverse = float(1.0 / std::sqrt(sum / double(x.cols()) + eps));
    for (Eigen::Index c = 0; c < x.cols(); ++c) out(r, c) = weight[c] * (x(r, c) * inverse);
  }
}

void causal_attention(const ConstRows& Q, const ConstRows& K, const ConstRows& V, Eigen::Index first_position,
                      float scale, Rows O) {
  const Eigen::Index queries = Q.rows(), keys = K.rows();
  EKV_CHECK(first_position + queries <= keys, "attention: ", queries, " queries from position ", first_position,
            " need ", first_position + queries, " keys, found ", keys);
  EKV_CHECK(scale > 0, "attention: softmax scale ", scale, " must be positive");
  // The plain product, scaled in the softmax: Eigen evaluates `(Q * Kᵀ) * scale` coefficient by
  // coefficient, not as a GEMM (8 % of ekv-jlrd's refit stream went there).
  Matrix scores(queries, keys);  // [S, T]; row s uses keys [0, first_position + s]
  scores.noalias() = Q * K.transpose();
  for (Eigen::Index i = 0; i < queries; ++i) {
    float* row = scores.row(i).data();
    const Eigen::Index last = first_position + i;
    float peak = row[0];
    for (Eigen::Index j = 1; j <= last; ++j) peak = std::max(peak, row[j]);
    double total = 0;
    for (Eigen::Index j = 0; j <= last; ++j) {
      row[j] = std::exp((row[j] - peak) * scale);
      total += row[j];
    }
    const float inverse = float(1.0 / total);
    for (Eigen::Index j = 0; j <= last; ++j) row[j] *= inverse;
    for (Eigen::Index j = last + 1; j < keys; ++j) row[j] = 0.0f;
  }
  O.noalias() = scores * V;
}

void causal_attention_head(const float* q, const float* k, const float* v, int seq_len, int head_dim,
                           Eigen::Index row_stride_q, Eigen::Index row_stride_kv, float scale, float* out,
                           Eigen::Index row_stride_out) {
  causal_attention(ConstRows(q, seq_len, head_dim, Eigen::OuterStride<>(row_stride_q)),
                   ConstRows(k, seq_len, head_dim, Eigen::OuterStride<>(row_stride_kv)),
                   ConstRows(v, seq_len, head_dim, Eigen::OuterStride<>(row_stride_kv)), 0, scale,
                   Rows(out, seq_len, head_dim, Eigen::OuterStride<>(row_stride_out)));
}

StandardAttention::StandardAttention(const ModelConfig& config, std::shared_ptr<const RopeTable> rope)
    : config_(config), rope_(std::move(rope)) {}

Matrix StandardAttention::forward(const LayerWeights& w, const Matrix& x, int first_sequence, int batch,
                                  int seq_len, const CaptureHook& capture) {
  const int H = config_.heads, G = config_.kv_heads, dh = config_.head_dim, g = config_.group_size();
  EKV_CHECK(seq_len <= rope_->positions(), "sequence length ", seq_len, " exceeds the model context ",
            rope_->positions());
  Matrix q, k, v;
  linear(x, w.wq, w.bq, q);  // [B*S, H*d_h]
  linear(x, w.wk, w.bk, k);  // [B*S, G*d_h]
  linear(x, w.wv, w.bv, v);  // [B*S, G*d_h]
  if (capture) capture(LayerActivations{w.index, first_sequence, batch, seq_len, x, q, k, v, w});
  // RoPE on every head at its position (rows of a sequence are positions 0..S-1).
#pragma omp parallel for schedule(static)
  for (Eigen::Index r = 0; r < q.rows(); ++r) {
    const Eigen::Index position = r % seq_len;
    for (int h = 0; h < H; ++h)
      rotate_half_inplace(q.row(r).data() + h * dh, dh / 2, rope_->cos(position), rope_->sin(position));
    for (int j = 0; j < G; ++j)
      rotate_half_inplace(k.row(r).data() + j * dh, dh / 2, rope_->cos(position), rope_->sin(position));
  }
  Matrix attended(x.rows(), Eigen::Index(H) * dh);  // [B*S, H*d_h]
  const float scale = float(1.0 / std::sqrt(double(dh)));
#pragma omp parallel for schedule(dynamic) collapse(2)
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < H; ++h) {
      const Eigen::Index row0 = Eigen::Index(b) * seq_len;
      const int j = h / g;  // the KV head of query head h
      causal_attention_head(q.row(row0).data() + h * dh, k.row(row0).data() + j * dh, v.row(row0).data() + j * dh,
                            seq_len, dh, q.cols(), k.cols(), scale, attended.row(row0).data() + h * dh,
                            attended.cols());
    }
  Matrix out;
  linear(attended, w.wo, out);  // [B*S, d]
  return out;
}

Forward::Forward(const ModelSource& model)
    : model_(model),
      globals_{model.matrix(kEmbeddingName), model.vector(kFinalNormName), Matrix()},
      rope_(std::make_shared<RopeTable>(rope_frequencies(model.config()), model.config().context)),
      standard_(std::make_shared<StandardAttention>(model.config(), rope_)),
      attention_(std::size_t(model.config().layers)) {}

std::shared_ptr<AttentionImpl> Forward::attention(int layer) const {
  EKV_CHECK(layer >= 0 && layer < config().layers, "attention: layer ", layer, " out of range");
  if (attention_[std::size_t(layer)]) return attention_[std::size_t(layer)];
  // The standard attention would read an EliteKV model's weights wrongly: its caller installs
  // the compressed one (compressed/compressed_forward.hpp).
  EKV_CHECK(!config().elitekv.enabled(), "layer ", layer, " of an EliteKV model has no attention installed: ",
            "call install_compressed_attention() (compressed/compressed_forward.hpp) on its Forward");
  return standard_;
}

void Forward::set_attention(int layer, std::shared_ptr<AttentionImpl> attention) {
  EKV_CHECK(layer >= 0 && layer < config().layers, "set_attention: layer ", layer, " out of range");
  attention_[std::size_t(layer)] = std::move(attention);
}

std::shared_ptr<const RopeTable> Forward::rope() const { return rope_; }

const LayerWeights& Forward::layer_weights(int layer, LayerWeights& scratch) {
  if (!keep_weights_) return scratch = model_.layer(layer);
  if (kept_.empty()) kept_.resize(std::size_t(config().layers));
  LayerWeights& kept = kept_[std::size_t(layer)];
  if (kept.wq.size() == 0) kept = model_.layer(layer);
  return kept;
}

Matrix Forward::hidden_states(std::span<const std::int32_t> tokens, int batch, int seq_len, int last_layer) {
  const ModelConfig& c = config();
  EKV_CHECK(batch > 0 && seq_len > 0 && tokens.size() == std::size_t(batch) * std::size_t(seq_len),
            "forward: ", tokens.size(), " tokens do not form ", batch, " sequences of ", seq_len);
  if (last_layer < 0) last_layer = c.layers - 1;
  EKV_CHECK(last_layer < c.layers, "forward: last layer ", last_layer, " out of range");
  Matrix hidden(Eigen::Index(tokens.size()), c.hidden);  // [B*S, d] residual stream
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    EKV_CHECK(tokens[t] >= 0 && tokens[t] < c.vocab, "forward: token id ", tokens[t], " outside the vocabulary of ",
              c.vocab);
    hidden.row(Eigen::Index(t)) = globals_.embedding.row(tokens[t]);
  }
  const int step = micro_batch_ > 0 ? std::min(micro_batch_, batch) : batch;
  Matrix part, normed, mlp_out;
  LayerWeights scratch;
  for (int l = 0; l <= last_layer; ++l) {
    const LayerWeights& w = layer_weights(l, scratch);
    AttentionImpl& attention = *this->attention(l);
    for (int first = 0; first < batch; first += step) {
      const int count = std::min(step, batch - first);
      const Eigen::Index row0 = Eigen::Index(first) * seq_len, rows = Eigen::Index(count) * seq_len;
      part = hidden.middleRows(row0, rows);  // [b*S, d]
      rms_norm(part, w.attn_norm, c.norm_eps, normed);
      part += attention.forward(w, normed, first, count, seq_len, capture_);
      rms_norm(part, w.ffn_norm, c.norm_eps, normed);
      feed_forward(w, normed, mlp_out);
      part += mlp_out;
      hidden.middleRows(row0, rows) = part;
    }
  }
  if (last_layer < c.layers - 1) return hidden;
  rms_norm(hidden, globals_.final_norm, c.norm_eps, normed);
  return normed;
}

void feed_forward(const LayerWeights& w, const Matrix& x, Matrix& out) {
  Matrix gate, up;
  linear(x, w.w_gate, gate);  // [N, ffn]
  linear(x, w.w_up, up);      // [N, ffn]
#pragma omp parallel for schedule(static)
  for (Eigen::Index r = 0; r < gate.rows(); ++r)
    for (Eigen::Index i = 0; i < gate.cols(); ++i) {
      const float a = gate(r, i);
      gate(r, i) = a / (1.0f + std::exp(-a)) * up(r, i);  // SwiGLU: silu(gate) * up
    }
  linear(gate, w.w_down, out);
}

Matrix Forward::logits(const Matrix& hidden, Eigen::Index row0, Eigen::Index rows) {
  if (!config().tied_embeddings && globals_.output.size() == 0) globals_.output = model_.matrix(kOutputName);
  const Matrix& head = config().tied_embeddings ? globals_.embedding : globals_.output;
  Matrix slice = hidden.middleRows(row0, rows);
  Matrix out;
  linear(slice, head, out);  // [rows, vocab]
  return out;
}

}  // namespace ekv
