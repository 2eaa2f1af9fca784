// Per-layer datasets of ekv artifacts as Eigen matrices: "/layers/<l>/<name>" paths and a
// shape-checked fp32 read.
#pragma once

#include <string>

#include "ekv/core/matrix.hpp"
#include "ekv/io/artifact.hpp"

namespace ekv {

inline std::string layer_dataset(int layer, const char* name) {
  return "/layers/" + std::to_string(layer) + "/" + name;
}

inline Matrix read_matrix(const ArtifactReader& file, const std::string& name, std::int64_t rows, std::int64_t cols) {
  const std::vector<float> values = file.read_f32(name, {rows, cols});
  return Eigen::Map<const Matrix>(values.data(), rows, cols);
}

}  // namespace ekv
