// GGUF writer (version 3, little-endian), the counterpart of GgufFile: metadata in the order it
// is added, the tensor index, then the tensors, each aligned to general.alignment (32). Like
// SafetensorsWriter, tensors are declared first (so every offset is known when the header is
// written) and then written in declaration order, one at a time, so a model larger than memory
// streams through. The file appears atomically at commit().
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ekv/core/atomic_output.hpp"
#include "ekv/io/dtype.hpp"
#include "ekv/io/gguf.hpp"

namespace ekv {

class GgufWriter {
 public:
  explicit GgufWriter(std::filesystem::path path);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata, before the first tensor is written; each key once.
  void set(const std::string& key, GgufValue value);
  void set_string(const std::string& key, const std::string& value);
  void set_u32(const std::string& key, std::uint32_t value);
  void set_f32(const std::string& key, float value);
  void set_bool(const std::string& key, bool value);

  // A tensor of row-major `shape` (stored as GGUF ne, fastest dimension first) in f32, f16,
  // bf16 or q8_0 (whose rows must be whole blocks), before the first tensor is written.
  void declare(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape);
  // The next declared tensor's values, encoded into its dtype.
  void write(const std::string& name, std::span<const float> values);
  // After every declared tensor: flush, fsync and rename into place.
  void commit();

 private:
  struct Declared {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t offset = 0;  // in the data section
    std::uint64_t bytes = 0;
  };
  void write_header();
  void append(const void* data, std::size_t bytes);

  AtomicOutput output_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Declared> tensors_;
  std::size_t next_ = 0;
  std::uint64_t data_bytes_ = 0;  // written to the data section so far
  std::FILE* file_ = nullptr;
};

}  // namespace ekv
