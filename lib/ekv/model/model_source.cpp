#include "ekv/model/model_source.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "ekv/core/atomic_output.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/leniency.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/core/file_digest.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/mapped_file.hpp"
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
  require_file_or_folder(path);
  require_committed(path);
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
  std::vector<std::string> expected_names;
  for (const auto& expected : expected_tensors(config_)) {
    expected_names.push_back(expected.name);
    EKV_CHECK(has_tensor(expected.name), path_.string(), ": tensor ", expected.name, " is missing");
    const TensorRecord& record = tensor(expected.name);
    EKV_CHECK(record.shape == expected.shape, record.file, ": tensor ", record.source_name, ": expected ",
              shape_text(expected.shape), ", found ", shape_text(record.shape));
    EKV_CHECK(dtype_info(record.dtype).decode, record.file, ": tensor ", record.source_name, ": dtype ",
              dtype_name(record.dtype), " cannot hold weights");
  }
  if (tensors_.size() > expected_names.size()) {
    std::sort(expected_names.begin(), expected_names.end());
    std::string unused;
    for (const auto& record : tensors_)
      if (!std::binary_search(expected_names.begin(), expected_names.end(), record.name) && unused.size() < 200)
        unused += (unused.empty() ? "" : ", ") + record.source_name;
    const std::string message = cat(path_.string(), ": ", tensors_.size() - expected_names.size(),
                                    " tensors are not used by ekv (", unused, ")");
    EKV_CHECK(leniency().unused_tensors, message, ": a layer count one short, or another architecture? "
              "(--allow-unused-tensors reads it anyway)");
    log::warn(message);
  }

  nlohmann::json identity = {{"config", config_to_hf(config_)}, {"tensors", nlohmann::json::array()}};
  for (const auto& record : tensors_)
    identity["tensors"].push_back({record.name, dtype_name(record.dtype), record.shape});
  // The bytes too: an edited copy of a model (same names and shapes, other weights) is another
  // model. Files are hashed whole, in the order their tensors' names first reach them, so the
  // digest does not depend on where the model lies.
  std::vector<std::string> files;
  for (const auto& record : tensors_)
    if (std::find(files.begin(), files.end(), record.file) == files.end()) files.push_back(record.file);
  identity["content_sha256"] = nlohmann::json::array();
  for (const auto& file : files) identity["content_sha256"].push_back(cached_file_sha256(file));
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

void ModelSource::load_into(const std::string& name, std::span<float> out) const {
  const TensorRecord& record = tensor(name);
  EKV_CHECK(out.size() == record.elements(), record.file, ": tensor ", record.source_name, ": ", out.size(),
            " values requested, tensor has ", record.elements());
  const std::span<const std::byte> source = raw_bytes(record);
  dequantize(record.dtype, source, out);
  release_pages(source);
  // Trained weights stay within a few hundred (SmolLM2's largest is 9.25); 1e30 in a finite file
  // is corruption or an edit, and the products it feeds overflow into an inf perplexity or worse.
  constexpr float kLargestPlausibleWeight = 1e6f;
  for (std::size_t i = 0; i < out.size(); ++i) {
    EKV_CHECK(std::isfinite(out[i]), record.file, ": tensor ", record.source_name, ": non-finite value ", out[i],
              " at element ", i);
    EKV_CHECK(std::abs(out[i]) <= kLargestPlausibleWeight, record.file, ": tensor ", record.source_name, ": value ",
              out[i], " at element ", i, " is past ", kLargestPlausibleWeight,
              " in magnitude: no trained model's weight is near it (a corrupt or edited file)");
  }
  to_hf_layout(record, out);
}

std::vector<float> ModelSource::load(const std::string& name) const {
  std::vector<float> values(tensor(name).elements());
  load_into(name, values);
  return values;
}

Matrix ModelSource::matrix(const std::string& name) const {
  const TensorRecord& record = tensor(name);
  EKV_CHECK(record.shape.size() == 2, record.file, ": tensor ", record.source_name, " is not a matrix");
  Matrix m(record.shape[0], record.shape[1]);  // dequantized straight into the Eigen storage
  load_into(name, {m.data(), std::size_t(m.size())});
  return m;
}

Vector ModelSource::vector(const std::string& name) const {
  Vector v(Eigen::Index(tensor(name).elements()));
  load_into(name, {v.data(), std::size_t(v.size())});
  return v;
}

LayerWeights ModelSource::layer(int index) const {
  EKV_CHECK(index >= 0 && index < config_.layers, path_.string(), ": layer ", index, " out of range [0, ",
            config_.layers, ")");
  auto matrix = [&](const char* suffix) { return this->matrix(layer_tensor_name(index, suffix)); };
  auto vector = [&](const char* suffix) { return this->vector(layer_tensor_name(index, suffix)); };
  LayerWeights weights;
  weights.index = index;
  weights.attn_norm = vector("input_layernorm");
  weights.wq = matrix("self_attn.q_proj");
  if (config_.elitekv.enabled()) {
    weights.wk_rope = matrix("self_attn.k_rope_proj");
    weights.kv_a = matrix("self_attn.kv_a_proj");
    weights.k_b = matrix("self_attn.k_b_proj");
    weights.v_b = matrix("self_attn.v_b_proj");
  } else {
    weights.wk = matrix("self_attn.k_proj");
    weights.wv = matrix("self_attn.v_proj");
  }
  weights.wo = matrix("self_attn.o_proj");
  if (config_.attention_bias) {
    auto bias = [&](const char* suffix) { return this->vector(layer_bias_name(index, suffix)); };
    weights.bq = bias("self_attn.q_proj");
    if (config_.elitekv.enabled()) {
      weights.bk_rope = bias("self_attn.k_rope_proj");
      weights.bv = bias("self_attn.v_b_proj");
    } else {
      weights.bk = bias("self_attn.k_proj");
      weights.bv = bias("self_attn.v_proj");
    }
  }
  weights.ffn_norm = vector("post_attention_layernorm");
  weights.w_gate = matrix("mlp.gate_proj");
  weights.w_up = matrix("mlp.up_proj");
  weights.w_down = matrix("mlp.down_proj");
  return weights;
}

void require_original_attention(const ModelSource& model, const std::string& tool) {
  EKV_CHECK(!model.config().elitekv.enabled(), model.path().string(), ": already an EliteKV model (ekv-export); ",
            tool, " starts from the original model");
}

GlobalWeights ModelSource::globals() const {
  GlobalWeights weights;
  weights.embedding = matrix(kEmbeddingName);
  weights.final_norm = vector(kFinalNormName);
  if (!config_.tied_embeddings) weights.output = matrix(kOutputName);
  return weights;
}

}  // namespace ekv
