#include "ekv/io/gguf.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "ekv/core/error.hpp"

namespace ekv {

namespace {

constexpr std::uint32_t kMaxDims = 4;          // GGML_MAX_DIMS

// Reads little-endian values from the mapped header; every read is bounds-checked.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, std::string file) : bytes_(bytes), file_(std::move(file)) {}

  std::uint64_t position() const { return position_; }
  std::uint64_t remaining() const { return bytes_.size() - position_; }

  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes_.data() + position_, sizeof(T));
    position_ += sizeof(T);
    return value;
  }

  std::string read_string(const std::string& what) {
    const auto length = read<std::uint64_t>(what + " (string length)");
    EKV_CHECK(length <= remaining(), file_, ": ", what, ": string length ", length, " exceeds the ", remaining(),
              " bytes left in the file (corrupt or truncated)");
    std::string text(reinterpret_cast<const char*>(bytes_.data() + position_), std::size_t(length));
    position_ += length;
    return text;
  }

  // Fails unless `count` items of at least `min_item_bytes` each could still fit.
  void check_count(std::uint64_t count, std::uint64_t min_item_bytes, const std::string& what) {
    EKV_CHECK(min_item_bytes == 0 || count <= remaining() / min_item_bytes, file_, ": ", what, ": count ", count,
              " cannot fit in the ", remaining(), " bytes left in the file (corrupt or hostile)");
  }

 private:
  void need(std::uint64_t size, const std::string& what) {
    EKV_CHECK(size <= remaining(), file_, ": truncated header: need ", size, " bytes for ", what, " at byte ",
              position_, ", file has ", bytes_.size());
  }

  std::span<const std::byte> bytes_;
  std::string file_;
  std::uint64_t position_ = 0;
};

std::uint64_t scalar_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::u8: case GgufValueType::i8: case GgufValueType::boolean: return 1;
    case GgufValueType::u16: case GgufValueType::i16: return 2;
    case GgufValueType::u32: case GgufValueType::i32: case GgufValueType::f32: return 4;
    case GgufValueType::u64: case GgufValueType::i64: case GgufValueType::f64: return 8;
    case GgufValueType::string: return 8;  // at least its length field
    case GgufValueType::array: return 12;  // element type + count
  }
  return 0;
}

bool valid_type(std::uint32_t raw) { return raw <= 12; }

// Reads one scalar of `type` into `value`'s scalar fields.
void read_scalar(Cursor& in, GgufValueType type, GgufValue& value, const std::string& what) {
  switch (type) {
    case GgufValueType::u8: value.unsigned_value = in.read<std::uint8_t>(what); break;
    case GgufValueType::i8: value.signed_value = in.read<std::int8_t>(what); break;
    case GgufValueType::u16: value.unsigned_value = in.read<std::uint16_t>(what); break;
    case GgufValueType::i16: value.signed_value = in.read<std::int16_t>(what); break;
    case GgufValueType::u32: value.unsigned_value = in.read<std::uint32_t>(what); break;
    case GgufValueType::i32: value.signed_value = in.read<std::int32_t>(what); break;
    case GgufValueType::u64: value.unsigned_value = in.read<std::uint64_t>(what); break;
    case GgufValueType::i64: value.signed_value = in.read<std::int64_t>(what); break;
    case GgufValueType::f32: value.float_value = in.read<float>(what); break;
    case GgufValueType::f64: value.float_value = in.read<double>(what); break;
    case GgufValueType::boolean: value.bool_value = in.read<std::uint8_t>(what) != 0; break;
    case GgufValueType::string: value.string_value = in.read_string(what); break;
    case GgufValueType::array: fail("internal: array as scalar");
  }
  if (type == GgufValueType::u8 || type == GgufValueType::u16 || type == GgufValueType::u32 ||
      type == GgufValueType::u64)
    value.signed_value = std::int64_t(value.unsigned_value);
  else if (type == GgufValueType::i8 || type == GgufValueType::i16 || type == GgufValueType::i32 ||
           type == GgufValueType::i64)
    value.unsigned_value = std::uint64_t(value.signed_value);
}

