// What the engine writers read: an EliteKV model, from an ekv-export folder or straight from the
// artifacts it is made of (CompressionPlan), and the original model it came from (tokenizer).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ekv/model/config.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

struct EngineInput {
  ModelConfig config;                                          // with config.elitekv set
  std::function<LayerWeights(int)> layer;                      // the EliteKV layer, built on demand
  std::function<std::vector<float>(const std::string&)> load;  // embedding, final norm, lm_head by canonical name
  const ModelSource* original = nullptr;                       // the model the compression started from
};

// The two ways in: an ekv-export (or ekv-uptrain) folder opened as a ModelSource ...
EngineInput engine_input(const ModelSource& compressed, const ModelSource& original);

}  // namespace ekv
