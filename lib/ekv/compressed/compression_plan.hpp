// What ekv-export compresses: the original model, the elite chunks of rope.h5 and the factors
// of jlrd.h5, checked to chain (same model fingerprint; jlrd.h5 made from exactly this rope.h5;
// every layer factored; B_k rows in the order the compressed layout expects). It yields the
// compressed model's config and, layer by layer, its weights (docs/method.md §6).
#pragma once

#include <filesystem>
#include <string>

#include "ekv/io/artifact.hpp"
#include "ekv/lrd/jlrd_file.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

class CompressionPlan {
 public:
  CompressionPlan(const ModelSource& model, const std::filesystem::path& rope, const std::filesystem::path& jlrd);

  const ModelSource& model() const { return model_; }
  const ModelConfig& config() const { return config_; }  // the compressed model's
  // The compressed layer: q, o, norms and MLP as the original; k_rope, A, B_k, B_v instead of k, v.
  LayerWeights layer(int index) const;
  // The model, rope.h5, jlrd.h5 and the calib.h5 that jlrd.h5 names, with their digests.
  const std::vector<ArtifactInput>& inputs() const { return inputs_; }
  // (2rG + d_kv) / (2 G d_h) averaged over layers: the cache kept, in elements.
  double cache_ratio() const;

 private:
  const ModelSource& model_;
  ModelConfig config_;
  JlrdFile jlrd_;
  std::vector<ArtifactInput> inputs_;
};

}  // namespace ekv
