// A whole EliteKV model in MLA form for one engine format, built a layer at a time (one layer
// resident, as ekv-export does): the slot plan, the scales every engine format needs, and each
// layer's tensors. The writers (gguf_export, hf_deepseek_export) only name and lay them out.
#pragma once

#include "ekv/engine/engine_export.hpp"
#include "ekv/engine/engine_input.hpp"
#include "ekv/engine/latent_norm.hpp"
#include "ekv/engine/mla_layer.hpp"
#include "ekv/engine/slot_plan.hpp"

namespace ekv {

class MlaModel {
 public:
  MlaModel(const EngineInput& input, EngineFormat format);

  const ModelConfig& config() const { return input_.config; }
  const SlotPlan& plan() const { return summary_.plan; }

  struct Layer {
    LayerWeights original;  // norms and MLP as the model has them (w_down times the stream scale)
    MlaLayer attention;     // o_proj times the stream scale
  };
  // Builds layer l (the previous one is freed first).
  const Layer& layer(int l);
  // Embedding times the stream scale; the final norm divided by it when the output is tied.
  std::vector<float> embedding() const;
  std::vector<float> final_norm() const;
  std::vector<float> output() const;  // empty when tied

  // What was written; max_norm_error covers the layers built so far.
  const EngineExportSummary& summary() const { return summary_; }

 private:
  const EngineInput& input_;
  EngineExportSummary summary_;
  int built_ = -1;
  Layer layer_;
};

}  // namespace ekv
