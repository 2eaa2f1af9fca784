#include "ekv/refine/rotary_scores.hpp"

#include <cmath>

namespace ekv {

Matrix rotated(const Matrix& a, int head_dim, const RopeTable& rope) {
  Matrix out = a;
  const int heads = int(a.cols()) / head_dim;
  for (Eigen::Index t = 0; t < out.rows(); ++t)
    for (int h = 0; h < heads; ++h) rotate_half_inplace(out.row(t).data() + h * head_dim, head_dim / 2, rope.cos(t), rope.sin(t));
  return out;
}

Matrix causal_probabilities(const Matrix& logits, float scale) {
  Matrix p = Matrix::Zero(logits.rows(), logits.cols());
  for (Eigen::Index m = 0; m < logits.rows(); ++m) {
    const float top = logits.row(m).head(m + 1).maxCoeff();
    double sum = 0;
    for (Eigen::Index n = 0; n <= m; ++n) sum += p(m, n) = std::exp((logits(m, n) - top) * scale);
    p.row(m).head(m + 1) /= float(sum);
  }
  return p;
}

}  // namespace ekv