GgufValue read_value(Cursor& in, GgufValueType type, const std::string& file, const std::string& key) {
  GgufValue value;
  value.type = type;
  if (type != GgufValueType::array) {
    read_scalar(in, type, value, "metadata " + key);
    return value;
  }
  const auto raw_element = in.read<std::uint32_t>("metadata " + key + " (array type)");
  EKV_CHECK(valid_type(raw_element), file, ": metadata ", key, ": unknown array element type ", raw_element);
  const auto element = GgufValueType(raw_element);
  EKV_CHECK(element != GgufValueType::array, file, ": metadata ", key,
            ": nested arrays are not supported");
  value.element_type = element;
  const auto count = in.read<std::uint64_t>("metadata " + key + " (array length)");
  in.check_count(count, scalar_size(element), "metadata " + key + " array length");
  for (std::uint64_t i = 0; i < count; ++i) {
    GgufValue item;
    read_scalar(in, element, item, "metadata " + key + " element");
    if (element == GgufValueType::string)
      value.strings.push_back(std::move(item.string_value));
    else if (element == GgufValueType::f32 || element == GgufValueType::f64)
      value.floats.push_back(item.float_value);
    else if (element == GgufValueType::boolean)
      value.integers.push_back(item.bool_value ? 1 : 0);
    else
      value.integers.push_back(item.signed_value);
  }
  return value;
}

}  // namespace

std::string_view gguf_value_type_name(GgufValueType type) {
  static constexpr std::string_view names[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                               "bool", "string", "array", "u64", "i64", "f64"};
  const auto index = std::uint32_t(type);
  return index < std::size(names) ? names[index] : "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::u8: case GgufValueType::i8: case GgufValueType::u16: case GgufValueType::i16:
    case GgufValueType::u32: case GgufValueType::i32: case GgufValueType::u64: case GgufValueType::i64:
      return true;
    default: return false;
  }
}

std::uint64_t GgufValue::array_size() const { return strings.size() + integers.size() + floats.size(); }

std::string GgufValue::summary(std::size_t max_items) const {
  std::ostringstream os;
  switch (type) {
    case GgufValueType::string:
      os << '"' << (string_value.size() > 80 ? string_value.substr(0, 77) + "..." : string_value) << '"';
      break;
    case GgufValueType::boolean: os << (bool_value ? "true" : "false"); break;
    case GgufValueType::f32: case GgufValueType::f64: os << float_value; break;
    case GgufValueType::array: {
      os << "[" << gguf_value_type_name(element_type) << " x " << array_size() << "]";
      const std::size_t shown = std::min<std::size_t>(array_size(), max_items);
      os << " ";
      for (std::size_t i = 0; i < shown; ++i) {
        if (i) os << ", ";
        if (!strings.empty()) os << '"' << strings[i] << '"';
        else if (!floats.empty()) os << floats[i];
        else os << integers[i];
      }
      if (shown < array_size()) os << ", ...";
      break;
    }
    default:
      if (type == GgufValueType::i8 || type == GgufValueType::i16 || type == GgufValueType::i32 ||
          type == GgufValueType::i64)
        os << signed_value;
      else
        os << unsigned_value;
  }
  return os.str();
}

std::vector<std::int64_t> GgufTensorInfo::shape() const {
  return std::vector<std::int64_t>(ne.rbegin(), ne.rend());
}

std::uint64_t GgufTensorInfo::elements() const {
  std::uint64_t n = 1;
  for (auto d : ne) n *= d;
  return n;
}

