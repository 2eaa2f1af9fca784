// Issue 33: artifacts that do not match their model or break their own invariants were read and
// used. Each case edits one dataset or attribute of a real artifact of the tiny pipeline (written
// by ekv's own writers) and expects the reader to refuse it, naming the file, dataset and layer.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ekv/calib/calib_file.hpp"
#include "ekv/lrd/jlrd_file.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/rope/rope_file.hpp"
#include "ekv/tools/jlrd.hpp"
#include "expect_error.hpp"
#include "tiny_pipeline.hpp"

namespace ekv {
namespace {

namespace fs = std::filesystem;

// Opens a copy of an artifact for editing with HDF5 directly (not through ekv's writer).
class EditedArtifact {
 public:
  EditedArtifact(const fs::path& source, const fs::path& copy) : path_(copy) {
    fs::copy_file(source, copy, fs::copy_options::overwrite_existing);
    file_ = H5Fopen(copy.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    EXPECT_GE(file_, 0);
  }
  ~EditedArtifact() { close(); }
  void close() {
    if (file_ >= 0) H5Fclose(file_);
    file_ = -1;
  }

  // Reads a dataset as T, lets `edit` change the values, writes them back in the stored type.
  template <class T>
  void edit(const std::string& name, hid_t memory_type, const std::function<void(std::vector<T>&)>& change) {
    const hid_t dataset = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
    ASSERT_GE(dataset, 0) << name;
    const hid_t space = H5Dget_space(dataset);
    std::vector<T> values(std::size_t(H5Sget_simple_extent_npoints(space)));
    H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    change(values);
    H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    H5Sclose(space);
    H5Dclose(dataset);
  }

  void set_int_attribute(const std::string& object, const std::string& name, std::int64_t value) {
    H5Adelete_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t attribute = H5Acreate_by_name(file_, object.c_str(), name.c_str(), H5T_NATIVE_INT64, space,
                                              H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(attribute, H5T_NATIVE_INT64, &value);
    H5Aclose(attribute);
    H5Sclose(space);
  }

  // Swaps two datasets by renaming (their attributes travel with them).
  void swap(const std::string& a, const std::string& b) {
    ASSERT_GE(H5Lmove(file_, a.c_str(), file_, "/swap", H5P_DEFAULT, H5P_DEFAULT), 0);
    ASSERT_GE(H5Lmove(file_, b.c_str(), file_, a.c_str(), H5P_DEFAULT, H5P_DEFAULT), 0);
    ASSERT_GE(H5Lmove(file_, "/swap", file_, b.c_str(), H5P_DEFAULT, H5P_DEFAULT), 0);
  }

  // Rewrites a float64 dataset as float32, keeping its values and attributes' meaning (count).
  void narrow_to_f32(const std::string& name, std::int64_t count, int layer) {
    std::vector<double> values;
    edit<double>(name, H5T_NATIVE_DOUBLE, [&](std::vector<double>& v) { values = v; });
    const hid_t dataset = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
    const hid_t space = H5Dget_space(dataset);
    const hid_t copy_space = H5Scopy(space);
    H5Sclose(space);
    H5Dclose(dataset);
    H5Ldelete(file_, name.c_str(), H5P_DEFAULT);
    const hid_t narrowed = H5Dcreate2(file_, name.c_str(), H5T_NATIVE_FLOAT, copy_space, H5P_DEFAULT, H5P_DEFAULT,
                                      H5P_DEFAULT);
    const std::vector<float> floats(values.begin(), values.end());
    H5Dwrite(narrowed, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, floats.data());
    H5Dclose(narrowed);
    H5Sclose(copy_space);
    set_int_attribute(name, "count", count);
    set_int_attribute(name, "layer", layer);
  }

  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
  hid_t file_ = -1;
};

class ArtifactInvariants : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return pipeline_.path(name); }

  // Runs `edits` on a copy of `source` named `name` and returns the copy's path.
  std::string edited(const std::string& source, const std::string& name,
                     const std::function<void(EditedArtifact&)>& edits) const {
    EditedArtifact file(path(source), path(name));
    edits(file);
    file.close();
    return path(name);
  }

