#include "ekv/compressed/compressed_attention.hpp"

#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/model/linear.hpp"

namespace ekv {

void rotate_elite(float* head, const std::vector<int>& chunks, const RopeTable& rope, std::int64_t position) {
  const std::size_t r = chunks.size();
  const float* cs = rope.cos(position);
  const float* sn = rope.sin(position);
  for (std::size_t i = 0; i < r; ++i) {
    const int c = chunks[i];
    const float x1 = head[i], x2 = head[i + r];
    head[i] = x1 * cs[c] - x2 * sn[c];
    head[i + r] = x2 * cs[c] + x1 * sn[c];
  }
}

CompressedAttention::CompressedAttention(const ModelConfig& config, std::shared_ptr<const RopeTable> rope, int layer)
    : config_(config), rope_(std::move(rope)), layer_(layer) {
  EKV_CHECK(config_.elitekv.enabled() && layer >= 0 && layer < config_.layers, "compressed attention: layer ", layer,
            " of a model without EliteKV attention");
  elite_ = config_.elitekv.elite[std::size_t(layer)];
  for (int j = 0; j < config_.kv_heads; ++j) rest_.push_back(config_.elitekv.rest_dims(layer, j, config_.head_dim));
}

int CompressedAttention::cache_width() const {
  return 2 * config_.elitekv.r * config_.kv_heads + config_.elitekv.kv_rank[std::size_t(layer_)];
}

void CompressedAttention::start_cache(int sequences) {
  caches_.assign(std::size_t(sequences), SequenceCache());
}

void CompressedAttention::append(SequenceCache& cache, const Matrix& k_elite, const Matrix& latent, Eigen::Index row0,
                                 int count) {
  const Eigen::Index needed = cache.tokens + count;
  if (needed > cache.k_elite.rows()) {  // grow geometrically: decoding appends one row at a time
    const Eigen::Index capacity = std::max<Eigen::Index>(needed, 2 * cache.k_elite.rows());
    cache.k_elite.conservativeResize(capacity, k_elite.cols());
    cache.latent.conservativeResize(capacity, latent.cols());
  }
  cache.k_elite.middleRows(cache.tokens, count) = k_elite.middleRows(row0, count);
  cache.latent.middleRows(cache.tokens, count) = latent.middleRows(row0, count);
  cache.tokens = needed;
}

void CompressedAttention::attend(const LayerWeights& w, const Matrix& q, Eigen::Index row0, int count,
                                 std::int64_t first_position, const float* k_elite_data, const float* latent_data,
                                 std::int64_t keys, Matrix& out) const {
  const int H = config_.heads, G = config_.kv_heads, dh = config_.head_dim, g = config_.group_size();
  const int r = config_.elitekv.r, half = dh / 2, rest = dh - 2 * r, rank = int(w.kv_a.rows());
  const float scale = float(1.0 / std::sqrt(double(dh)));
  const Eigen::Map<const Matrix> k_elite(k_elite_data, keys, Eigen::Index(2) * r * G);
  const Eigen::Map<const Matrix> latent(latent_data, keys, rank);
  const Eigen::OuterStride<> q_stride(q.cols()), out_stride(out.cols());

  if (path_ == AttentionPath::reconstruct) {
    // Full keys and values from the cache: elite dims as cached (already rotated), the rest B_k c.
    const Matrix k_rest = latent * w.k_b.transpose();  // [T, G(d_h-2r)]
    const Matrix values = latent * w.v_b.transpose();  // [T, G d_h]
    Matrix keys_full(keys, Eigen::Index(G) * dh);
    for (int j = 0; j < G; ++j) {
      for (int i = 0; i < r; ++i) {
        const int c = elite_[std::size_t(j)][std::size_t(i)];
        keys_full.col(j * dh + c) = k_elite.col(j * 2 * r + i);
        keys_full.col(j * dh + c + half) = k_elite.col(j * 2 * r + r + i);
      }
      for (int m = 0; m < rest; ++m) keys_full.col(j * dh + rest_[std::size_t(j)][std::size_t(m)]) = k_rest.col(j * rest + m);
    }
    Matrix queries = q.middleRows(row0, count);  // RoPE on the elite chunks only
    for (int s = 0; s < count; ++s) {
      const float* cs = rope_->cos(first_position + s);
      const float* sn = rope_->sin(first_position + s);
      for (int h = 0; h < H; ++h) {
        float* head = queries.row(s).data() + h * dh;
        for (int c : elite_[std::size_t(h / g)]) {
          const float x1 = head[c], x2 = head[c + half];
          head[c] = x1 * cs[c] - x2 * sn[c];
          head[c + half] = x2 * cs[c] + x1 * sn[c];
        }
      }
    }
#pragma omp parallel for schedule(dynamic)
    for (int h = 0; h < H; ++h) {
      const int j = h / g;
      causal_attention(ConstRows(queries.data() + h * dh, count, dh, Eigen::OuterStride<>(queries.cols())),
                       ConstRows(keys_full.data() + j * dh, keys, dh, Eigen::OuterStride<>(keys_full.cols())),
                       ConstRows(values.data() + j * dh, keys, dh, Eigen::OuterStride<>(values.cols())),
                       first_position, scale, Rows(out.row(row0).data() + h * dh, count, dh, out_stride));
    }
    return;
  }

  // Absorbed: per KV head the keys [k_e, c] and values c; per query head [q_e, B_kᵀ q_n].
  std::vector<Matrix> group_keys(static_cast<std::size_t>(G));
  for (int j = 0; j < G; ++j) {
    Matrix& kj = group_keys[std::size_t(j)];
    kj.resize(keys, 2 * r + rank);
    kj.leftCols(2 * r) = k_elite.middleCols(j * 2 * r, 2 * r);
    kj.rightCols(rank) = latent;
  }
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < H; ++h) {
    const int j = h / g;
    const std::vector<int>& chunks = elite_[std::size_t(j)];
    Matrix query(count, 2 * r + rank), q_rest(count, rest);
    for (int s = 0; s < count; ++s) {
      const float* head = q.row(row0 + s).data() + h * dh;
      for (int i = 0; i < r; ++i) {
        query(s, i) = head[chunks[std::size_t(i)]];
        query(s, r + i) = head[chunks[std::size_t(i)] + half];
      }
      rotate_elite(query.row(s).data(), chunks, *rope_, first_position + s);
      for (int m = 0; m < rest; ++m) q_rest(s, m) = head[rest_[std::size_t(j)][std::size_t(m)]];
    }
    query.rightCols(rank).noalias() = q_rest * w.k_b.middleRows(j * rest, rest);  // q̃ = B_kᵀ q_n
    Matrix latent_out(count, rank);
    causal_attention(ConstRows(query.data(), count, query.cols(), Eigen::OuterStride<>(query.cols())),
                     ConstRows(group_keys[std::size_t(j)].data(), keys, query.cols(), Eigen::OuterStride<>(query.cols())),
                     ConstRows(latent.data(), keys, rank, Eigen::OuterStride<>(rank)), first_position, scale,
                     Rows(latent_out.data(), count, rank, Eigen::OuterStride<>(rank)));
    Rows(out.row(row0).data() + h * dh, count, dh, out_stride).noalias() =
        latent_out * w.v_b.middleRows(j * dh, dh).transpose();  // o^h = B_v o_lat
  }
}

