// y = x Wᵀ through OpenBLAS sgemm: the linear layers of the model (x [N, in], W [out, in]).
// Threads come from OpenMP (the GEMM is split into fixed blocks of rows or of outputs, so the
// result does not depend on the thread count); OpenBLAS itself is set to one thread, so one
// pool serves the whole program.
#pragma once

#include <cstdint>

#include "ekv/model/weights.hpp"

namespace ekv {

void linear(const Matrix& x, const Matrix& weight, Matrix& y);  // y resized to [N, out]
// y = x Wᵀ + b on every row; an empty bias adds nothing (models without attention biases).
void linear(const Matrix& x, const Matrix& weight, const Vector& bias, Matrix& y);
void add_bias(Matrix& y, const Vector& bias);

// Totals over every linear() call since the last reset: for throughput reports.
struct LinearStats {
  std::uint64_t calls = 0;
  double flops = 0;
  double seconds = 0;
};
LinearStats linear_stats();
void reset_linear_stats();

// Sets the OpenMP threads of every parallel loop and GEMM (0: OpenMP's default, one per core).
// Negative counts and more than 4× the cores are refused, naming --threads.
void set_compute_threads(int threads);

}  // namespace ekv
