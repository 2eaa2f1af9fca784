#include "ekv/model/model_source.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/sha256.hpp"
#include "ekv/model/tensor_names.hpp"

namespace ekv {

namespace fs = std::filesystem;

std::uint64_t TensorRecord::elements() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= std::uint64_t(d);
  return n;
}

std::unique_ptr<ModelSource> ModelSource::open(const fs::path& path) {
  EKV_CHECK(fs::exists(path), path.string(), ": no such file or folder (expected a .gguf file or an HF folder)");
  if (fs::is_directory(path)) return open_hf_model(path);
  return open_gguf_model(path);
}

namespace {
std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text;
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? "×" : "") + std::to_string(shape[i]);
  return text;
}
}  // namespace

void ModelSource::finish_open() {
  std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (std::size_t i = 1; i < tensors_.size(); ++i)
    EKV_CHECK(tensors_[i].name != tensors_[i - 1].name, path_.string(), ": tensor ", tensors_[i].name,
              " appears twice");
  std::size_t expected_count = 0;
  for (const auto& expected : expected_tensors(config_)) {
    ++expected_count;
    EKV_CHECK(has_tensor(expected.name), path_.string(), ": tensor ", expected.name, " is missing");
    const TensorRecord& record = tensor(expected.name);
    EKV_CHECK(record.shape == expected.shape, record.file, ": tensor ", record.source_name, ": expected ",
              shape_text(expected.shape), ", found ", shape_text(record.shape));
    EKV_CHECK(dtype_info(record.dtype).dequantizable, record.file, ": tensor ", record.source_name, ": dtype ",
              dtype_name(record.dtype), " cannot hold weights");
  }
  if (tensors_.size() > expected_count)
    log::warn(cat(path_.string(), ": ", tensors_.size() - expected_count, " tensors are not used by ekv"));

  nlohmann::json identity = {{"config", config_to_hf(config_)}, {"tensors", nlohmann::json::array()}};
  for (const auto& record : tensors_)
    identity["tensors"].push_back({record.name, dtype_name(record.dtype), record.shape});
  fingerprint_ = sha256_hex(identity.dump());
}

const TensorRecord* ModelSource::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorRecord& r, const std::string& n) { return r.name < n; });
  return (it != tensors_.end() && it->name == name) ? &*it : nullptr;
}

const TensorRecord& ModelSource::tensor(const std::string& name) const {
  const TensorRecord* record = find(name);
  EKV_CHECK(record, path_.string(), ": tensor ", name, " is missing");
  return *record;
}

bool ModelSource::has_tensor(const std::string& name) const { return find(name) != nullptr; }

std::vector<float> ModelSource::load(const std::string& name) const {
  const TensorRecord& record = tensor(name);
  std::vector<float> values(record.elements());
  dequantize(record.dtype, raw_bytes(record), values);
  for (std::size_t i = 0; i < values.size(); ++i)
    EKV_CHECK(std::isfinite(values[i]), record.file, ": tensor ", record.source_name, ": non-finite value ",
              values[i], " at element ", i);
  to_hf_layout(record, values);
  return values;
}

namespace {
Matrix as_matrix(std::vector<float> values, const TensorRecord& record) {
  return Eigen::Map<Matrix>(values.data(), record.shape.at(0), record.shape.at(1));
}
Vector as_vector(std::vector<float> values) { return Eigen::Map<Vector>(values.data(), Eigen::Index(values.size())); }
}  // namespace

LayerWeights ModelSource::layer(int index) const {
  EKV_CHECK(index >= 0 && index < config_.layers, path_.string(), ": layer ", index, " out of range [0, ",
            config_.layers, ")");
  auto matrix = [&](const char* suffix) {
    const std::string name = layer_tensor_name(index, suffix);
    return as_matrix(load(name), tensor(name));
  };
  auto vector = [&](const char* suffix) { return as_vector(load(layer_tensor_name(index, suffix))); };
  LayerWeights weights;
  weights.index = index;
  weights.attn_norm = vector("input_layernorm");
  weights.wq = matrix("self_attn.q_proj");
  weights.wk = matrix("self_attn.k_proj");
  weights.wv = matrix("self_attn.v_proj");
  weights.wo = matrix("self_attn.o_proj");
  weights.ffn_norm = vector("post_attention_layernorm");
  weights.w_gate = matrix("mlp.gate_proj");
  weights.w_up = matrix("mlp.up_proj");
  weights.w_down = matrix("mlp.down_proj");
  return weights;
}

GlobalWeights ModelSource::globals() const {
  GlobalWeights weights;
  weights.embedding = as_matrix(load(kEmbeddingName), tensor(kEmbeddingName));
  weights.final_norm = as_vector(load(kFinalNormName));
  if (!config_.tied_embeddings) weights.output = as_matrix(load(kOutputName), tensor(kOutputName));
  return weights;
}

}  // namespace ekv
