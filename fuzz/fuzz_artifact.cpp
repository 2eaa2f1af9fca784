// Fuzz target: the ekv artifact readers (calib.h5, rope.h5, jlrd.h5, decode-pack.h5 and the
// generic reader behind ekv-info) on well-formed HDF5 files with wrong types, shapes, values and
// attributes. Mutating HDF5's own bytes would fuzz libhdf5, not ekv, so the input is a small
// text program that this harness turns into an HDF5 file (docs/reliability.md, "Fuzzing"):
//   a OBJECT NAME s TEXT | a OBJECT NAME i INT | a OBJECT NAME f REAL   (attributes)
//   d NAME KIND DIMS FILL    KIND f32|f64|i32|i64|u8|u16|i8, DIMS 4,8 or - (scalar),
//                            FILL r SEED (normal draws) | c VALUE | v V1 V2 ... (cycled)
//                            | e (declared, never written: any size, chunked, no bytes stored)
#include <hdf5.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ekv/calib/calib_file.hpp"
#include "ekv/compressed/decode_pack.hpp"
#include "ekv/io/artifact.hpp"
#include "ekv/lrd/jlrd_file.hpp"
#include "ekv/model/config.hpp"
#include "ekv/rope/rope_file.hpp"
#include "ekv/tools/info.hpp"
#include "fuzz_input.hpp"

