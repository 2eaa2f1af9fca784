#include "ekv/io/artifact.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ekv/core/atomic_output.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/failpoint.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/core/run_context.hpp"
#include "ekv/core/sha256.hpp"
#include "ekv/core/version.hpp"

namespace ekv {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// HDF5 prints its own error stack unless told not to; ekv reports errors itself.
void silence_hdf5() {
  static const bool done = [] {
    // No library teardown at exit: HDF5 1.10 crashes there (H5F__close_cb) after a close that
    // failed on a full disk, turning a clear error into a segfault. Every file is closed by now.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

// Closes an HDF5 id with the right function when it leaves scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

hid_t native_type(ElementKind kind) {
  switch (kind) {
    case ElementKind::f32: return H5T_NATIVE_FLOAT;
    case ElementKind::f64: return H5T_NATIVE_DOUBLE;
    case ElementKind::i32: return H5T_NATIVE_INT32;
    case ElementKind::i64: return H5T_NATIVE_INT64;
    case ElementKind::u8: return H5T_NATIVE_UINT8;
    case ElementKind::u16: return H5T_NATIVE_UINT16;
  }
  return -1;
}

std::size_t element_size(ElementKind kind) {
  switch (kind) {
    case ElementKind::f32: case ElementKind::i32: return 4;
    case ElementKind::f64: case ElementKind::i64: return 8;
    case ElementKind::u8: return 1;
    case ElementKind::u16: return 2;
  }
  return 0;
}

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  if (shape.empty()) return "scalar";
  std::ostringstream os;
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? "×" : "") << shape[i];
  return os.str();
}

std::string expected_text(const std::vector<std::int64_t>& shape) {
  std::ostringstream os;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    os << (i ? "×" : "");
    if (shape[i] < 0) os << "*"; else os << shape[i];
  }
  return os.str();
}

std::string json_inputs(const std::vector<ArtifactInput>& inputs) {
  json list = json::array();
  for (const auto& input : inputs) list.push_back({{"path", input.path}, {"type", input.type}, {"digest", input.digest}});
  return list.dump();
}

constexpr std::int64_t kMaxReadBytes = std::int64_t(16) << 30;  // refuse absurd dataset sizes

}  // namespace

std::string utc_now_iso8601() {
  std::time_t now = std::time(nullptr);
  // SOURCE_DATE_EPOCH (reproducible-builds.org) fixes the recorded time, so that two runs on the
  // same inputs write identical bytes, not only identical datasets.
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH"); epoch && *epoch) {
    char* end = nullptr;
    errno = 0;
    const long long seconds = std::strtoll(epoch, &end, 10);
    EKV_CHECK(*end == '\0' && errno == 0 && seconds >= 0, "SOURCE_DATE_EPOCH=", epoch,
              ": must be whole seconds since 1970 (or unset)");
    now = std::time_t(seconds);
  }
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

ArtifactInput file_input(const fs::path& path, const std::string& type) {
  return {path.string(), type, "sha256:" + sha256_file_hex(path)};
}

