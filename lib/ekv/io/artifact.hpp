// The HDF5 artifacts that connect the tools (calib.h5, rope.h5, jlrd.h5, ...).
//
// Every file carries root attributes: ekv.type, ekv.format_version, producer, command_line,
// created_utc, inputs (JSON list of {path, type, digest}) and model_fingerprint. Writers go
// through an AtomicOutput, so a killed run leaves nothing that opens; readers validate the
// type, version, dtypes, shapes and finiteness, naming file, dataset, expected and found.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ekv/core/atomic_output.hpp"

namespace ekv {

struct ArtifactInput {
  std::string path;
  std::string type;    // "gguf", "hf", "calib", "text", ...
  std::string digest;  // "sha256:<hex>" for files, "fingerprint:<hex>" for models
};

struct Provenance {
  std::string type;
  std::int64_t format_version = 0;
  std::string producer;
  std::string command_line;
  std::string created_utc;
  std::vector<ArtifactInput> inputs;
  std::string model_fingerprint;
};

std::string utc_now_iso8601();  // or SOURCE_DATE_EPOCH's time when it is set
ArtifactInput file_input(const std::filesystem::path& path, const std::string& type);  // hashes the file

enum class ElementKind { f32, f64, i32, i64, u8, u16 };  // u16 also carries bf16 bit patterns
std::string_view element_kind_name(ElementKind kind);

struct DatasetInfo {
  std::string name;  // absolute path inside the file, "/layers/3/gram"
  ElementKind kind = ElementKind::f32;
  std::vector<std::uint64_t> shape;
  std::uint64_t stored_bytes = 0;  // what the file holds for it (compressed, or 0 if never written)
};

class ArtifactWriter {
 public:
  ArtifactWriter(std::filesystem::path path, std::string type, std::int64_t format_version,
                 std::string model_fingerprint, std::vector<ArtifactInput> inputs);
  ~ArtifactWriter();
  ArtifactWriter(const ArtifactWriter&) = delete;
  ArtifactWriter& operator=(const ArtifactWriter&) = delete;

  // Datasets are created with intermediate groups; `compress` stores them chunked + deflated.
  void write(const std::string& name, std::span<const float> data, std::vector<std::uint64_t> shape,
             bool compress = false);
  void write(const std::string& name, std::span<const double> data, std::vector<std::uint64_t> shape,
             bool compress = false);
  void write(const std::string& name, std::span<const std::int32_t> data, std::vector<std::uint64_t> shape,
             bool compress = false);
  void write(const std::string& name, std::span<const std::int64_t> data, std::vector<std::uint64_t> shape,
             bool compress = false);
  void write(const std::string& name, std::span<const std::uint16_t> data, std::vector<std::uint64_t> shape,
             bool compress = false);

  // A float dataset written one block of its first dimension at a time (a [H, d_kv, d] stack
  // head by head), so no caller holds it whole. The caller writes every block before commit.
  void create_f32(const std::string& name, std::vector<std::uint64_t> shape);
  void write_f32_block(const std::string& name, std::uint64_t index, std::span<const float> block);

  // Attributes on "/" or on an existing dataset or group.
  void set_attribute(const std::string& object, const std::string& name, const std::string& value);
  void set_attribute(const std::string& object, const std::string& name, std::int64_t value);
  void set_attribute(const std::string& object, const std::string& name, double value);

  const std::filesystem::path& path() const { return output_.final_path(); }
  void commit();

 private:
  void write_raw(const std::string& name, const void* data, std::size_t count, ElementKind kind,
                 std::vector<std::uint64_t> shape, bool compress);
  std::int64_t create_dataset(const std::string& name, ElementKind kind, const std::vector<std::uint64_t>& shape,
                              bool compress);  // an open hid_t the caller closes

  AtomicOutput output_;
  std::int64_t file_ = -1;  // hid_t
};

class ArtifactReader {
 public:
  // Opens and validates: an HDF5 file, an ekv artifact of `expected_type` (empty: any), with a
  // format version not newer than `max_format_version`.
  ArtifactReader(const std::filesystem::path& path, const std::string& expected_type,
                 std::int64_t max_format_version);
  ~ArtifactReader();
  ArtifactReader(const ArtifactReader&) = delete;
  ArtifactReader& operator=(const ArtifactReader&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const Provenance& provenance() const { return provenance_; }

  // Fails unless the artifact was made from the model with this fingerprint.
  void require_model(const std::string& fingerprint, const std::string& model_description) const;

  bool has(const std::string& name) const;
  DatasetInfo info(const std::string& name) const;
  std::vector<DatasetInfo> datasets() const;  // every dataset, in name order

  // Reads a whole dataset. `expected_shape` (empty: any) is checked first; -1 matches any size.
  // Floating data must be finite unless allow_nonfinite is set.
  std::vector<float> read_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape = {},
                              bool allow_nonfinite = false) const;
  std::vector<double> read_f64(const std::string& name, const std::vector<std::int64_t>& expected_shape = {},
                               bool allow_nonfinite = false) const;
  std::vector<std::int32_t> read_i32(const std::string& name,
                                     const std::vector<std::int64_t>& expected_shape = {}) const;
  std::vector<std::int64_t> read_i64(const std::string& name,
                                     const std::vector<std::int64_t>& expected_shape = {}) const;
  std::vector<std::uint16_t> read_u16(const std::string& name,
                                      const std::vector<std::int64_t>& expected_shape = {}) const;

  bool has_attribute(const std::string& object, const std::string& name) const;
  std::string string_attribute(const std::string& object, const std::string& name) const;
  std::int64_t int_attribute(const std::string& object, const std::string& name) const;
  // An integer attribute within [low, high], as an int: a count or index past 2^31 would
  // otherwise be truncated by the cast (r_max = 2^32 + 8 read as 8).
  int int_attribute_in(const std::string& object, const std::string& name, int low, int high) const;
  double float_attribute(const std::string& object, const std::string& name) const;
  std::vector<std::string> attribute_names(const std::string& object) const;
  std::string attribute_text(const std::string& object, const std::string& name) const;  // any kind, for ekv-info

 private:
  void read_provenance();  // the constructor's validation, after the file is open
  void read_raw(const std::string& name, void* out, std::size_t count, ElementKind kind) const;
  // The dataset's info, refused unless it holds `kind` exactly (a Gram rewritten in f32 lost the
  // precision it was accumulated in), has the expected shape, and sits in the layer it was written for.
  DatasetInfo checked_info(const std::string& name, ElementKind kind, const std::vector<std::int64_t>& expected) const;

  std::filesystem::path path_;
  std::string expected_type_;
  std::int64_t max_format_version_ = 0;
  std::int64_t file_ = -1;  // hid_t
  Provenance provenance_;
};

}  // namespace ekv
