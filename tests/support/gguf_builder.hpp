// Builds GGUF files byte by byte for tests: valid tiny LLaMA models with planted weights,
// and corrupt variants through explicit overrides.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ekv/model/config.hpp"
#include "ekv/model/weights.hpp"

namespace ekv::test {

using Bytes = std::vector<std::uint8_t>;

class GgufBuilder {
 public:
  std::uint32_t magic = 0x46554747;
  std::uint32_t version = 3;
  std::uint64_t alignment = 32;
  std::optional<std::uint64_t> tensor_count_override;
  std::optional<std::uint64_t> kv_count_override;

  void add_u32(const std::string& key, std::uint32_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string(const std::string& key, const std::string& value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  // Appends raw bytes as one more key/value entry (for hostile encodings).
  void add_raw_kv(const Bytes& bytes);

  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> ne;  // GGUF order
    std::uint32_t type = 0;
    Bytes data;
    std::optional<std::uint64_t> offset_override;
  };
  void add_tensor(Tensor tensor);
  void add_f32_tensor(const std::string& name, std::vector<std::uint64_t> ne, const std::vector<float>& values);
  std::vector<Tensor>& tensors() { return tensors_; }

  Bytes build() const;
  std::size_t header_bytes() const;  // bytes before the (aligned) data section

 private:
  Bytes kv_;
  std::uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

// Little-endian helpers for hand-made byte strings.
void put_u32(Bytes& out, std::uint32_t v);
void put_u64(Bytes& out, std::uint64_t v);
void put_string(Bytes& out, const std::string& s);

// A tiny LLaMA with random weights (seeded), HF layout, and the same model as GGUF bytes
// (Q/K rows permuted the way llama.cpp's converter stores them).
struct TinyModel {
  ModelConfig config;
  std::vector<LayerWeights> layers;
  GlobalWeights globals;
};
// biased: a qwen2 with q/k/v biases (drawn large, N(0, 1), so that dropping or misplacing one shows).
TinyModel make_tiny_model(std::uint32_t seed = 7, bool biased = false);
// tokenizer: also a toy tokenizer (one printable token per id, no merges), for writers that carry it.
GgufBuilder tiny_model_gguf(const TinyModel& model, bool tokenizer = false);

void write_file(const std::filesystem::path& path, const Bytes& bytes);
std::filesystem::path temp_dir(const std::string& name);  // fresh, empty folder under the system temp dir

}  // namespace ekv::test