std::string_view element_kind_name(ElementKind kind) {
  switch (kind) {
    case ElementKind::f32: return "float32";
    case ElementKind::f64: return "float64";
    case ElementKind::i32: return "int32";
    case ElementKind::i64: return "int64";
    case ElementKind::u8: return "uint8";
    case ElementKind::u16: return "uint16";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------
// Writer

ArtifactWriter::ArtifactWriter(fs::path path, std::string type, std::int64_t format_version,
                               std::string model_fingerprint, std::vector<ArtifactInput> inputs)
    : output_(std::move(path)) {
  silence_hdf5();
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // Earliest-format objects keep files readable by older HDF5 and free of extra timestamps.
  file_ = H5Fcreate(output_.temp_path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  EKV_CHECK(file_ >= 0, output_.temp_path().string(), ": cannot create HDF5 file");
  set_attribute("/", "ekv.type", type);
  set_attribute("/", "ekv.format_version", format_version);
  set_attribute("/", "producer", producer(run_context().tool));
  set_attribute("/", "command_line", run_context().command_line);
  set_attribute("/", "created_utc", utc_now_iso8601());
  set_attribute("/", "inputs", json_inputs(inputs));
  set_attribute("/", "model_fingerprint", model_fingerprint);
}

ArtifactWriter::~ArtifactWriter() {
  if (file_ >= 0) H5Fclose(file_);
}

namespace {
// The layer a "/layers/<l>/..." dataset belongs to; -1 for any other name. Writers stamp it on
// the dataset as attribute "layer" and readers compare: a dataset moved to another layer's
// group (h5py's move, a hand-made file) carries its own layer with it.
std::int64_t layer_of_dataset(const std::string& name) {
  const std::string prefix = "/layers/";
  if (name.rfind(prefix, 0) != 0) return -1;
  const auto slash = name.find('/', prefix.size());
  if (slash == std::string::npos || slash == prefix.size() || slash - prefix.size() > 6) return -1;
  const std::string digits = name.substr(prefix.size(), slash - prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}
}  // namespace

std::int64_t ArtifactWriter::create_dataset(const std::string& name, ElementKind kind,
                                            const std::vector<std::uint64_t>& shape, bool compress) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  std::uint64_t elements = 1;
  for (auto d : shape) elements *= d;
  Handle space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(dcpl.get(), 0);  // identical inputs give identical bytes
  if (compress && elements > 0 && !dims.empty()) {
    // Chunks of about 1 MiB along the first dimension.
    std::vector<hsize_t> chunk = dims;
    std::uint64_t row_bytes = element_size(kind);
    for (std::size_t i = 1; i < dims.size(); ++i) row_bytes *= dims[i];
    chunk[0] = std::clamp<hsize_t>((1u << 20) / std::max<std::uint64_t>(row_bytes, 1), 1, dims[0]);
    H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data());
    H5Pset_shuffle(dcpl.get());
    H5Pset_deflate(dcpl.get(), 1);  // level 1: most of the gain of deflate on float data, at a fraction of the time
  }
  const hid_t dataset =
      H5Dcreate2(file_, name.c_str(), native_type(kind), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT);
  EKV_CHECK(dataset >= 0, path().string(), ":", name, ": cannot create dataset (exists already, or bad name)");
  if (const std::int64_t layer = layer_of_dataset(name); layer >= 0) set_attribute(name, "layer", layer);
  return dataset;
}

void ArtifactWriter::write_raw(const std::string& name, const void* data, std::size_t count, ElementKind kind,
                               std::vector<std::uint64_t> shape, bool compress) {
  const std::string where = path().string() + ":" + name;
  std::uint64_t elements = 1;
  for (auto d : shape) elements *= d;
  EKV_CHECK(elements == count, where, ": ", count, " values given for shape ", shape_text(shape));
  Handle dataset(create_dataset(name, kind, shape, compress), H5Dclose);
  if (elements > 0)
    EKV_CHECK(H5Dwrite(dataset.get(), native_type(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, where,
              ": write failed (disk full?)");
  failpoint("write");
}

void ArtifactWriter::create_f32(const std::string& name, std::vector<std::uint64_t> shape) {
  EKV_CHECK(!shape.empty(), path().string(), ":", name, ": a dataset written by blocks needs a first dimension");
  Handle dataset(create_dataset(name, ElementKind::f32, shape, false), H5Dclose);
}

void ArtifactWriter::write_f32_block(const std::string& name, std::uint64_t index, std::span<const float> block) {
  const std::string where = path().string() + ":" + name;
  Handle dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  EKV_CHECK(dataset.valid(), where, ": no such dataset (create_f32 first)");
  Handle file_space(H5Dget_space(dataset.get()), H5Sclose);
  std::vector<hsize_t> dims(std::size_t(H5Sget_simple_extent_ndims(file_space.get())));
  H5Sget_simple_extent_dims(file_space.get(), dims.data(), nullptr);
  std::vector<std::uint64_t> shape(dims.begin(), dims.end());
  hsize_t block_elements = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) block_elements *= dims[i];
  EKV_CHECK(index < dims[0] && block.size() == block_elements, where, ": block ", index, " of ", block.size(),
            " values does not fit shape ", shape_text(shape));
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = index;
  count[0] = 1;
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Handle memory_space(H5Screate_simple(1, &block_elements, nullptr), H5Sclose);
  EKV_CHECK(H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, memory_space.get(), file_space.get(), H5P_DEFAULT,
                     block.data()) >= 0,
            where, ": write failed (disk full?)");
  failpoint("write");
}

void ArtifactWriter::write(const std::string& name, std::span<const float> data, std::vector<std::uint64_t> shape,
                           bool compress) {
  write_raw(name, data.data(), data.size(), ElementKind::f32, std::move(shape), compress);
}
void ArtifactWriter::write(const std::string& name, std::span<const double> data, std::vector<std::uint64_t> shape,
                           bool compress) {
  write_raw(name, data.data(), data.size(), ElementKind::f64, std::move(shape), compress);
}
void ArtifactWriter::write(const std::string& name, std::span<const std::int32_t> data,
                           std::vector<std::uint64_t> shape, bool compress) {
  write_raw(name, data.data(), data.size(), ElementKind::i32, std::move(shape), compress);
}
void ArtifactWriter::write(const std::string& name, std::span<const std::int64_t> data,
                           std::vector<std::uint64_t> shape, bool compress) {
  write_raw(name, data.data(), data.size(), ElementKind::i64, std::move(shape), compress);
}
void ArtifactWriter::write(const std::string& name, std::span<const std::uint16_t> data,
                           std::vector<std::uint64_t> shape, bool compress) {
  write_raw(name, data.data(), data.size(), ElementKind::u16, std::move(shape), compress);
}

namespace {
void write_attribute(hid_t file, const std::string& where, const std::string& object, const std::string& name,
                     hid_t type, const void* value) {
  Handle target(H5Oopen(file, object.c_str(), H5P_DEFAULT), H5Oclose);
  EKV_CHECK(target.valid(), where, ":", object, ": no such object for attribute ", name);
  if (H5Aexists(target.get(), name.c_str()) > 0) H5Adelete(target.get(), name.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attribute(H5Acreate2(target.get(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  EKV_CHECK(attribute.valid() && H5Awrite(attribute.get(), type, value) >= 0, where, ":", object,
            ": cannot write attribute ", name);
}
}  // namespace

void ArtifactWriter::set_attribute(const std::string& object, const std::string& name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* text = value.c_str();
  write_attribute(file_, path().string(), object, name, type.get(), &text);
}
void ArtifactWriter::set_attribute(const std::string& object, const std::string& name, std::int64_t value) {
  write_attribute(file_, path().string(), object, name, H5T_NATIVE_INT64, &value);
}
void ArtifactWriter::set_attribute(const std::string& object, const std::string& name, double value) {
  write_attribute(file_, path().string(), object, name, H5T_NATIVE_DOUBLE, &value);
}

void ArtifactWriter::commit() {
  EKV_CHECK(file_ >= 0, path().string(), ": committed twice");
  const herr_t flushed = H5Fflush(file_, H5F_SCOPE_GLOBAL);
  const herr_t closed = H5Fclose(file_);
  file_ = -1;
  EKV_CHECK(flushed >= 0 && closed >= 0, output_.temp_path().string(), ": cannot finish the HDF5 file (disk full?)");
  output_.commit();
}

// ---------------------------------------------------------------------------------------
// Reader

ArtifactReader::ArtifactReader(const fs::path& path, const std::string& expected_type, std::int64_t max_format_version)
    : path_(path), expected_type_(expected_type), max_format_version_(max_format_version) {
  silence_hdf5();
  const std::string file = path.string();
  require_regular_file(path);
  require_committed(path);
  EKV_CHECK(H5Fis_hdf5(file.c_str()) > 0, file, ": not an HDF5 file (no HDF5 signature)");
  file_ = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EKV_CHECK(file_ >= 0, file, ": cannot open as HDF5 (truncated or corrupt)");
  try {
    read_provenance();
  } catch (...) {  // no destructor runs for a throwing constructor: close here (found by fuzzing)
    H5Fclose(file_);
    throw;
  }
}

void ArtifactReader::read_provenance() {
  const std::string file = path_.string();
  for (const char* required : {"ekv.type", "ekv.format_version"})
    EKV_CHECK(has_attribute("/", required), file, ": root attribute ", required, " is missing (not an ekv artifact)");
  provenance_.type = string_attribute("/", "ekv.type");
  provenance_.format_version = int_attribute("/", "ekv.format_version");
  if (!expected_type_.empty())
    EKV_CHECK(provenance_.type == expected_type_, file, ": ekv.type: expected ", expected_type_, ", found ",
              provenance_.type);
  EKV_CHECK(provenance_.format_version >= 1, file, ": ekv.format_version: invalid value ",
            provenance_.format_version);
  EKV_CHECK(provenance_.format_version <= max_format_version_, file, ": ekv.format_version: file has version ",
            provenance_.format_version, ", this build reads up to ", max_format_version_, " (use a newer ekv)");
  for (const char* required : {"producer", "command_line", "created_utc", "inputs", "model_fingerprint"})
    EKV_CHECK(has_attribute("/", required), file, ": root attribute ", required, " is missing");
  provenance_.producer = string_attribute("/", "producer");
  provenance_.command_line = string_attribute("/", "command_line");
  provenance_.created_utc = string_attribute("/", "created_utc");
  provenance_.model_fingerprint = string_attribute("/", "model_fingerprint");
  const std::string inputs = string_attribute("/", "inputs");
  try {
    for (const auto& item : json::parse(inputs))
      provenance_.inputs.push_back({item.at("path").get<std::string>(), item.at("type").get<std::string>(),
                                    item.at("digest").get<std::string>()});
  } catch (const json::exception& e) {
    fail(cat(file, ": root attribute inputs: not a JSON list of {path, type, digest}: ", e.what()));
  }
}

ArtifactReader::~ArtifactReader() {
  if (file_ >= 0) H5Fclose(file_);
}

void ArtifactReader::require_model(const std::string& fingerprint, const std::string& model_description) const {
  EKV_CHECK(provenance_.model_fingerprint == fingerprint, path_.string(),
            ": model_fingerprint: made from a different model (expected ", fingerprint, " of ", model_description,
            ", found ", provenance_.model_fingerprint, ")");
}

bool ArtifactReader::has(const std::string& name) const {
  if (name.empty() || name == "/") return false;
  // Each link on the way must exist before H5Lexists may be asked about the next.
  std::string prefix;
  std::istringstream parts(name);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    prefix += "/" + part;
    if (H5Lexists(file_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  H5O_info_t object_info;
  if (H5Oget_info_by_name(file_, name.c_str(), &object_info, H5P_DEFAULT) < 0) return false;
  return object_info.type == H5O_TYPE_DATASET;
}

DatasetInfo ArtifactReader::info(const std::string& name) const {
  const std::string where = path_.string() + ":" + name;
  EKV_CHECK(has(name), where, ": dataset is missing");
  Handle dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  EKV_CHECK(dataset.valid(), where, ": cannot open dataset");
  Handle type(H5Dget_type(dataset.get()), H5Tclose);
  Handle space(H5Dget_space(dataset.get()), H5Sclose);
  DatasetInfo info;
  info.name = name.front() == '/' ? name : "/" + name;
  const H5T_class_t type_class = H5Tget_class(type.get());
  const std::size_t size = H5Tget_size(type.get());
  if (type_class == H5T_FLOAT && size == 4) info.kind = ElementKind::f32;
  else if (type_class == H5T_FLOAT && size == 8) info.kind = ElementKind::f64;
  else if (type_class == H5T_INTEGER && size == 4) info.kind = ElementKind::i32;
  else if (type_class == H5T_INTEGER && size == 8) info.kind = ElementKind::i64;
  else if (type_class == H5T_INTEGER && size == 1) info.kind = ElementKind::u8;
  else if (type_class == H5T_INTEGER && size == 2) info.kind = ElementKind::u16;
  else fail(cat(where, ": unsupported element type (class ", int(type_class), ", ", size, " bytes)"));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  EKV_CHECK(rank >= 0 && rank <= 8, where, ": unsupported rank ", rank);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  info.shape.assign(dims.begin(), dims.end());
  info.stored_bytes = H5Dget_storage_size(dataset.get());
  return info;
}

std::vector<DatasetInfo> ArtifactReader::datasets() const {
  std::vector<std::string> names;
  auto visit = [](hid_t, const char* name, const H5O_info_t* object, void* data) -> herr_t {
    if (object->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(std::string("/") + name);
    return 0;
  };
  H5Ovisit(file_, H5_INDEX_NAME, H5_ITER_INC, visit, &names);
  std::vector<DatasetInfo> result;
  for (const auto& name : names) result.push_back(info(name));
  return result;
}

DatasetInfo ArtifactReader::checked_info(const std::string& name, ElementKind kind,
                                         const std::vector<std::int64_t>& expected) const {
  const std::string where = path_.string() + ":" + name;
  DatasetInfo found = info(name);
  EKV_CHECK(found.kind == kind, where, ": expected ", element_kind_name(kind), " data, found ",
            element_kind_name(found.kind));
  if (const std::int64_t layer = layer_of_dataset(name); layer >= 0 && has_attribute(name, "layer")) {
    const std::int64_t stamped = int_attribute(name, "layer");
    EKV_CHECK(stamped == layer, where, ": attribute layer says ", stamped,
              ": the dataset was written for layer ", stamped, " and moved here");
  }
  if (!expected.empty()) {
    bool match = expected.size() == found.shape.size();
    for (std::size_t i = 0; match && i < expected.size(); ++i)
      match = expected[i] < 0 || std::uint64_t(expected[i]) == found.shape[i];
    EKV_CHECK(match, where, ": expected ", expected_text(expected), ", found ", shape_text(found.shape));
  }
  std::int64_t bytes = 8;
  for (auto d : found.shape)
    EKV_CHECK(!__builtin_mul_overflow(bytes, std::int64_t(d), &bytes) && bytes <= kMaxReadBytes, where,
              ": shape ", shape_text(found.shape), " is absurdly large");
  // A shape is only a claim: a dataset whose data was never written (or was cut away) declares
  // any size in a few bytes of file. Before allocating for it, the file must hold its bytes,
  // compressed at most as far as deflate can (1032:1).
  const auto stored = std::int64_t(found.stored_bytes);
  const std::int64_t logical = bytes / 8 * std::int64_t(element_size(found.kind));
  EKV_CHECK(logical <= 1032 * stored + 4096, where, ": shape ", shape_text(found.shape), " needs ", logical,
            " bytes but the file stores ", stored, " for it (truncated or crafted)");
  return found;
}

void ArtifactReader::read_raw(const std::string& name, void* out, std::size_t count, ElementKind kind) const {
  if (count == 0) return;
  Handle dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  EKV_CHECK(dataset.valid() && H5Dread(dataset.get(), native_type(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0,
            path_.string(), ":", name, ": cannot read data (truncated or corrupt file)");
}

namespace {
std::size_t element_count(const DatasetInfo& info) {
  std::size_t n = 1;
  for (auto d : info.shape) n *= std::size_t(d);
  return n;
}

template <class T>
void check_finite(const std::vector<T>& values, const std::string& where) {
  for (std::size_t i = 0; i < values.size(); ++i)
    EKV_CHECK(std::isfinite(values[i]), where, ": non-finite value ", values[i], " at element ", i);
}
}  // namespace

std::vector<float> ArtifactReader::read_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape,
                                            bool allow_nonfinite) const {
  const DatasetInfo info = checked_info(name, ElementKind::f32, expected_shape);
  std::vector<float> values(element_count(info));
  read_raw(name, values.data(), values.size(), ElementKind::f32);
  if (!allow_nonfinite) check_finite(values, path_.string() + ":" + name);
  return values;
}

std::vector<double> ArtifactReader::read_f64(const std::string& name, const std::vector<std::int64_t>& expected_shape,
                                             bool allow_nonfinite) const {
  const DatasetInfo info = checked_info(name, ElementKind::f64, expected_shape);
  std::vector<double> values(element_count(info));
  read_raw(name, values.data(), values.size(), ElementKind::f64);
  if (!allow_nonfinite) check_finite(values, path_.string() + ":" + name);
  return values;
}

std::vector<std::int32_t> ArtifactReader::read_i32(const std::string& name,
                                                   const std::vector<std::int64_t>& expected_shape) const {
  const DatasetInfo info = checked_info(name, ElementKind::i32, expected_shape);
  std::vector<std::int32_t> values(element_count(info));
  read_raw(name, values.data(), values.size(), ElementKind::i32);
  return values;
}

std::vector<std::int64_t> ArtifactReader::read_i64(const std::string& name,
                                                   const std::vector<std::int64_t>& expected_shape) const {
  const DatasetInfo info = checked_info(name, ElementKind::i64, expected_shape);
  std::vector<std::int64_t> values(element_count(info));
  read_raw(name, values.data(), values.size(), ElementKind::i64);
  return values;
}

std::vector<std::uint16_t> ArtifactReader::read_u16(const std::string& name,
                                                    const std::vector<std::int64_t>& expected_shape) const {
  const DatasetInfo info = checked_info(name, ElementKind::u16, expected_shape);
  std::vector<std::uint16_t> values(element_count(info));
  read_raw(name, values.data(), values.size(), ElementKind::u16);
  return values;
}

bool ArtifactReader::has_attribute(const std::string& object, const std::string& name) const {
  return H5Aexists_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::string ArtifactReader::string_attribute(const std::string& object, const std::string& name) const {
  const std::string where = path_.string() + ":" + object + " attribute " + name;
  EKV_CHECK(has_attribute(object, name), where, ": missing");
  Handle attribute(H5Aopen_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attribute.get()), H5Tclose);
  EKV_CHECK(H5Tget_class(type.get()) == H5T_STRING, where, ": expected a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory.get(), H5T_VARIABLE);
    H5Tset_cset(memory.get(), H5Tget_cset(type.get()));
    char* text = nullptr;
    EKV_CHECK(H5Aread(attribute.get(), memory.get(), &text) >= 0, where, ": cannot read");
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  const std::size_t size = H5Tget_size(type.get());
  EKV_CHECK(size < (1u << 24), where, ": absurd string length ", size);
  std::string value(size, '\0');
  EKV_CHECK(H5Aread(attribute.get(), type.get(), value.data()) >= 0, where, ": cannot read");
  value.resize(std::strlen(value.c_str()));
  return value;
}

std::int64_t ArtifactReader::int_attribute(const std::string& object, const std::string& name) const {
  const std::string where = path_.string() + ":" + object + " attribute " + name;
  EKV_CHECK(has_attribute(object, name), where, ": missing");
  Handle attribute(H5Aopen_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attribute.get()), H5Tclose);
  EKV_CHECK(H5Tget_class(type.get()) == H5T_INTEGER, where, ": expected an integer");
  std::int64_t value = 0;
  EKV_CHECK(H5Aread(attribute.get(), H5T_NATIVE_INT64, &value) >= 0, where, ": cannot read");
  return value;
}

int ArtifactReader::int_attribute_in(const std::string& object, const std::string& name, int low, int high) const {
  const std::int64_t value = int_attribute(object, name);
  EKV_CHECK(value >= low && value <= high, path_.string(), ":", object, " attribute ", name, ": ", value,
            " outside [", low, ", ", high, "]");
  return int(value);
}

double ArtifactReader::float_attribute(const std::string& object, const std::string& name) const {
  const std::string where = path_.string() + ":" + object + " attribute " + name;
  EKV_CHECK(has_attribute(object, name), where, ": missing");
  Handle attribute(H5Aopen_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attribute.get()), H5Tclose);
  const H5T_class_t type_class = H5Tget_class(type.get());
  EKV_CHECK(type_class == H5T_FLOAT || type_class == H5T_INTEGER, where, ": expected a number");
  double value = 0;
  EKV_CHECK(H5Aread(attribute.get(), H5T_NATIVE_DOUBLE, &value) >= 0, where, ": cannot read");
  return value;
}

std::vector<std::string> ArtifactReader::attribute_names(const std::string& object) const {
  std::vector<std::string> names;
  auto visit = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->push_back(name);
    return 0;
  };
  H5Aiterate_by_name(file_, object.c_str(), H5_INDEX_NAME, H5_ITER_INC, nullptr, visit, &names, H5P_DEFAULT);
  return names;
}

std::string ArtifactReader::attribute_text(const std::string& object, const std::string& name) const {
  Handle attribute(H5Aopen_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attribute.get()), H5Tclose);
  switch (H5Tget_class(type.get())) {
    case H5T_STRING: return string_attribute(object, name);
    case H5T_INTEGER: return std::to_string(int_attribute(object, name));
    case H5T_FLOAT: {
      std::ostringstream os;
      os << float_attribute(object, name);
      return os.str();
    }
    default: return "(unsupported attribute type)";
  }
}

}  // namespace ekv
