#include "ekv/refine/head_map.hpp"

#include <Eigen/Dense>
#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/refine/rotary_scores.hpp"

namespace ekv {

namespace {
// Columns `dims` of head `head` of a [S, heads·d_h] matrix.
Matrix head_columns(const Matrix& a, int head, int head_dim, const std::vector<int>& dims) {
  Matrix out(a.rows(), Eigen::Index(dims.size()));
  for (std::size_t i = 0; i < dims.size(); ++i) out.col(Eigen::Index(i)) = a.col(head * head_dim + dims[i]);
  return out;
}

// Row t: the products u(t, i) v(t, l) for the listed pairs (i, l).
Matrix pair_products(const Matrix& u, const Matrix& v, const std::vector<std::pair<int, int>>& pairs) {
  Matrix out(u.rows(), Eigen::Index(pairs.size()));
  for (std::size_t p = 0; p < pairs.size(); ++p)
    out.col(Eigen::Index(p)) = u.col(pairs[p].first).cwiseProduct(v.col(pairs[p].second));
  return out;
}
}  // namespace

std::vector<HeadMap> fit_head_maps(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                                   const std::vector<float>& x_all, int first, int sequences, int seq_len,
                                   const RopeTable& rope) {
  const int G = c.kv_heads, dh = c.head_dim, half = dh / 2, g = c.group_size(), d = c.hidden;
  EKV_CHECK(int(elite.size()) == G, "head maps: ", elite.size(), " elite sets for ", G, " KV heads");
  EKV_CHECK(sequences > 0 && first >= 0 && x_all.size() >= std::size_t(first + sequences) * seq_len * d,
            "head maps: need stored sequences ", first, "..", first + sequences - 1, " of ", seq_len,
            " tokens (calib.h5 --keep-seqs)");
  std::vector<HeadMap> maps(static_cast<std::size_t>(G));
  for (int j = 0; j < G; ++j) {
    std::vector<bool> is_elite(std::size_t(half), false);
    for (int chunk : elite[std::size_t(j)]) is_elite[std::size_t(chunk)] = true;
    maps[std::size_t(j)].head = j;
    for (int chunk = 0; chunk < half; ++chunk)
      if (!is_elite[std::size_t(chunk)]) maps[std::size_t(j)].dims.push_back(chunk);
    for (int chunk = 0; chunk < half; ++chunk)
      if (!is_elite[std::size_t(chunk)]) maps[std::size_t(j)].dims.push_back(chunk + half);
  }
  // θ = vec(M), row-major; feature of pair (m, n): q(m) ⊗ k(n). The normal matrix is
  // Σ_m Σ_n p(m,n) (q qᵀ)(m) ⊗ (k kᵀ)(n): symmetric in (i, i') and in (l, l'), so it is summed over
  // the upper triangles of both, N'[(i,i'), (l,l')], and unfolded at the end.
  const float scale = float(1.0 / std::sqrt(double(dh)));
  std::vector<Eigen::MatrixXd> normals(static_cast<std::size_t>(G)), rhs(static_cast<std::size_t>(G));
  std::vector<std::vector<std::pair<int, int>>> triangle(static_cast<std::size_t>(G)), square(static_cast<std::size_t>(G));
  for (int j = 0; j < G; ++j) {
    const int D = int(maps[std::size_t(j)].dims.size());
    for (int i = 0; i < D; ++i)
      for (int l = 0; l < D; ++l) {
        square[std::size_t(j)].push_back({i, l});
        if (l >= i) triangle[std::size_t(j)].push_back({i, l});
      }
    const Eigen::Index T = Eigen::Index(triangle[std::size_t(j)].size());
    normals[std::size_t(j)] = Eigen::MatrixXd::Zero(T, T);
    rhs[std::size_t(j)] = Eigen::MatrixXd::Zero(D, D);
  }
  for (int s = first; s < first + sequences; ++s) {
    const Matrix x = Eigen::Map<const Matrix>(x_all.data() + std::size_t(s) * seq_len * d, seq_len, d);
    Matrix q, k;
    linear(x, w.wq, w.bq, q);
    linear(x, w.wk, w.bk, k);
    const Matrix qr = rotated(q, dh, rope), kr = rotated(k, dh, rope);
    for (int j = 0; j < G; ++j) {
      const std::vector<int>& dims = maps[std::size_t(j)].dims;
      const int D = int(dims.size());
      const Matrix kn = head_columns(k, j, dh, dims), krn = head_columns(kr, j, dh, dims);
      const Matrix kk = pair_products(kn, kn, triangle[std::size_t(j)]);  // [S, T]: k_l k_l'
      const Matrix kkr = pair_products(kn, krn, square[std::size_t(j)]);  // [S, D²]: k_l k̂_a
      for (int h = j * g; h < (j + 1) * g; ++h) {
        const Matrix p = causal_probabilities(qr.middleCols(h * dh, dh) * kr.middleCols(j * dh, dh).transpose(), scale);
        const Matrix qn = head_columns(q, h, dh, dims), qrn = head_columns(qr, h, dh, dims);
        const Matrix qq = pair_products(qn, qn, triangle[std::size_t(j)]);  // [S, T]: q_i q_i'
        normals[std::size_t(j)] += (qq.transpose() * (p * kk)).cast<double>();
        // Target: the rotated non-elite score q̂ᵀk̂; Σ_n p k_l k̂_a, then contracted with q̂_a(m).
        const Matrix pkkr = p * kkr;
        Matrix contracted(seq_len, D);  // (m, l): Σ_a q̂_a(m) Σ_n p(m,n) k_l(n) k̂_a(n)
        for (int m = 0; m < seq_len; ++m)
          contracted.row(m) =
              (Eigen::Map<const Matrix>(pkkr.row(m).data(), D, D) * qrn.row(m).transpose()).transpose();
        rhs[std::size_t(j)] += (qn.transpose() * contracted).cast<double>();
      }
    }
  }
  for (int j = 0; j < G; ++j) {
    HeadMap& map = maps[std::size_t(j)];
    const int D = int(map.dims.size());
    const auto& tri = triangle[std::size_t(j)];
    std::vector<int> at(std::size_t(D) * std::size_t(D));  // (i, i') -> its upper-triangle index
    for (std::size_t t = 0; t < tri.size(); ++t) {
      at[std::size_t(tri[t].first * D + tri[t].second)] = int(t);
      at[std::size_t(tri[t].second * D + tri[t].first)] = int(t);
    }
    const Eigen::Index n = Eigen::Index(D) * D;
    Eigen::MatrixXd normal(n, n);
    for (int i = 0; i < D; ++i)
      for (int l = 0; l < D; ++l)
        for (int i2 = 0; i2 < D; ++i2)
          for (int l2 = 0; l2 < D; ++l2)
            normal(i * D + l, i2 * D + l2) =
                normals[std::size_t(j)](at[std::size_t(i * D + i2)], at[std::size_t(l * D + l2)]);
    Eigen::VectorXd b_rowmajor(n);
    for (int i = 0; i < D; ++i)
      for (int l = 0; l < D; ++l) b_rowmajor(i * D + l) = rhs[std::size_t(j)](i, l);
    // A small ridge toward the identity keeps directions the data does not reach unmapped.
    Eigen::VectorXd identity = Eigen::VectorXd::Zero(n);
    for (int i = 0; i < D; ++i) identity(i * D + i) = 1;
    const double ridge = 1e-6 * normal.trace() / double(n);
    if (!(ridge > 0)) {
      map.m = Eigen::MatrixXd::Identity(D, D);
      continue;
    }
    normal.diagonal().array() += ridge;
    const Eigen::VectorXd theta = normal.ldlt().solve(b_rowmajor + ridge * identity);
    map.m = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(theta.data(), D, D);
  }
  return maps;
}

Matrix apply_head_maps(const Matrix& wk, const ModelConfig& c, const std::vector<HeadMap>& maps) {
  Matrix out = wk;
  for (const HeadMap& map : maps) {
    Eigen::MatrixXd rows(Eigen::Index(map.dims.size()), wk.cols());
    for (std::size_t i = 0; i < map.dims.size(); ++i)
      rows.row(Eigen::Index(i)) = wk.row(map.head * c.head_dim + map.dims[i]).cast<double>();
    const Eigen::MatrixXd mapped = map.m * rows;
    for (std::size_t i = 0; i < map.dims.size(); ++i)
      out.row(map.head * c.head_dim + map.dims[i]) = mapped.row(Eigen::Index(i)).cast<float>();
  }
  return out;
}

}  // namespace ekv
