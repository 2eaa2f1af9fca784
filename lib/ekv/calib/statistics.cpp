#include "ekv/calib/statistics.hpp"

#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "ekv/core/error.hpp"

namespace ekv {

LayerStatistics::LayerStatistics(int layer_index, const ModelConfig& c)
    : layer(layer_index),
      gram(Eigen::MatrixXd::Zero(c.hidden, c.hidden)),
      q_norm_sum(Eigen::MatrixXd::Zero(c.heads, c.chunks())),
      k_norm_sum(Eigen::MatrixXd::Zero(c.kv_heads, c.chunks())) {}

namespace {
// Adds Σ_t ‖(a[c], a[c + n_c])‖ per head and chunk; rows are tokens, heads are column blocks.
void add_chunk_norms(const Matrix& a, int heads, int head_dim, Eigen::MatrixXd& sums) {
  const int chunks = head_dim / 2;
#pragma omp parallel for schedule(static)
  for (int h = 0; h < heads; ++h)
    for (Eigen::Index t = 0; t < a.rows(); ++t) {
      const float* head = a.row(t).data() + h * head_dim;
      for (int c = 0; c < chunks; ++c)
        sums(h, c) += std::sqrt(double(head[c]) * head[c] + double(head[c + chunks]) * head[c + chunks]);
    }
}
}  // namespace

void LayerStatistics::add(const LayerActivations& a, int keep_seqs) {
  const Eigen::Index d = gram.rows();
  EKV_CHECK(a.x.cols() == d, "calibration statistics: layer ", layer, " input has ", a.x.cols(),
            " features, expected ", d);
  // Σ x xᵀ in fp64: each thread widens a block of rows and adds it with dsyrk (lower
  // triangle) into its own sum; the sums are added in thread order, so a given thread count
  // always gives the same bits.
  const int threads = omp_get_max_threads();
  std::vector<Eigen::MatrixXd> partial(std::size_t(threads), Eigen::MatrixXd::Zero(d, d));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int part = 0; part < threads; ++part) {
    const Eigen::Index begin = a.x.rows() * part / threads, end = a.x.rows() * (part + 1) / threads;
    if (end == begin) continue;
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> wide =
        a.x.middleRows(begin, end - begin).cast<double>();
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, int(d), int(wide.rows()), 1.0, wide.data(), int(d), 0.0,
                partial[std::size_t(part)].data(), int(d));
  }
  for (const auto& sum : partial) gram.triangularView<Eigen::Lower>() += sum;
  gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();  // keep the stored matrix whole
  const int head_dim = int(q_norm_sum.cols()) * 2;
  add_chunk_norms(a.q, int(q_norm_sum.rows()), head_dim, q_norm_sum);
  add_chunk_norms(a.k, int(k_norm_sum.rows()), head_dim, k_norm_sum);
  count += a.x.rows();
  for (int s = 0; s < a.batch; ++s) {
    if (a.first_sequence + s >= keep_seqs) break;
    EKV_CHECK(a.first_sequence + s == kept_sequences, "calibration statistics: sequences arrived out of order");
    const float* rows = a.x.row(Eigen::Index(s) * a.seq_len).data();
    x.insert(x.end(), rows, rows + std::size_t(a.seq_len) * std::size_t(d));
    ++kept_sequences;
  }
}

void LayerStatistics::merge(const LayerStatistics& other) {
  EKV_CHECK(other.layer == layer && other.gram.rows() == gram.rows() && other.q_norm_sum.rows() == q_norm_sum.rows() &&
                other.k_norm_sum.rows() == k_norm_sum.rows() && other.q_norm_sum.cols() == q_norm_sum.cols(),
            "calibration merge: layer ", layer, " shapes differ");
  gram += other.gram;
  q_norm_sum += other.q_norm_sum;
  k_norm_sum += other.k_norm_sum;
  count += other.count;
  x.insert(x.end(), other.x.begin(), other.x.end());
  kept_sequences += other.kept_sequences;
}

}  // namespace ekv
