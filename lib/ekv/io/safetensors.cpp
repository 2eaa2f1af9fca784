#include "ekv/io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "ekv/core/error.hpp"
#include "ekv/core/failpoint.hpp"

namespace ekv {

using nlohmann::json;

std::uint64_t SafetensorsEntry::elements() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= std::uint64_t(d);
  return n;
}

namespace {

// Parses the header, failing on duplicate top-level keys (plain json::parse keeps the last).
json parse_header(std::string_view text, const std::string& file) {
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key) {
      const std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    fail(cat(file, ": header is not valid JSON: ", e.what()));
  }
  EKV_CHECK(duplicate.empty(), file, ": duplicate tensor name ", duplicate, " in header");
  EKV_CHECK(header.is_object(), file, ": header is not a JSON object");
  return header;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : map_(std::make_unique<MappedFile>(path)) {
  const std::string file = path.string();
  const std::uint64_t size = map_->size();
  EKV_CHECK(size >= 8, file, ": not a safetensors file (", size, " bytes, too short for the header length)");
  std::uint64_t header_bytes;
  std::memcpy(&header_bytes, map_->data(), 8);
  EKV_CHECK(header_bytes <= kMaxHeaderBytes, file, ": header length ", header_bytes, " exceeds the limit of ",
            kMaxHeaderBytes, " bytes (not a safetensors file, or corrupt)");
  EKV_CHECK(header_bytes <= size - 8, file, ": truncated header: length ", header_bytes, " but only ", size - 8,
            " bytes follow");
  const std::string_view text(reinterpret_cast<const char*>(map_->data() + 8), header_bytes);
  EKV_CHECK(!text.empty() && text.front() == '{', file, ": not a safetensors file (header does not start with '{')");
  const json header = parse_header(text, file);
  data_offset_ = 8 + header_bytes;
  const std::uint64_t data_size = size - data_offset_;

  for (const auto& [name, value] : header.items()) {
    const std::string where = file + ": tensor " + name;
    if (name == "__metadata__") {
      EKV_CHECK(value.is_object(), file, ": __metadata__ is not an object");
      for (const auto& [key, text_value] : value.items()) {
        EKV_CHECK(text_value.is_string(), file, ": __metadata__.", key, ": expected a string");
        metadata_[key] = text_value.get<std::string>();
      }
      continue;
    }
    EKV_CHECK(value.is_object(), where, ": entry is not an object");
    SafetensorsEntry entry;
    entry.name = name;
    EKV_CHECK(value.contains("dtype") && value["dtype"].is_string(), where, ": missing dtype");
    const std::string dtype = value["dtype"].get<std::string>();
    const auto parsed = dtype_from_safetensors(dtype);
    EKV_CHECK(parsed.has_value(), where, ": dtype ", dtype, " is not supported");
    entry.dtype = *parsed;
    EKV_CHECK(value.contains("shape") && value["shape"].is_array(), where, ": missing shape");
    EKV_CHECK(value["shape"].size() <= 8, where, ": ", value["shape"].size(), " dimensions (at most 8)");
    std::uint64_t elements = 1;
    for (const auto& dim : value["shape"]) {
      EKV_CHECK(dim.is_number_unsigned(), where, ": shape entries must be non-negative integers");
      const auto d = dim.get<std::uint64_t>();
      EKV_CHECK(!__builtin_mul_overflow(elements, d, &elements) && d <= (std::uint64_t(1) << 62), where,
                ": element count overflows");
      entry.shape.push_back(std::int64_t(d));
    }
    EKV_CHECK(value.contains("data_offsets") && value["data_offsets"].is_array() && value["data_offsets"].size() == 2 &&
                  value["data_offsets"][0].is_number_unsigned() && value["data_offsets"][1].is_number_unsigned(),
              where, ": data_offsets must be two non-negative integers");
    entry.begin = value["data_offsets"][0].get<std::uint64_t>();
    entry.end = value["data_offsets"][1].get<std::uint64_t>();
    EKV_CHECK(entry.begin <= entry.end, where, ": data_offsets [", entry.begin, ", ", entry.end, "] are reversed");
    EKV_CHECK(entry.end <= data_size, where, ": data [", entry.begin, ", ", entry.end, ") lies outside the ",
              data_size, "-byte data section (truncated or corrupt file)");
    const std::uint64_t expected = storage_bytes(entry.dtype, elements);
    EKV_CHECK(entry.end - entry.begin == expected, where, ": shape and dtype need ", expected,
              " bytes, data_offsets give ", entry.end - entry.begin);
    entries_.push_back(std::move(entry));
  }
  std::sort(entries_.begin(), entries_.end(),
            [](const auto& a, const auto& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  for (std::size_t i = 1; i < entries_.size(); ++i)
    EKV_CHECK(entries_[i].begin >= entries_[i - 1].end || entries_[i].begin == entries_[i].end, file, ": tensors ",
              entries_[i - 1].name, " and ", entries_[i].name, " overlap");
  std::sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const SafetensorsEntry& e, const std::string& n) { return e.name < n; });
  return (it != entries_.end() && it->name == name) ? &*it : nullptr;
}

std::span<const std::byte> SafetensorsFile::bytes(const SafetensorsEntry& entry) const {
  return {map_->data() + data_offset_ + entry.begin, std::size_t(entry.end - entry.begin)};
}

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, std::map<std::string, std::string> metadata)
    : output_(std::move(path)), metadata_(std::move(metadata)) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_) std::fclose(file_);
}

