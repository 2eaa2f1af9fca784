#include "ekv/io/gguf_writer.hpp"

#include <cerrno>
#include <cstring>

#include "ekv/core/error.hpp"
#include "ekv/core/failpoint.hpp"

namespace ekv {

namespace {
constexpr std::uint64_t kAlignment = 32;      // GGUF's default general.alignment

std::uint64_t align_up(std::uint64_t value) { return (value + kAlignment - 1) / kAlignment * kAlignment; }

// Little-endian bytes of one header; GGUF stores exactly the host's layout on x86 and ARM.
class Bytes {
 public:
  template <class T>
  void put(T value) {
    const auto* raw = reinterpret_cast<const std::byte*>(&value);
    bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
  }
  void put_string(const std::string& text) {
    put<std::uint64_t>(text.size());
    const auto* raw = reinterpret_cast<const std::byte*>(text.data());
    bytes_.insert(bytes_.end(), raw, raw + text.size());
  }
  // One scalar of `type` from the value's fields (GgufValue keeps integers in both signed and
  // unsigned form, floats as double).
  void put_scalar(GgufValueType type, std::int64_t integer, double real, bool flag, const std::string& text) {
    switch (type) {
      case GgufValueType::u8: put<std::uint8_t>(std::uint8_t(integer)); return;
      case GgufValueType::i8: put<std::int8_t>(std::int8_t(integer)); return;
      case GgufValueType::u16: put<std::uint16_t>(std::uint16_t(integer)); return;
      case GgufValueType::i16: put<std::int16_t>(std::int16_t(integer)); return;
      case GgufValueType::u32: put<std::uint32_t>(std::uint32_t(integer)); return;
      case GgufValueType::i32: put<std::int32_t>(std::int32_t(integer)); return;
      case GgufValueType::u64: put<std::uint64_t>(std::uint64_t(integer)); return;
      case GgufValueType::i64: put<std::int64_t>(integer); return;
      case GgufValueType::f32: put<float>(float(real)); return;
      case GgufValueType::f64: put<double>(real); return;
      case GgufValueType::boolean: put<std::uint8_t>(flag ? 1 : 0); return;
      case GgufValueType::string: put_string(text); return;
      case GgufValueType::array: fail("GGUF writer: nested arrays are not written");
    }
  }
  void put_value(const GgufValue& value) {
    put<std::uint32_t>(std::uint32_t(value.type));
    if (value.type != GgufValueType::array) {
      put_scalar(value.type, value.signed_value, value.float_value, value.bool_value, value.string_value);
      return;
    }
    put<std::uint32_t>(std::uint32_t(value.element_type));
    put<std::uint64_t>(value.array_size());
    for (const auto& text : value.strings) put_scalar(value.element_type, 0, 0, false, text);
    for (std::int64_t integer : value.integers) put_scalar(value.element_type, integer, 0, integer != 0, "");
    for (double real : value.floats) put_scalar(value.element_type, 0, real, false, "");
  }
  const std::vector<std::byte>& bytes() const { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};
}  // namespace

GgufWriter::GgufWriter(std::filesystem::path path) : output_(std::move(path)) {}

GgufWriter::~GgufWriter() {
  if (file_) std::fclose(file_);
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  const std::string file = output_.final_path().string();
  EKV_CHECK(!file_, file, ": metadata ", key, " set after the tensors started");
  for (const auto& [existing, ignored] : metadata_) EKV_CHECK(existing != key, file, ": metadata ", key, " set twice");
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::set_string(const std::string& key, const std::string& value) {
  GgufValue v;
  v.type = GgufValueType::string;
  v.string_value = value;
  set(key, std::move(v));
}

void GgufWriter::set_u32(const std::string& key, std::uint32_t value) {
  GgufValue v;
  v.type = GgufValueType::u32;
  v.unsigned_value = value;
  v.signed_value = value;
  set(key, std::move(v));
}

void GgufWriter::set_f32(const std::string& key, float value) {
  GgufValue v;
  v.type = GgufValueType::f32;
  v.float_value = value;
  set(key, std::move(v));
}

void GgufWriter::set_bool(const std::string& key, bool value) {
  GgufValue v;
  v.type = GgufValueType::boolean;
  v.bool_value = value;
  set(key, std::move(v));
}

void GgufWriter::declare(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape) {
  const std::string file = output_.final_path().string();
  EKV_CHECK(!file_, file, ": tensor ", name, " declared after the tensors started");
  EKV_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::q8_0, file,
            ": tensor ", name, ": ", dtype_name(dtype), " is not written (f32, f16, bf16, q8_0)");
  EKV_CHECK(!shape.empty() && shape.size() <= 4, file, ": tensor ", name, ": ", shape.size(), " dimensions (1 to 4)");
  std::uint64_t elements = 1;
  for (auto extent : shape) {
    EKV_CHECK(extent > 0, file, ": tensor ", name, ": extent ", extent);
    elements *= std::uint64_t(extent);
  }
  EKV_CHECK(std::uint64_t(shape.back()) % dtype_info(dtype).block_elements == 0, file, ": tensor ", name,
            ": rows of ", shape.back(), " are not whole ", dtype_name(dtype), " blocks of ",
            dtype_info(dtype).block_elements);
  for (const auto& tensor : tensors_) EKV_CHECK(tensor.name != name, file, ": tensor ", name, " declared twice");
  Declared tensor{name, dtype, shape, tensors_.empty() ? 0 : align_up(tensors_.back().offset + tensors_.back().bytes),
                  storage_bytes(dtype, elements)};
  tensors_.push_back(std::move(tensor));
}

void GgufWriter::append(const void* data, std::size_t bytes) {
  EKV_CHECK(std::fwrite(data, 1, bytes, file_) == bytes, output_.temp_path().string(),
            ": write failed (disk full?): ", std::strerror(errno));
}

void GgufWriter::write_header() {
  Bytes header;
  header.put<std::uint32_t>(kGgufMagic);
  header.put<std::uint32_t>(3);
  header.put<std::uint64_t>(tensors_.size());
  header.put<std::uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    header.put_string(key);
    header.put_value(value);
  }
  for (const auto& tensor : tensors_) {
    header.put_string(tensor.name);
    header.put<std::uint32_t>(std::uint32_t(tensor.shape.size()));
    for (auto it = tensor.shape.rbegin(); it != tensor.shape.rend(); ++it) header.put<std::uint64_t>(std::uint64_t(*it));
    header.put<std::uint32_t>(ggml_id(tensor.dtype));
    header.put<std::uint64_t>(tensor.offset);
  }
  file_ = std::fopen(output_.temp_path().c_str(), "wb");
  EKV_CHECK(file_, output_.temp_path().string(), ": cannot create: ", std::strerror(errno));
  append(header.bytes().data(), header.bytes().size());
  const std::vector<char> padding(align_up(header.bytes().size()) - header.bytes().size(), 0);
  append(padding.data(), padding.size());
}

void GgufWriter::write(const std::string& name, std::span<const float> values) {
  if (!file_) write_header();
  const std::string file = output_.final_path().string();
  EKV_CHECK(next_ < tensors_.size() && tensors_[next_].name == name, file, ": tensor ", name,
            " written out of declaration order");
  const Declared& tensor = tensors_[next_++];
  EKV_CHECK(storage_bytes(tensor.dtype, values.size()) == tensor.bytes, file, ": tensor ", name, ": ",
            values.size(), " values for its declared shape");
  const std::vector<char> padding(tensor.offset - data_bytes_, 0);
  append(padding.data(), padding.size());
  encode_in_slices(tensor.dtype, values, [&](std::span<const std::byte> bytes) { append(bytes.data(), bytes.size()); });
  data_bytes_ = tensor.offset + tensor.bytes;
  failpoint("write");
}

void GgufWriter::commit() {
  if (!file_) write_header();
  EKV_CHECK(next_ == tensors_.size(), output_.final_path().string(), ": ", tensors_.size() - next_,
            " declared tensors were never written");
  close_and_commit(file_, output_);
}

}  // namespace ekv