namespace {

constexpr std::uint64_t kMaxElements = 1 << 16;  // per dataset: keeps one execution in milliseconds

hid_t memory_type(const std::string& kind) {
  if (kind == "f32") return H5T_NATIVE_FLOAT;
  if (kind == "f64") return H5T_NATIVE_DOUBLE;
  if (kind == "i32") return H5T_NATIVE_INT32;
  if (kind == "i64") return H5T_NATIVE_INT64;
  if (kind == "u8") return H5T_NATIVE_UINT8;
  if (kind == "u16") return H5T_NATIVE_UINT16;
  if (kind == "i8") return H5T_NATIVE_INT8;
  return -1;
}

// Object handle for an attribute's target, creating groups on the way ("/" is the root).
hid_t open_object(hid_t file, const std::string& object) {
  if (object == "/") return H5Oopen(file, "/", H5P_DEFAULT);
  if (H5Lexists(file, object.c_str(), H5P_DEFAULT) > 0) return H5Oopen(file, object.c_str(), H5P_DEFAULT);
  const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  const hid_t group = H5Gcreate2(file, object.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  return group;
}

void add_attribute(hid_t file, std::istringstream& line) {
  std::string object, name, kind;
  line >> object >> name >> kind;
  if (object.empty() || object[0] != '/' || name.empty()) return;
  const hid_t target = open_object(file, object);
  if (target < 0) return;
  H5Adelete(target, name.c_str());  // a repeated name replaces the earlier one
  const hid_t scalar = H5Screate(H5S_SCALAR);
  if (kind == "s") {
    std::string text;
    std::getline(line >> std::ws, text);
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    const hid_t attribute = H5Acreate2(target, name.c_str(), type, scalar, H5P_DEFAULT, H5P_DEFAULT);
    const char* value = text.c_str();
    if (attribute >= 0) H5Awrite(attribute, type, &value), H5Aclose(attribute);
    H5Tclose(type);
  } else if (kind == "i" || kind == "f") {
    std::string token;
    line >> token;
    const bool integer = kind == "i";
    const std::int64_t i = std::strtoll(token.c_str(), nullptr, 10);
    const double f = std::strtod(token.c_str(), nullptr);
    const hid_t type = integer ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
    const hid_t attribute = H5Acreate2(target, name.c_str(), type, scalar, H5P_DEFAULT, H5P_DEFAULT);
    if (attribute >= 0) H5Awrite(attribute, type, integer ? static_cast<const void*>(&i) : &f), H5Aclose(attribute);
  }
  H5Sclose(scalar);
  H5Oclose(target);
}

void add_dataset(hid_t file, std::istringstream& line) {
  std::string name, kind, dims_text, fill;
  line >> name >> kind >> dims_text >> fill;
  const hid_t type = memory_type(kind);
  if (name.empty() || name[0] != '/' || type < 0) return;
  std::vector<hsize_t> dims;
  std::uint64_t elements = 1;
  if (dims_text != "-") {
    std::istringstream parts(dims_text);
    for (std::string part; std::getline(parts, part, ',') && dims.size() < 4;) {
      const long long d = std::strtoll(part.c_str(), nullptr, 10);
      if (d < 0 || d > (1 << 20)) return;
      dims.push_back(hsize_t(d));
      elements *= std::uint64_t(d);
    }
  }
  const bool unwritten = fill == "e";
  if (elements > kMaxElements && !unwritten) return;
  std::vector<double> values(unwritten ? 0 : elements);
  if (fill == "r") {
    unsigned seed = 0;
    line >> seed;
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal;
    for (double& v : values) v = normal(rng);
  } else {
    std::vector<double> given;
    for (std::string token; line >> token;) given.push_back(std::strtod(token.c_str(), nullptr));
    for (std::size_t i = 0; i < values.size() && !given.empty(); ++i) values[i] = given[i % given.size()];
  }
  const hid_t space = dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (unwritten && !dims.empty() && elements > 0) {  // chunks are allocated only when written
    std::vector<hsize_t> chunk(dims.size(), 1);
    H5Pset_chunk(dcpl, int(chunk.size()), chunk.data());
  }
  const hid_t dataset = H5Dcreate2(file, name.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  if (dataset >= 0) {
    // HDF5 converts from double to the stored type (clamping out-of-range integers).
    if (elements > 0 && !unwritten) H5Dwrite(dataset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    H5Dclose(dataset);
  }
  H5Pclose(lcpl);
  H5Sclose(space);
}

void write_program(const std::uint8_t* data, std::size_t size, const std::filesystem::path& path) {
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) ekv::fuzz::finding("cannot create the HDF5 file");
  std::istringstream program(std::string(reinterpret_cast<const char*>(data), size));
  int statements = 0;
  for (std::string text; std::getline(program, text) && statements < 256; ++statements) {
    std::istringstream line(text);
    std::string verb;
    line >> verb;
    if (verb == "a") add_attribute(file, line);
    else if (verb == "d") add_dataset(file, line);
  }
  H5Fclose(file);
}

// The tiny planted model's shapes (tests/support): the reader calls that take a model's shape.
constexpr int kHidden = 32, kHeads = 4, kKvHeads = 2, kHeadDim = 8;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool quiet = (H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr), true);
  (void)quiet;
  const auto path = ekv::fuzz::write_input(nullptr, 0, "artifact.h5");
  write_program(data, size, path);
  ekv::fuzz::expect_clear_errors([&] {
    std::ostringstream out;
    ekv::InfoOptions options;
    options.path = path.string();
    ekv::run_info(options, out);
  });
  ekv::fuzz::expect_clear_errors([&] { (void)ekv::read_calib(path); });
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::RopeData rope = ekv::read_rope(path);
    for (int layer = rope.layer_begin; layer < rope.layer_end && layer < rope.layer_begin + 4; ++layer)
      for (int r = 0; r <= rope.chunks + 1; ++r) (void)ekv::elite_sets(rope, layer, r);
  });
  ekv::fuzz::expect_clear_errors([&] {
    ekv::ModelConfig tiny;
    tiny.layers = 2, tiny.hidden = kHidden, tiny.heads = kHeads, tiny.kv_heads = kKvHeads, tiny.head_dim = kHeadDim;
    ekv::require_rope_fits(ekv::read_rope(path), tiny, path.string(), "the tiny model");
  });
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::JlrdFile jlrd(path);
    for (int layer = jlrd.layer_begin(); layer < jlrd.layer_end() && layer < jlrd.layer_begin() + 4; ++layer) {
      (void)jlrd.rank(layer, kHidden);
      (void)jlrd.key_dims(layer, kKvHeads, kHeadDim);
      (void)jlrd.layer(layer, kHidden, kHeads, kKvHeads, kHeadDim);
    }
  });
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::ArtifactReader pack(path, "decode-pack", ekv::kDecodePackFormatVersion);
    const ekv::PackHeader header = ekv::read_pack_header(pack);
    for (int layer = 0; layer < header.layers && layer < 4; ++layer) (void)ekv::read_pack_layer(pack, header, layer);
  });
  return 0;
}