void SafetensorsWriter::declare(const std::string& name, DType dtype, std::vector<std::int64_t> shape) {
  EKV_CHECK(!file_, output_.final_path().string(), ": declare after writing started");
  EKV_CHECK(name != "__metadata__", output_.final_path().string(), ": reserved tensor name");
  for (const auto& entry : declared_)
    EKV_CHECK(entry.name != name, output_.final_path().string(), ": tensor ", name, " declared twice");
  SafetensorsEntry entry;
  entry.name = name;
  entry.dtype = dtype;
  entry.shape = std::move(shape);
  safetensors_name(dtype);  // fails for types safetensors cannot hold
  entry.begin = declared_.empty() ? 0 : declared_.back().end;
  entry.end = entry.begin + storage_bytes(dtype, entry.elements());
  declared_.push_back(std::move(entry));
}

void SafetensorsWriter::write_header() {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  for (const auto& entry : declared_)
    header[entry.name] = {{"dtype", safetensors_name(entry.dtype)},
                          {"shape", entry.shape},
                          {"data_offsets", {entry.begin, entry.end}}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  file_ = std::fopen(output_.temp_path().c_str(), "wb");
  EKV_CHECK(file_, output_.temp_path().string(), ": cannot create: ", std::strerror(errno));
  const std::uint64_t length = text.size();
  EKV_CHECK(std::fwrite(&length, 8, 1, file_) == 1 && std::fwrite(text.data(), 1, text.size(), file_) == text.size(),
            output_.temp_path().string(), ": write failed: ", std::strerror(errno));
}

void SafetensorsWriter::start_tensor(const std::string& name, std::size_t bytes) {
  if (!file_) write_header();
  EKV_CHECK(next_ < declared_.size() && declared_[next_].name == name, output_.final_path().string(),
            ": tensor ", name, " written out of declaration order");
  const SafetensorsEntry& entry = declared_[next_++];
  EKV_CHECK(bytes == entry.end - entry.begin, output_.final_path().string(), ": tensor ", name, ": ", bytes,
            " bytes given, ", entry.end - entry.begin, " declared");
}

void SafetensorsWriter::append(std::span<const std::byte> data) {
  EKV_CHECK(std::fwrite(data.data(), 1, data.size(), file_) == data.size(), output_.temp_path().string(),
            ": write failed (disk full?): ", std::strerror(errno));
}

void SafetensorsWriter::write(const std::string& name, std::span<const std::byte> data) {
  start_tensor(name, data.size());
  append(data);
  failpoint("write");
}

void SafetensorsWriter::write_floats(const std::string& name, std::span<const float> values) {
  EKV_CHECK(next_ < declared_.size(), output_.final_path().string(), ": tensor ", name, " was not declared");
  const DType dtype = declared_[next_].dtype;
  start_tensor(name, storage_bytes(dtype, values.size()));
  encode_in_slices(dtype, values, [&](std::span<const std::byte> bytes) { append(bytes); });
  failpoint("write");
}

void SafetensorsWriter::commit() {
  if (!file_) write_header();
  EKV_CHECK(next_ == declared_.size(), output_.final_path().string(), ": ", declared_.size() - next_,
            " declared tensors were never written");
  close_and_commit(file_, output_);
}

}  // namespace ekv
