// Sequential calibration (docs/method.md §9, GPTQ's order): the stored calibration sequences run
// through the original model and, beside it, through the model whose layers below the current
// one are already compressed, so each layer is fitted on the inputs it will really see and can
// close the gap that the layers below left in the residual stream. Layer by layer: enter(),
// fit, leave() with both attention outputs.
#pragma once

#include <vector>

#include "ekv/calib/calib_file.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

class SequentialStreams {
 public:
  // The stored (kept) sequences of calib.h5, from the embedding of their tokens.
  SequentialStreams(const ModelSource& model, const CalibData& header);

  int sequences() const { return sequences_; }
  int seq_len() const { return seq_len_; }
  int layer() const { return layer_; }
  // Norms both streams with the next layer's attention norm; returns that layer's index.
  int enter(const LayerWeights& weights);
  // The normed attention inputs of the entered layer, [sequences, S, d] (calib.h5's x layout).
  const std::vector<float>& original_inputs() const { return x_original_; }
  const std::vector<float>& compressed_inputs() const { return x_compressed_; }
  // h_original − h_compressed before the entered layer, one [S, d] matrix per sequence.
  std::vector<Matrix> gap() const;
  // Adds each stream's attention block output ([sequences·S, d], after W_o) and then the MLP.
  void leave(const LayerWeights& weights, const Matrix& original_block, const Matrix& compressed_block);

 private:
  const ModelConfig& config_;
  int sequences_ = 0, seq_len_ = 0, layer_ = -1;
  Matrix h_original_, h_compressed_;  // [sequences·S, d] residual streams
  std::vector<float> x_original_, x_compressed_;
};

}  // namespace ekv
