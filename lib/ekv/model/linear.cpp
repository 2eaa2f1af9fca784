#include "ekv/model/linear.hpp"

#include <cblas.h>
#include <omp.h>

#include "ekv/core/error.hpp"

namespace ekv {

void linear(const Matrix& x, const Matrix& weight, Matrix& y) {
  EKV_CHECK(x.cols() == weight.cols(), "linear: input has ", x.cols(), " features, weight expects ", weight.cols());
  y.resize(x.rows(), weight.rows());
  if (x.rows() == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(x.rows()), int(weight.rows()), int(x.cols()), 1.0f,
              x.data(), int(x.cols()), weight.data(), int(weight.cols()), 0.0f, y.data(), int(y.cols()));
}

void set_compute_threads(int threads) {
  if (threads <= 0) return;
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
}

}  // namespace ekv
