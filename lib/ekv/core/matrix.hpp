// The float matrix every module passes around: row-major, as the files on disk and the BLAS
// calls lay it out. Here in core so that io/ can read it without knowing about models.
#pragma once

#include <Eigen/Core>

namespace ekv {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

}  // namespace ekv
