// A model on disk (GGUF file or HF folder), opened lazily: the config and tensor index are
// read and validated on open; weights are dequantized to fp32 only when a layer is asked
// for, from memory-mapped files, so resident memory is about one layer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ekv/io/dtype.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/weights.hpp"

namespace ekv {

struct TensorRecord {
  std::string name;         // canonical (HF) name
  std::string source_name;  // name inside the file
  std::string file;         // the file that holds it
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;  // row-major, HF layout
  std::uint64_t elements() const;
};

class ModelSource {
 public:
  // A path to a .gguf file or to a folder with config.json and safetensors weights.
  static std::unique_ptr<ModelSource> open(const std::filesystem::path& path);
  virtual ~ModelSource() = default;

  virtual std::string format() const = 0;  // "gguf" or "hf"
  const std::filesystem::path& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const std::vector<TensorRecord>& tensors() const { return tensors_; }  // sorted by name
  const TensorRecord& tensor(const std::string& name) const;
  bool has_tensor(const std::string& name) const;

  // fp32 values in the HF layout; fails naming file and tensor on NaN or Inf.
  std::vector<float> load(const std::string& name) const;
  void load_into(const std::string& name, std::span<float> out) const;  // out.size() == elements
  Matrix matrix(const std::string& name) const;  // a 2-D tensor as [rows, cols]
  Vector vector(const std::string& name) const;
  LayerWeights layer(int index) const;
  GlobalWeights globals() const;

  // sha256 of the config, every tensor's name, dtype and shape, and the weight files' bytes
  // (docs/formats.md).
  const std::string& fingerprint() const { return fingerprint_; }
  // The fingerprint of the model an ekv tool made this one from (config.json ekv_source), or ""
  // (a GGUF, a folder ekv did not write).
  const std::string& source_fingerprint() const { return source_fingerprint_; }

 protected:
  explicit ModelSource(std::filesystem::path path) : path_(std::move(path)) {}
  virtual std::span<const std::byte> raw_bytes(const TensorRecord& record) const = 0;
  virtual void to_hf_layout(const TensorRecord& record, std::span<float> values) const {}
  // Checks that every expected tensor is present with its shape, then fingerprints.
  void finish_open();

  std::filesystem::path path_;
  ModelConfig config_;
  std::vector<TensorRecord> tensors_;
  std::string source_fingerprint_;

 private:
  const TensorRecord* find(const std::string& name) const;

  std::string fingerprint_;
};

// Fails naming the model unless it has ordinary attention (calibration, RoPE search, J-LRD and
// export start from the original model, not from an ekv-export folder).
void require_original_attention(const ModelSource& model, const std::string& tool);

std::unique_ptr<ModelSource> open_gguf_model(const std::filesystem::path& path);
std::unique_ptr<ModelSource> open_hf_model(const std::filesystem::path& folder);

}  // namespace ekv
