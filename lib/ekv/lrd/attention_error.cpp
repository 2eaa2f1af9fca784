#include "ekv/lrd/attention_error.hpp"

#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/linear.hpp"

namespace ekv {

namespace {
// Rotates the chosen chunks of every head in place, row t at position t.
void rotate_chunks(Matrix& a, int heads, int head_dim, const std::vector<std::vector<int>>& chunks_of_head,
                   int group, const RopeTable& rope) {
  const int half = head_dim / 2;
  for (Eigen::Index t = 0; t < a.rows(); ++t)
    for (int h = 0; h < heads; ++h) {
      float* head = a.row(t).data() + h * head_dim;
      const float* cs = rope.cos(t);
      const float* sn = rope.sin(t);
      for (int c : chunks_of_head[std::size_t(h / group)]) {
        const float x1 = head[c], x2 = head[c + half];
        head[c] = x1 * cs[c] - x2 * sn[c];
        head[c + half] = x2 * cs[c] + x1 * sn[c];
      }
    }
}
}  // namespace

SequenceOutputs attention_outputs(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                                  const JointLayout& layout, const LowRank& f, const float* x_original,
                                  const float* x_compressed, int seq_len, const RopeTable& rope) {
  const Matrix x = Eigen::Map<const Matrix>(x_original, seq_len, c.hidden);
  OriginalProjections original;
  linear(x, w.wq, w.bq, original.q);
  linear(x, w.wk, w.bk, original.k);
  linear(x, w.wv, w.bv, original.v);
  return attention_outputs(w, c, elite, layout, f, x_original, x_compressed, std::move(original), seq_len, rope, true);
}

SequenceOutputs attention_outputs(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                                  const JointLayout& layout, const LowRank& f, const float* x_original,
                                  const float* x_compressed, OriginalProjections original, int seq_len,
                                  const RopeTable& rope, bool logit_sums) {
  const int H = c.heads, G = c.kv_heads, dh = c.head_dim, g = c.group_size(), d = c.hidden;
  EKV_CHECK(original.q.rows() == seq_len && original.q.cols() == H * dh && original.k.rows() == seq_len &&
                original.k.cols() == G * dh && original.v.rows() == seq_len && original.v.cols() == G * dh,
            "attention outputs: projections of ", original.q.rows(), " rows for a sequence of ", seq_len);
  std::vector<std::vector<int>> all(static_cast<std::size_t>(G));
  for (auto& chunks : all)
    for (int ch = 0; ch < dh / 2; ++ch) chunks.push_back(ch);
  const Matrix a = f.a.cast<float>(), b = f.b.cast<float>();
  const float scale = float(1.0 / std::sqrt(double(dh)));
  Matrix& q = original.q;
  Matrix& k = original.k;
  const Matrix& v = original.v;
  Matrix latent, rebuilt, q2, k2;
  if (x_compressed == x_original) {
    q2 = q;
    k2 = k;
    linear(Eigen::Map<const Matrix>(x_original, seq_len, d), a, latent);  // [S, rank]  c = A x
  } else {
    const Matrix x2 = Eigen::Map<const Matrix>(x_compressed, seq_len, d);
    linear(x2, w.wq, w.bq, q2);
    linear(x2, w.wk, w.bk, k2);  // only its elite dims are used
    linear(x2, a, latent);
  }
  linear(latent, b, rebuilt);  // [S, rows]  B c: non-elite keys, then values
  Matrix v2(v.rows(), v.cols());
  // Biases (docs/method.md §10): the value bias is the compressed model's too (v_b_proj's). The
  // compressed model drops the non-elite key bias; adding it back here shifts each query's
  // logits by one constant, which softmax ignores, so the outputs are exactly the compressed
  // model's while the logit error leaves out a shift that changes nothing.
  for (std::size_t i = 0; i < layout.rows.size(); ++i) {
    const auto& row = layout.rows[i];
    const Eigen::Index column = row.head * dh + row.dim;
    const Vector& bias = row.key ? w.bk : w.bv;
    (row.key ? k2 : v2).col(column) = rebuilt.col(Eigen::Index(i)).array() + (bias.size() ? bias[column] : 0.0f);
  }
  rotate_chunks(q, H, dh, all, g, rope);
  rotate_chunks(k, G, dh, all, 1, rope);
  rotate_chunks(q2, H, dh, elite, g, rope);
  rotate_chunks(k2, G, dh, elite, 1, rope);
  SequenceOutputs out;
  out.original.resize(seq_len, H * dh);
  out.compressed.resize(seq_len, H * dh);
  for (int h = 0; h < H; ++h) {
    const int j = h / g;
    if (logit_sums) {
      const Matrix l1 = q.middleCols(h * dh, dh) * k.middleCols(j * dh, dh).transpose();
      const Matrix l2 = q2.middleCols(h * dh, dh) * k2.middleCols(j * dh, dh).transpose();
      for (int m = 0; m < seq_len; ++m)
        for (int n = 0; n <= m; ++n) {
          const double diff = double(l2(m, n) - l1(m, n)) * scale;
          out.logit_diff += diff * diff;
          out.logit_norm += double(l1(m, n)) * l1(m, n) * scale * scale;
        }
    }
    causal_attention_head(q.col(h * dh).data(), k.col(j * dh).data(), v.col(j * dh).data(), seq_len, dh, q.cols(),
                          k.cols(), scale, out.original.col(h * dh).data(), out.original.cols());
    causal_attention_head(q2.col(h * dh).data(), k2.col(j * dh).data(), v2.col(j * dh).data(), seq_len, dh,
                          q2.cols(), k2.cols(), scale, out.compressed.col(h * dh).data(), out.compressed.cols());
  }
  return out;
}

AttentionError attention_error(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                               const JointLayout& layout, const LowRank& f, const std::vector<float>& x_all, int first,
                               int count, int seq_len, const RopeTable& rope, const Matrix* output_proj) {
  const std::size_t d = std::size_t(c.hidden);
  EKV_CHECK(first >= 0 && count > 0 && x_all.size() >= std::size_t(first + count) * seq_len * d,
            "attention error: sequences ", first, "..", first + count - 1, " requested, fewer stored");
  const Matrix& wo2 = output_proj ? *output_proj : w.wo;
  double logit_diff = 0, logit_norm = 0, out_diff = 0, out_norm = 0, block_diff = 0, block_norm = 0;
  for (int s = first; s < first + count; ++s) {
    const float* x = x_all.data() + std::size_t(s) * seq_len * d;
    const SequenceOutputs o = attention_outputs(w, c, elite, layout, f, x, x, seq_len, rope);
    logit_diff += o.logit_diff;
    logit_norm += o.logit_norm;
    out_diff += (o.compressed - o.original).cast<double>().squaredNorm();
    out_norm += o.original.cast<double>().squaredNorm();
    Matrix y, y2;
    linear(o.original, w.wo, y);
    linear(o.compressed, wo2, y2);
    block_diff += (y2 - y).cast<double>().squaredNorm();
    block_norm += y.cast<double>().squaredNorm();
  }
  return {std::sqrt(logit_diff / logit_norm), std::sqrt(out_diff / out_norm), std::sqrt(block_diff / block_norm)};
}

LowRank exact_factor(const MatrixD& joint) {
  return {MatrixD::Identity(joint.cols(), joint.cols()), joint};
}

}  // namespace ekv
