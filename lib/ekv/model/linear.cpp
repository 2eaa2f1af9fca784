#include "ekv/model/linear.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <mutex>

#include "ekv/core/error.hpp"

namespace ekv {

namespace {
std::mutex g_stats_mutex;
LinearStats g_stats;
}  // namespace

LinearStats linear_stats() {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  return g_stats;
}

void reset_linear_stats() {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  g_stats = {};
}

namespace {
// One thread pool: OpenBLAS's own pthreads would compete with OpenMP threads that spin
// after every parallel region, so OpenBLAS runs single-threaded and the GEMM is split here.
void single_threaded_blas() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}
}  // namespace

void add_bias(Matrix& y, const Vector& bias) {
  if (bias.size() == 0) return;
  EKV_CHECK(bias.size() == y.cols(), "linear: bias has ", bias.size(), " entries, output has ", y.cols());
  y.rowwise() += bias.transpose();
}

void linear(const Matrix& x, const Matrix& weight, const Vector& bias, Matrix& y) {
  linear(x, weight, y);
  add_bias(y, bias);
}

void linear(const Matrix& x, const Matrix& weight, Matrix& y) {
  EKV_CHECK(x.cols() == weight.cols(), "linear: input has ", x.cols(), " features, weight expects ", weight.cols());
  y.resize(x.rows(), weight.rows());
  if (x.rows() == 0) return;
  single_threaded_blas();
  const auto start = std::chrono::steady_clock::now();
  const int n = int(x.rows()), out = int(weight.rows()), in = int(x.cols());
  // Fixed block shapes, whatever the thread count: every output element is computed by the
  // same sgemm call shape, so results are the same bits on 1 or 16 threads. Many rows
  // (prefill): blocks of rows; few rows (decode): blocks of outputs.
  constexpr int kBlock = 256;
  const bool split_rows = n >= kBlock;
  const int total = split_rows ? n : out;
  const int blocks = (total + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(dynamic)
  for (int block = 0; block < blocks; ++block) {
    const int begin = block * kBlock, end = std::min(total, begin + kBlock);
    if (split_rows) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, end - begin, out, in, 1.0f, x.data() + std::size_t(begin) * in,
                  in, weight.data(), in, 0.0f, y.data() + std::size_t(begin) * out, out);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, end - begin, in, 1.0f, x.data(), in,
                  weight.data() + std::size_t(begin) * in, in, 0.0f, y.data() + begin, out);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  ++g_stats.calls;
  g_stats.flops += 2.0 * double(n) * double(out) * double(in);
  g_stats.seconds += seconds;
}

void set_compute_threads(int threads) {
  // The OpenMP runtime crashes on absurd counts (100000 segfaults); 4× the cores is already
  // slower than the cores alone.
  const int most = 4 * omp_get_num_procs();
  EKV_CHECK(threads >= 0, "--threads ", threads, ": must not be negative (0: one per core)");
  EKV_CHECK(threads <= most, "--threads ", threads, ": more than 4× the ", omp_get_num_procs(),
            " cores of this machine (at most ", most, ")");
  if (threads == 0) return;
  omp_set_num_threads(threads);
}

}  // namespace ekv