Matrix CompressedAttention::forward(const LayerWeights& w, const Matrix& x, int first_sequence, int batch, int seq_len,
                                    const CaptureHook&) {
  const int G = config_.kv_heads, dh = config_.head_dim, r = config_.elitekv.r;
  const int rank = config_.elitekv.kv_rank[std::size_t(layer_)];
  EKV_CHECK(w.kv_a.rows() == rank && w.kv_a.cols() == config_.hidden && w.wk_rope.rows() == 2 * r * G &&
                w.k_b.rows() == G * (dh - 2 * r) && w.v_b.rows() == G * dh,
            "compressed attention: layer ", layer_, " lacks EliteKV weights of the configured shapes");
  const bool caching = !caches_.empty();
  EKV_CHECK(!caching || first_sequence + batch <= int(caches_.size()), "compressed attention: sequences ",
            first_sequence, "..", first_sequence + batch, " have no cache (", caches_.size(), " started)");
  Matrix q, k_elite, latent;
  linear(x, w.wq, w.bq, q);                 // [B*S, H*d_h]
  linear(x, w.wk_rope, w.bk_rope, k_elite);  // [B*S, G*2r]
  linear(x, w.kv_a, latent);      // [B*S, d_kv]
  Matrix attended(x.rows(), Eigen::Index(config_.heads) * dh);
  for (int b = 0; b < batch; ++b) {
    const Eigen::Index row0 = Eigen::Index(b) * seq_len;
    const std::int64_t first_position = caching ? caches_[std::size_t(first_sequence + b)].tokens : 0;
    EKV_CHECK(first_position + seq_len <= rope_->positions(), "compressed attention: position ",
              first_position + seq_len, " exceeds the model context ", rope_->positions());
    for (int s = 0; s < seq_len; ++s)
      for (int j = 0; j < G; ++j)
        rotate_elite(k_elite.row(row0 + s).data() + j * 2 * r, elite_[std::size_t(j)], *rope_, first_position + s);
    if (caching) {
      SequenceCache& cache = caches_[std::size_t(first_sequence + b)];
      append(cache, k_elite, latent, row0, seq_len);
      attend(w, q, row0, seq_len, first_position, cache.k_elite.data(), cache.latent.data(), cache.tokens, attended);
    } else {
      attend(w, q, row0, seq_len, 0, k_elite.row(row0).data(), latent.row(row0).data(), seq_len, attended);
    }
  }
  // v_b_proj's bias: every value of KV head j carries it, and the probabilities of a query sum
  // to one, so it adds once to each of its query heads' outputs (docs/method.md §10).
  if (w.bv.size())
    for (int h = 0; h < config_.heads; ++h)
      attended.middleCols(Eigen::Index(h) * dh, dh).rowwise() +=
          w.bv.segment(Eigen::Index(h / config_.group_size()) * dh, dh).transpose();
  Matrix out;
  linear(attended, w.wo, out);
  return out;
}

}  // namespace ekv