GgufFile::GgufFile(const std::filesystem::path& path) : map_(std::make_shared<MappedFile>(path)) {
  const std::string file = path.string();
  Cursor in(map_->bytes(), file);
  EKV_CHECK(map_->size() >= 4, file, ": not a GGUF file (", map_->size(), " bytes, too short for the magic)");
  const auto magic = in.read<std::uint32_t>("magic");
  EKV_CHECK(magic == kGgufMagic, file, ": not a GGUF file (bad magic 0x", std::hex, magic, ", expected \"GGUF\")");
  version_ = in.read<std::uint32_t>("version");
  EKV_CHECK(!(version_ > 0xFFFF && __builtin_bswap32(version_) <= 3), file,
            ": big-endian GGUF files are not supported");
  EKV_CHECK(version_ >= 2, file, ": GGUF version ", version_, " is too old (supported: 2, 3)");
  EKV_CHECK(version_ <= 3, file, ": GGUF version ", version_, " is newer than this reader (supported: 2, 3)");

  const auto tensor_count = in.read<std::uint64_t>("tensor count");
  const auto kv_count = in.read<std::uint64_t>("metadata count");
  in.check_count(kv_count, 8 + 4 + 1, "metadata count");  // key length, type, smallest value

  for (std::uint64_t i = 0; i < kv_count; ++i) {
    std::string key = in.read_string(cat("metadata key #", i));
    const auto raw_type = in.read<std::uint32_t>("metadata " + key + " (type)");
    EKV_CHECK(valid_type(raw_type), file, ": metadata ", key, ": unknown value type ", raw_type);
    GgufValue value = read_value(in, GgufValueType(raw_type), file, key);
    EKV_CHECK(!metadata_.count(key), file, ": duplicate metadata key ", key);
    metadata_order_.push_back(key);
    metadata_.emplace(std::move(key), std::move(value));
  }

  if (const GgufValue* align = find("general.alignment")) {
    EKV_CHECK(align->is_integer(), file, ": metadata general.alignment: expected an integer, found ",
              gguf_value_type_name(align->type));
    alignment_ = align->unsigned_value;
    EKV_CHECK(alignment_ > 0 && (alignment_ & (alignment_ - 1)) == 0 && alignment_ <= 65536, file,
              ": metadata general.alignment: expected a power of two, found ", alignment_);
  }

  in.check_count(tensor_count, 8 + 4 + 8 + 4 + 8, "tensor count");  // name, dims, one dim, type, offset
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    info.name = in.read_string(cat("tensor name #", i));
    const std::string where = file + ": tensor " + info.name;
    const auto n_dims = in.read<std::uint32_t>("tensor " + info.name + " (dimension count)");
    EKV_CHECK(n_dims >= 1 && n_dims <= kMaxDims, where, ": dimension count ", n_dims, " (expected 1 to ",
              kMaxDims, ")");
    std::uint64_t elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto size = in.read<std::uint64_t>("tensor " + info.name + " (dimension)");
      EKV_CHECK(size >= 1, where, ": dimension ", d, " is 0");
      EKV_CHECK(!__builtin_mul_overflow(elements, size, &elements), where, ": element count overflows");
      info.ne.push_back(size);
    }
    info.ggml_type = in.read<std::uint32_t>("tensor " + info.name + " (type)");
    const auto dtype = dtype_from_ggml(info.ggml_type);
    EKV_CHECK(dtype.has_value(), where, ": GGML type ", info.ggml_type, " (", ggml_type_name(info.ggml_type),
              ") is not supported (supported: ", supported_ggml_types(), ")");
    info.dtype = *dtype;
    info.offset = in.read<std::uint64_t>("tensor " + info.name + " (offset)");
    EKV_CHECK(info.ne[0] % dtype_info(info.dtype).block_elements == 0, where, ": row length ", info.ne[0],
              " is not a multiple of the ", dtype_name(info.dtype), " block size ",
              dtype_info(info.dtype).block_elements);
    try {
      info.bytes = storage_bytes(info.dtype, elements);
    } catch (const Error& e) {
      fail(cat(where, ": ", e.what()));
    }
    EKV_CHECK(!tensor_index_.count(info.name), file, ": duplicate tensor name ", info.name);
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back(std::move(info));
  }

  const std::uint64_t header_end = in.position();
  data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  const std::uint64_t file_size = map_->size();
  const std::uint64_t data_size = data_offset_ <= file_size ? file_size - data_offset_ : 0;
  for (const auto& info : tensors_) {
    const std::string where = file + ": tensor " + info.name;
    EKV_CHECK(info.offset % alignment_ == 0, where, ": offset ", info.offset, " is not aligned to ", alignment_);
    EKV_CHECK(info.offset <= data_size && info.bytes <= data_size - info.offset, where, ": data [", info.offset,
              ", ", info.offset + info.bytes, ") lies outside the ", data_size,
              "-byte data section (truncated or corrupt file)");
  }
  // Two tensors sharing bytes would alias each other's weights: a corrupt or hand-edited file.
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& info : tensors_) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& before = *by_offset[i - 1];
    const GgufTensorInfo& next = *by_offset[i];
    EKV_CHECK(next.offset >= before.offset + before.bytes, file, ": tensor ", next.name, ": data [", next.offset, ", ",
              next.offset + next.bytes, ") overlaps tensor ", before.name, " [", before.offset, ", ",
              before.offset + before.bytes, ")");
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::require(const std::string& key, const char* expected) const {
  const GgufValue* value = find(key);
  EKV_CHECK(value, path().string(), ": metadata ", key, ": missing (expected ", expected, ")");
  return *value;
}

