// SVD cost of J-LRD at LLaMA-2-7B shape (d = 4096, G = 32, d_h = 128): W_J is a random
// [32(128 − 2r) + 4096, 4096] matrix. In one run:
//   1. a bare LAPACKE_sgesdd on it (the floor),
//   2. ekv's Decomposition in fp32 (copies and conversions included),
//   3. a whole 10-rank sweep through LayerFactors: the decomposition, error curves and the
//      factors and weight errors at 10 ranks (what ekv-jlrd does per layer without --calib).
// With --f64 it also times LAPACKE_dgesdd against the fp64 Decomposition (slower).
//
//   bench_jlrd_svd [R] [--f64]
#include <lapacke.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "bench_util.hpp"
#include "ekv/lrd/layer_factors.hpp"

namespace {

template <class Scalar>
double bare_gesdd_seconds(const ekv::MatrixD& w) {
  using M = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  M a = w.cast<Scalar>();
  const lapack_int m = lapack_int(a.rows()), n = lapack_int(a.cols()), k = std::min(m, n);
  M u(m, k), vt(k, n);
  Eigen::Vector<Scalar, Eigen::Dynamic> s(k);
  const double start = ekv::bench::now_seconds();
  lapack_int info;
  if constexpr (std::is_same_v<Scalar, float>)
    info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', m, n, a.data(), n, s.data(), u.data(), k, vt.data(), n);
  else
    info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', m, n, a.data(), n, s.data(), u.data(), k, vt.data(), n);
  const double seconds = ekv::bench::now_seconds() - start;
  if (info != 0) std::fprintf(stderr, "gesdd failed: info %d\n", int(info));
  return seconds;
}

double decomposition_seconds(const ekv::MatrixD& w, ekv::SvdPrecision precision) {
  const double start = ekv::bench::now_seconds();
  const ekv::Decomposition decomposition(w, nullptr, precision);
  return ekv::bench::now_seconds() - start;
}

}  // namespace

int main(int argc, char** argv) {
  const int r = argc > 1 && argv[1][0] != '-' ? std::stoi(argv[1]) : 8;
  bool f64 = false;
  for (int i = 1; i < argc; ++i) f64 = f64 || std::strcmp(argv[i], "--f64") == 0;
  const int G = 32, dh = 128, d = 4096, key_rows = G * (dh - 2 * r);
  std::mt19937 rng(0);
  std::normal_distribution<double> normal;
  ekv::MatrixD w(key_rows + G * dh, d);
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = normal(rng);
  ekv::JointLayout layout;
  layout.key_rows = key_rows;
  for (int row = 0; row < w.rows(); ++row)
    layout.rows.push_back({row < key_rows, (row < key_rows ? row / (dh - 2 * r) : (row - key_rows) / dh), 0});
  std::printf("W_J: %lld x %lld (r = %d), OpenBLAS threads as configured\n", (long long)w.rows(), (long long)w.cols(), r);

  const double bare = bare_gesdd_seconds<float>(w);
  std::printf("bare LAPACKE_sgesdd:            %8.2f s\n", bare);
  const double ours = decomposition_seconds(w, ekv::SvdPrecision::f32);
  std::printf("ekv Decomposition (fp32):       %8.2f s  (%.3fx the bare call)\n", ours, ours / bare);

  const double start = ekv::bench::now_seconds();
  const ekv::LayerFactors factors(w, layout, nullptr, {ekv::FactorMode::joint, ekv::SvdBasis::weight, false, ekv::SvdPrecision::f32});
  double checksum = 0;
  for (int i = 1; i <= 10; ++i) {
    const int rank = i * 256;  // d_kv = 256 .. 2560
    const ekv::LowRank low = factors.factor(rank);
    checksum += factors.weight_error(rank) + double(low.a(0, 0));
  }
  const double sweep = ekv::bench::now_seconds() - start;
  std::printf("10-rank sweep (LayerFactors):   %8.2f s  (%.3fx one decomposition)  [checksum %.6g]\n", sweep,
              sweep / ours, checksum);
  if (f64) {
    const double bare64 = bare_gesdd_seconds<double>(w);
    const double ours64 = decomposition_seconds(w, ekv::SvdPrecision::f64);
    std::printf("bare LAPACKE_dgesdd:            %8.2f s\n", bare64);
    std::printf("ekv Decomposition (fp64):       %8.2f s  (%.3fx the bare call)\n", ours64, ours64 / bare64);
  }
  return 0;
}
