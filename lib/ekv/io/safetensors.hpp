// safetensors: an 8-byte little-endian header length, a JSON header, then raw tensor data.
// The reader maps the file and validates every entry before any tensor is touched; the
// writer streams tensors in declared order into an atomic output.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ekv/core/atomic_output.hpp"
#include "ekv/core/mapped_file.hpp"
#include "ekv/io/dtype.hpp"

namespace ekv {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets relative to the data section
  std::uint64_t end = 0;

  std::uint64_t elements() const;
};

class SafetensorsFile {
 public:
  static constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;  // as the reference implementation

  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return map_->path(); }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // sorted by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* find(const std::string& name) const;
  std::span<const std::byte> bytes(const SafetensorsEntry& entry) const;

 private:
  std::unique_ptr<MappedFile> map_;
  std::uint64_t data_offset_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::filesystem::path path, std::map<std::string, std::string> metadata = {});
  ~SafetensorsWriter();

  // Declare every tensor first (the header needs all offsets) ...
  void declare(const std::string& name, DType dtype, std::vector<std::int64_t> shape);
  // ... then write their bytes in declaration order, then commit.
  void write(const std::string& name, std::span<const std::byte> data);
  void write_floats(const std::string& name, std::span<const float> values);  // encodes to the declared dtype
  void commit();

 private:
  void write_header();
  void start_tensor(const std::string& name, std::size_t bytes);  // checks order and size
  void append(std::span<const std::byte> data);

  AtomicOutput output_;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> declared_;
  std::size_t next_ = 0;
  std::FILE* file_ = nullptr;
};

}  // namespace ekv
