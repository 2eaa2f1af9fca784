#include "reference_model.hpp"

#include <algorithm>
#include <cmath>

namespace ekv::test {

namespace {
Dense to_double(const Matrix& m) { return m.cast<double>(); }

// x Wᵀ + b (b empty: none).
Dense project(const Dense& x, const Matrix& w, const Vector& b) {
  Dense y = x * to_double(w).transpose();
  if (b.size()) y.rowwise() += b.cast<double>().transpose();
  return y;
}
}  // namespace

Dense rms(const Dense& x, const Vector& w, double eps) {
  Dense out = x;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const double inv = 1.0 / std::sqrt(x.row(r).squaredNorm() / double(x.cols()) + eps);
    for (Eigen::Index c = 0; c < x.cols(); ++c) out(r, c) = x(r, c) * inv * w[c];
  }
  return out;
}

Dense reference_logits(const TinyModel& m, const std::vector<std::int32_t>& tokens,
                       const std::vector<std::vector<std::vector<int>>>* elite) {
  const ModelConfig& c = m.config;
  const int S = int(tokens.size()), dh = c.head_dim, half = dh / 2;
  Dense h(S, c.hidden);
  for (int t = 0; t < S; ++t) h.row(t) = m.globals.embedding.row(tokens[size_t(t)]).cast<double>();
  for (const auto& w : m.layers) {
    const Dense x = rms(h, w.attn_norm, c.norm_eps);
    Dense q = project(x, w.wq, w.bq), k = project(x, w.wk, w.bk);
    const Dense v = project(x, w.wv, w.bv);
    auto rotate = [&](Dense& a, int heads) {
      for (int t = 0; t < S; ++t)
        for (int head = 0; head < heads; ++head)
          for (int i = 0; i < half; ++i) {
            const int kv_head = head * c.kv_heads / heads;
            if (elite) {
              const auto& chunks = (*elite)[std::size_t(w.index)][std::size_t(kv_head)];
              if (std::find(chunks.begin(), chunks.end(), i) == chunks.end()) continue;
            }
            const double angle = t * std::pow(c.rope_theta, -2.0 * i / dh);
            const double x1 = a(t, head * dh + i), x2 = a(t, head * dh + i + half);
            a(t, head * dh + i) = x1 * std::cos(angle) - x2 * std::sin(angle);
            a(t, head * dh + i + half) = x2 * std::cos(angle) + x1 * std::sin(angle);
          }
    };
    rotate(q, c.heads);
    rotate(k, c.kv_heads);
    Dense attended = Dense::Zero(S, c.heads * dh);
    for (int head = 0; head < c.heads; ++head) {
      const int j = head / (c.heads / c.kv_heads);
      for (int t = 0; t < S; ++t) {
        std::vector<double> p(size_t(t + 1));
        double peak = -1e300, total = 0;
        for (int u = 0; u <= t; ++u) {
          p[size_t(u)] = q.row(t).segment(head * dh, dh).dot(k.row(u).segment(j * dh, dh)) / std::sqrt(double(dh));
          peak = std::max(peak, p[size_t(u)]);
        }
        for (auto& value : p) total += (value = std::exp(value - peak));
        for (int u = 0; u <= t; ++u)
          attended.row(t).segment(head * dh, dh) += p[size_t(u)] / total * v.row(u).segment(j * dh, dh);
      }
    }
    h += attended * to_double(w.wo).transpose();
    const Dense y = rms(h, w.ffn_norm, c.norm_eps);
    Dense gate = y * to_double(w.w_gate).transpose();
    const Dense up = y * to_double(w.w_up).transpose();
    for (Eigen::Index i = 0; i < gate.size(); ++i) gate.data()[i] = gate.data()[i] / (1 + std::exp(-gate.data()[i])) * up.data()[i];
    h += gate * to_double(w.w_down).transpose();
  }
  return rms(h, m.globals.final_norm, c.norm_eps) * to_double(m.globals.output).transpose();
}

}  // namespace ekv::test
