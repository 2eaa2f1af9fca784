#include "ekv/refine/chunk_map.hpp"

#include <Eigen/Dense>
#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/refine/rotary_scores.hpp"

namespace ekv {

const NameTable<ChunkMapKind>& name_table(ChunkMapKind) {
  static const NameTable<ChunkMapKind> table{
      {"none", ChunkMapKind::none}, {"scalar", ChunkMapKind::scalar}, {"matrix", ChunkMapKind::matrix},
      {"per-chunk", ChunkMapKind::per_chunk}, {"head", ChunkMapKind::head}};
  return table;
}

namespace {
constexpr int kKeyTerms = 7;  // per key: ka², ka·kb, kb², ka·k̂a, ka·k̂b, kb·k̂a, kb·k̂b

// Normal equations of one chunk's 4 map entries θ (φ = q ⊗ k, target the rotated score).
struct Normal {
  Eigen::Matrix4d n = Eigen::Matrix4d::Zero();
  Eigen::Vector4d b = Eigen::Vector4d::Zero();
};

// The normal equations of every map, summed over the stored sequences [first, first + count).
// rest: the non-elite chunks of each KV head, in the order of the maps.
std::vector<Normal> chunk_normals(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& rest,
                                  const std::vector<float>& x_all, int first, int count, int seq_len,
                                  const RopeTable& rope) {
  const int G = c.kv_heads, dh = c.head_dim, half = dh / 2, g = c.group_size(), d = c.hidden;
  std::size_t map_count = 0;
  for (const auto& chunks : rest) map_count += chunks.size();
  std::vector<Normal> normals(map_count);
  const float scale = float(1.0 / std::sqrt(double(dh)));
  for (int s = first; s < first + count; ++s) {
    const Matrix x = Eigen::Map<const Matrix>(x_all.data() + std::size_t(s) * seq_len * d, seq_len, d);
    Matrix q, k;
    linear(x, w.wq, w.bq, q);
    linear(x, w.wk, w.bk, k);
    const Matrix qr = rotated(q, dh, rope), kr = rotated(k, dh, rope);
    std::size_t first_map = 0;
    for (int j = 0; j < G; ++j) {
      const auto& chunks = rest[std::size_t(j)];
      const int nc = int(chunks.size());
      // Per key n and chunk, the products whose probability-weighted sums make the normal equations.
      Matrix terms(seq_len, kKeyTerms * nc);
      for (int i = 0; i < nc; ++i) {
        const int a = j * dh + chunks[std::size_t(i)], b = a + half;
        const Eigen::ArrayXf ka = k.col(a).array(), kb = k.col(b).array(), ra = kr.col(a).array(), rb = kr.col(b).array();
        terms.col(kKeyTerms * i + 0) = ka * ka;
        terms.col(kKeyTerms * i + 1) = ka * kb;
        terms.col(kKeyTerms * i + 2) = kb * kb;
        terms.col(kKeyTerms * i + 3) = ka * ra;
        terms.col(kKeyTerms * i + 4) = ka * rb;
        terms.col(kKeyTerms * i + 5) = kb * ra;
        terms.col(kKeyTerms * i + 6) = kb * rb;
      }
      for (int h = j * g; h < (j + 1) * g; ++h) {
        const Matrix logits = qr.middleCols(h * dh, dh) * kr.middleCols(j * dh, dh).transpose();
        const Matrix weighted = causal_probabilities(logits, scale) * terms;  // [S, 7·nc]: Σ_n p(m,n) term(n)
        for (int i = 0; i < nc; ++i) {
          Normal& nm = normals[first_map + std::size_t(i)];
          const int a = h * dh + chunks[std::size_t(i)], b = a + half;
          for (int m = 0; m < seq_len; ++m) {
            const double qv[2] = {q(m, a), q(m, b)}, rv[2] = {qr(m, a), qr(m, b)};
            const float* z = weighted.row(m).data() + kKeyTerms * i;
            const double kk[2][2] = {{z[0], z[1]}, {z[1], z[2]}};
            const double kr_[2][2] = {{z[3], z[4]}, {z[5], z[6]}};  // Σ p k_l k̂_a'
            for (int qi = 0; qi < 2; ++qi)
              for (int l = 0; l < 2; ++l) {
                for (int qi2 = 0; qi2 < 2; ++qi2)
                  for (int l2 = 0; l2 < 2; ++l2) nm.n(2 * qi + l, 2 * qi2 + l2) += qv[qi] * qv[qi2] * kk[l][l2];
                nm.b[2 * qi + l] += qv[qi] * (rv[0] * kr_[l][0] + rv[1] * kr_[l][1]);
              }
          }
        }
      }
      first_map += std::size_t(nc);
    }
  }
  return normals;
}

// The squared score error of map θ on the sums nm, less its θ-free constant: θᵀNθ − 2bᵀθ.
double score_error(const Normal& nm, const Eigen::Vector4d& theta) { return theta.dot(nm.n * theta) - 2 * nm.b.dot(theta); }

Eigen::Vector4d solve_map(const Normal& nm, ChunkMapKind kind) {
  const Eigen::Vector4d identity(1, 0, 0, 1);
  const double ridge = 1e-6 * nm.n.trace() / 4;  // pulls an unconstrained map toward the identity
  if (!(ridge > 0)) return identity;
  if (kind == ChunkMapKind::scalar)
    return identity * ((identity.dot(nm.b) + ridge) / (identity.dot(nm.n * identity) + ridge));
  return (nm.n + ridge * Eigen::Matrix4d::Identity()).ldlt().solve(nm.b + ridge * identity);
}
}  // namespace

std::vector<ChunkMap> fit_chunk_maps(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                                     const std::vector<float>& x_all, int sequences, int seq_len, const RopeTable& rope,
                                     ChunkMapKind kind, int heldout) {
  const int G = c.kv_heads, half = c.head_dim / 2, d = c.hidden;
  EKV_CHECK(int(elite.size()) == G, "chunk maps: ", elite.size(), " elite sets for ", G, " KV heads");
  EKV_CHECK(kind != ChunkMapKind::head, "chunk maps: head maps are fitted by fit_head_maps");
  std::vector<ChunkMap> maps;
  std::vector<std::vector<int>> rest(static_cast<std::size_t>(G));  // non-elite chunks per KV head
  for (int j = 0; j < G; ++j) {
    std::vector<bool> is_elite(std::size_t(half), false);
    for (int chunk : elite[std::size_t(j)]) is_elite[std::size_t(chunk)] = true;
    for (int chunk = 0; chunk < half; ++chunk)
      if (!is_elite[std::size_t(chunk)]) {
        rest[std::size_t(j)].push_back(chunk);
        maps.push_back({j, chunk, {1, 0, 0, 1}});
      }
  }
  if (kind == ChunkMapKind::none) return maps;
  const int needed = sequences + (kind == ChunkMapKind::per_chunk ? heldout : 0);
  EKV_CHECK(sequences > 0 && x_all.size() >= std::size_t(needed) * seq_len * d, "chunk maps: need ", needed,
            " stored sequences of ", seq_len, " tokens (calib.h5 --keep-seqs)");
  EKV_CHECK(kind != ChunkMapKind::per_chunk || heldout > 0,
            "per-chunk maps choose each chunk's kind on held-out sequences: give at least one");
  const std::vector<Normal> fit = chunk_normals(w, c, rest, x_all, 0, sequences, seq_len, rope);
  std::vector<Normal> held;
  if (kind == ChunkMapKind::per_chunk) held = chunk_normals(w, c, rest, x_all, sequences, heldout, seq_len, rope);
  for (std::size_t i = 0; i < maps.size(); ++i) {
    Eigen::Vector4d theta;
    if (kind == ChunkMapKind::per_chunk) {
      // Each chunk keeps the 2×2 map only where it also fits the sequences it was not fitted on.
      const Eigen::Vector4d scalar = solve_map(fit[i], ChunkMapKind::scalar), matrix = solve_map(fit[i], ChunkMapKind::matrix);
      theta = score_error(held[i], matrix) < score_error(held[i], scalar) ? matrix : scalar;
    } else {
      theta = solve_map(fit[i], kind);
    }
    maps[i].m = {theta[0], theta[1], theta[2], theta[3]};
  }
  return maps;
}

Matrix apply_chunk_maps(const Matrix& wk, const ModelConfig& c, const std::vector<ChunkMap>& maps) {
  const int dh = c.head_dim, half = dh / 2;
  Matrix out = wk;
  for (const ChunkMap& map : maps) {
    const Eigen::Index a = map.head * dh + map.chunk, b = a + half;
    const Eigen::VectorXd ra = wk.row(a).cast<double>(), rb = wk.row(b).cast<double>();
    out.row(a) = (map.m[0] * ra + map.m[1] * rb).cast<float>().transpose();
    out.row(b) = (map.m[2] * ra + map.m[3] * rb).cast<float>().transpose();
  }
  return out;
}

}  // namespace ekv