  test::TinyPipeline pipeline_{"artifact-invariants"};
};

using Doubles = std::vector<double>;

TEST_F(ArtifactInvariants, CalibrationStatisticsMustBeAGramOfRealInputs) {
  const CalibData good = read_calib(path("calib.h5"), true);
  ASSERT_GE(good.keep_seqs, 2);
  const std::int64_t count = good.layers[0].count;
  const auto gram_edit = [&](const std::string& name, const std::function<void(Doubles&)>& change) {
    return edited("calib.h5", name, [&](EditedArtifact& f) { f.edit<double>("/layers/1/gram", H5T_NATIVE_DOUBLE, change); });
  };
  std::string file = gram_edit("scaled.h5", [](Doubles& g) { for (double& v : g) v *= 1e300; });
  EXPECT_EKV_ERROR(read_calib(file, false), "scaled.h5", "/layers/1/gram", "layer 1", "past");
  file = gram_edit("asymmetric.h5", [](Doubles& g) { g[1] += 1.0; });
  EXPECT_EKV_ERROR(read_calib(file, false), "asymmetric.h5", "/layers/1/gram", "layer 1", "not symmetric");
  file = gram_edit("cauchy.h5", [&](Doubles& g) { g[1] = g[good.hidden] = 1e3 * std::abs(g[0]) + 1e3; });
  EXPECT_EKV_ERROR(read_calib(file, false), "cauchy.h5", "layer 1", "exceeds");
  file = gram_edit("negative-diagonal.h5", [](Doubles& g) { g[0] = -1; });
  EXPECT_EKV_ERROR(read_calib(file, false), "negative-diagonal.h5", "layer 1", "negative diagonal");
  file = edited("calib.h5", "f32.h5", [&](EditedArtifact& f) { f.narrow_to_f32("/layers/1/gram", count, 1); });
  EXPECT_EKV_ERROR(read_calib(file, false), "f32.h5", "/layers/1/gram", "expected float64", "float32");
  file = edited("calib.h5", "swapped.h5", [](EditedArtifact& f) { f.swap("/layers/0/gram", "/layers/1/gram"); });
  EXPECT_EKV_ERROR(read_calib(file, false), "swapped.h5", "/layers/0/gram", "attribute layer says 1");
  file = edited("calib.h5", "norms.h5", [](EditedArtifact& f) {
    f.edit<double>("/layers/0/k_norm_sum", H5T_NATIVE_DOUBLE, [](Doubles& v) { v[2] = -v[2] - 1; });
  });
  EXPECT_EKV_ERROR(read_calib(file, false), "norms.h5", "/layers/0/k_norm_sum", "never negative");
  file = edited("calib.h5", "kept.h5", [](EditedArtifact& f) {
    f.edit<std::int64_t>("/kept_sequences", H5T_NATIVE_INT64, [](std::vector<std::int64_t>& v) { v[1] = v[0]; });
  });
  EXPECT_EKV_ERROR(read_calib(file, false), "kept.h5", "/kept_sequences", "does not increase");
  file = edited("calib.h5", "offsets.h5", [](EditedArtifact& f) {
    f.edit<std::int64_t>("/offsets", H5T_NATIVE_INT64, [](std::vector<std::int64_t>& v) { v[0] = -5; });
  });
  EXPECT_EKV_ERROR(read_calib(file, false), "offsets.h5", "/offsets", "-5");
  EXPECT_NO_THROW(read_calib(path("calib.h5"), true));
}

// The denormal Gram passes the reader (it is a Gram, of tiny inputs) and used to hang ekv-jlrd.
TEST_F(ArtifactInvariants, ADenormalGramIsAnErrorNotAHang) {
  const std::string file = edited("calib.h5", "denormal.h5", [](EditedArtifact& f) {
    f.edit<double>("/layers/0/gram", H5T_NATIVE_DOUBLE, [](Doubles& g) { for (double& v : g) v *= 1e-320; });
  });
  JlrdOptions o;
  o.model = path("tiny.gguf");
  o.rope = path("rope.h5");
  o.calib = file;
  o.output = path("denormal-jlrd.h5");
  o.svd = SvdBasis::whitened;
  o.ranks = {4};
  EXPECT_EKV_ERROR(run_jlrd(o), "denormal.h5", "layer 0", "smallest normal");
}

TEST_F(ArtifactInvariants, RopeSelectionsMustFitTheModelAndTheirOwnOrder) {
  const auto model = ModelSource::open(path("tiny.gguf"));
  const auto read = [&](const std::string& file) {
    return read_rope_of(file, model->config(), model->fingerprint(), "tiny.gguf");
  };
  EXPECT_NO_THROW(read(path("rope.h5")));
  std::string file = edited("rope.h5", "chunks.h5", [](EditedArtifact& f) {
    f.set_int_attribute("/", "chunks", 64);
    f.set_int_attribute("/", "head_dim", 128);
  });
  EXPECT_EKV_ERROR(read(file), "chunks.h5", "chunks 64", "do not fit", "tiny.gguf");
  file = edited("rope.h5", "order.h5", [](EditedArtifact& f) {
    f.edit<std::int32_t>("/layers/0/order", H5T_NATIVE_INT32, [](std::vector<std::int32_t>& v) { v[1] = 999; });
  });
  EXPECT_EKV_ERROR(read(file), "order.h5", "/layers/0/order", "chunk 999");
  file = edited("rope.h5", "twice.h5", [](EditedArtifact& f) {
    f.edit<std::int32_t>("/layers/0/order", H5T_NATIVE_INT32, [](std::vector<std::int32_t>& v) { v[1] = v[0]; });
  });
  EXPECT_EKV_ERROR(read(file), "twice.h5", "/layers/0/order", "picked twice");
  file = edited("rope.h5", "reordered.h5", [](EditedArtifact& f) {
    f.edit<std::int32_t>("/layers/1/order", H5T_NATIVE_INT32, [](std::vector<std::int32_t>& v) { std::swap(v[0], v[2]); });
  });
  EXPECT_EKV_ERROR(read(file), "reordered.h5", "/layers/1/elite", "first 1 picks");
  file = edited("rope.h5", "layers.h5", [](EditedArtifact& f) {
    for (const char* name : {"order", "elite", "distance"})
      f.swap(std::string("/layers/0/") + name, std::string("/layers/1/") + name);
  });
  EXPECT_EKV_ERROR(read(file), "layers.h5", "/layers/0/", "attribute layer says 1");
  file = edited("rope.h5", "r-max.h5", [](EditedArtifact& f) { f.set_int_attribute("/", "r_max", (1LL << 32) + 4); });
  EXPECT_EKV_ERROR(read(file), "r-max.h5", "r_max", "4294967300", "outside");
  file = edited("rope.h5", "distance.h5", [](EditedArtifact& f) {
    f.edit<double>("/layers/0/distance", H5T_NATIVE_DOUBLE, [](Doubles& v) { v[0] = -1; });
  });
  EXPECT_EKV_ERROR(read(file), "distance.h5", "/layers/0/distance", "never negative");
}

TEST_F(ArtifactInvariants, FactorsMustAgreeWithTheirRanksAndLayout) {
  pipeline_.make_export("factors", 2, {5});
  const std::string source = "factors.h5";
  const int hidden = pipeline_.tiny.config.hidden, kv_heads = pipeline_.tiny.config.kv_heads,
            head_dim = pipeline_.tiny.config.head_dim, heads = pipeline_.tiny.config.heads;
  EXPECT_EQ(JlrdFile(path(source)).rank(1, hidden), 5);
  std::string file = edited(source, "ranks.h5", [](EditedArtifact& f) {
    f.edit<std::int32_t>("/ranks", H5T_NATIVE_INT32, [](std::vector<std::int32_t>& v) { v[1] = 7; });
  });
  EXPECT_EKV_ERROR(JlrdFile(file).rank(1, hidden), "ranks.h5", "/ranks", "layer 1 says 7", "holds 5 rows");
  file = edited(source, "key-dims.h5", [](EditedArtifact& f) {
    f.edit<std::int32_t>("/layers/0/key_dims", H5T_NATIVE_INT32, [](std::vector<std::int32_t>& v) { v[1] = 99; });
  });
  EXPECT_EKV_ERROR(JlrdFile(file).key_dims(0, kv_heads, head_dim), "key-dims.h5", "/layers/0/key_dims", "dim 99");
  file = edited(source, "sigma.h5", [](EditedArtifact& f) {
    f.edit<double>("/layers/0/sigma", H5T_NATIVE_DOUBLE, [](Doubles& v) { v[1] = 2 * v[0] + 1; });
  });
  EXPECT_EKV_ERROR(JlrdFile(file).layer(0, hidden, heads, kv_heads, head_dim), "sigma.h5", "/layers/0/sigma",
                   "order of singular values");
  file = edited(source, "r.h5", [](EditedArtifact& f) { f.set_int_attribute("/", "r", (1LL << 32) + 2); });
  EXPECT_EKV_ERROR(JlrdFile{file}, "r.h5", "attribute r", "outside");
}

}  // namespace
}  // namespace ekv
