// y = x Wᵀ through OpenBLAS sgemm: the linear layers of the model (x [N, in], W [out, in]).
#pragma once

#include "ekv/model/weights.hpp"

namespace ekv {

void linear(const Matrix& x, const Matrix& weight, Matrix& y);  // y resized to [N, out]

// Sets the threads used by OpenBLAS and OpenMP (0: leave the libraries' defaults).
void set_compute_threads(int threads);

}  // namespace ekv