std::uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue& value = require(key, "an unsigned integer");
  EKV_CHECK(value.is_integer() && value.signed_value >= 0, path().string(), ": metadata ", key,
            ": expected an unsigned integer, found ", gguf_value_type_name(value.type), " ", value.summary());
  return value.unsigned_value;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& value = require(key, "a number");
  if (value.is_integer()) return double(value.signed_value);
  EKV_CHECK(value.type == GgufValueType::f32 || value.type == GgufValueType::f64, path().string(), ": metadata ",
            key, ": expected a number, found ", gguf_value_type_name(value.type));
  return value.float_value;
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& value = require(key, "a bool");
  EKV_CHECK(value.type == GgufValueType::boolean, path().string(), ": metadata ", key,
            ": expected bool, found ", gguf_value_type_name(value.type));
  return value.bool_value;
}

const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue& value = require(key, "a string");
  EKV_CHECK(value.type == GgufValueType::string, path().string(), ": metadata ", key,
            ": expected string, found ", gguf_value_type_name(value.type));
  return value.string_value;
}

const std::vector<std::string>& GgufFile::get_strings(const std::string& key) const {
  const GgufValue& value = require(key, "an array of strings");
  EKV_CHECK(value.type == GgufValueType::array && value.element_type == GgufValueType::string, path().string(),
            ": metadata ", key, ": expected an array of strings, found ", value.summary(0));
  return value.strings;
}

const std::vector<std::int64_t>& GgufFile::get_integers(const std::string& key) const {
  const GgufValue& value = require(key, "an array of integers");
  EKV_CHECK(value.type == GgufValueType::array && value.strings.empty() && value.floats.empty(), path().string(),
            ": metadata ", key, ": expected an array of integers, found ", value.summary(0));
  return value.integers;
}

const std::vector<double>& GgufFile::get_floats(const std::string& key) const {
  const GgufValue& value = require(key, "an array of floats");
  EKV_CHECK(value.type == GgufValueType::array &&
                (value.element_type == GgufValueType::f32 || value.element_type == GgufValueType::f64),
            path().string(), ": metadata ", key, ": expected an array of floats, found ", value.summary(0));
  return value.floats;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> GgufFile::tensor_bytes(const GgufTensorInfo& info) const {
  return {map_->data() + data_offset_ + info.offset, std::size_t(info.bytes)};
}

}  // namespace ekv
