// W_J of one layer (docs/method.md §5): the non-elite key rows of every KV head stacked over all
// value rows, [G(d_h − 2r) + G·d_h, d], with the map from each row back to its head and dim.
#pragma once

#include <Eigen/Core>
#include <vector>

#include "ekv/model/config.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct JointLayout {
  struct Row {
    bool key;  // true: a non-elite key row; false: a value row
    int head;  // KV head j
    int dim;   // dim within the head (HF rotate_half layout)
  };
  std::vector<Row> rows;  // one per row of W_J, keys first (head by head, ascending dim), then values
  int key_rows = 0;       // G(d_h − 2r)
};

// elite[j] = the elite chunks of KV head j (every head the same count r).
MatrixD build_joint_matrix(const LayerWeights& weights, const ModelConfig& config,
                           const std::vector<std::vector<int>>& elite, JointLayout& layout);

}  // namespace ekv
