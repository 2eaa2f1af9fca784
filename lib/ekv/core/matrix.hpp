// The float matrix every module passes around: row-major, as the files on disk and the BLAS
// calls lay it out. Here in core so that io/ can read it without knowing about models.
#pragma once

#include <Eigen/Core>
#include <vector>

namespace ekv {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

// A matrix's values row by row, or a vector's: what the tensor writers take. Not a template: an
// expression or a column-major matrix converts to Matrix first, so the order is always row-major.
inline std::vector<float> flat_values(const Matrix& m) { return {m.data(), m.data() + m.size()}; }
inline std::vector<float> flat_values(const Vector& v) { return {v.data(), v.data() + v.size()}; }

}  // namespace ekv
