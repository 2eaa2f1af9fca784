// GGUF reader (versions 2 and 3): metadata, tensor index and mmap'd tensor data.
// Every count, length, shape and offset is bounded by the file size before it is used,
// so a corrupt or hostile file gives an ekv::Error that names the file and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ekv/core/mapped_file.hpp"
#include "ekv/io/dtype.hpp"

namespace ekv {

inline constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32

enum class GgufValueType : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};
std::string_view gguf_value_type_name(GgufValueType type);

// One metadata value. Scalars keep their natural kind; arrays hold one vector by kind.
struct GgufValue {
  GgufValueType type = GgufValueType::u32;
  GgufValueType element_type = GgufValueType::u32;  // for arrays
  std::uint64_t unsigned_value = 0;
  std::int64_t signed_value = 0;
  double float_value = 0;
  bool bool_value = false;
  std::string string_value;
  std::vector<std::string> strings;   // string arrays
  std::vector<std::int64_t> integers;  // integer and bool arrays
  std::vector<double> floats;          // float arrays

  bool is_integer() const;
  std::uint64_t array_size() const;
  std::string summary(std::size_t max_items = 8) const;  // for ekv-info
};

struct GgufTensorInfo {
  std::string name;
  std::vector<std::uint64_t> ne;  // GGUF order: ne[0] is the fastest-varying dimension
  std::uint32_t ggml_type = 0;
  DType dtype = DType::f32;
  std::uint64_t offset = 0;  // relative to the data section
  std::uint64_t bytes = 0;

  std::vector<std::int64_t> shape() const;  // row-major (reversed ne)
  std::uint64_t elements() const;
};

class GgufFile {
 public:
  explicit GgufFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return map_->path(); }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<std::string>& metadata_order() const { return metadata_order_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed lookups; a missing key or wrong kind names the file, the key, expected and found.
  std::uint64_t get_uint(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::vector<std::string>& get_strings(const std::string& key) const;
  const std::vector<std::int64_t>& get_integers(const std::string& key) const;
  const std::vector<double>& get_floats(const std::string& key) const;

  const GgufTensorInfo* find_tensor(const std::string& name) const;
  std::span<const std::byte> tensor_bytes(const GgufTensorInfo& info) const;

 private:
  const GgufValue& require(const std::string& key, const char* expected) const;

  std::shared_ptr<MappedFile> map_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<std::string> metadata_order_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

}  // namespace ekv
