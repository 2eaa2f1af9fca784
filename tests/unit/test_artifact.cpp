// HDF5 artifacts: provenance round trip, atomic writes, and the validation messages.
#include <gtest/gtest.h>

#include <hdf5.h>

#include <cmath>

#include "ekv/core/run_context.hpp"
#include "ekv/io/artifact.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

class ArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = temp_dir("artifact"); }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path make(const std::string& name, const std::string& type = "calib", std::int64_t version = 1,
                float planted = 1.5f) {
    const fs::path path = dir_ / name;
    ArtifactWriter writer(path, type, version, "abc123", {{"model.gguf", "gguf", "fingerprint:abc123"}});
    std::vector<double> gram(4 * 4);
    for (std::size_t i = 0; i < gram.size(); ++i) gram[i] = double(i) * 0.5;
    writer.write("/layers/0/gram", std::span<const double>(gram), {4, 4});
    std::vector<float> x(3 * 4, planted);
    writer.write("/layers/0/x", std::span<const float>(x), {3, 4}, true);
    std::vector<std::int32_t> tokens = {5, 6, 7};
    writer.write("/tokens", std::span<const std::int32_t>(tokens), {3});
    writer.set_attribute("/", "seq_len", std::int64_t(3));
    writer.set_attribute("/layers/0/gram", "count", std::int64_t(12));
    writer.set_attribute("/", "lambda", 1e-6);
    writer.commit();
    return path;
  }

  fs::path dir_;
};

TEST_F(ArtifactTest, RoundTrip) {
  const char* argv[] = {"ekv-test", "--flag", "a b"};
  set_run_context("ekv-test", 3, argv);
  const fs::path path = make("a.h5");
  ArtifactReader reader(path, "calib", 1);
  const Provenance& p = reader.provenance();
  EXPECT_EQ(p.type, "calib");
  EXPECT_EQ(p.format_version, 1);
  EXPECT_EQ(p.model_fingerprint, "abc123");
  EXPECT_NE(p.producer.find("ekv-test"), std::string::npos);
  EXPECT_EQ(p.command_line, "ekv-test --flag 'a b'");
  ASSERT_EQ(p.inputs.size(), 1u);
  EXPECT_EQ(p.inputs[0].digest, "fingerprint:abc123");
  EXPECT_EQ(p.created_utc.size(), 20u);
  const auto gram = reader.read_f64("/layers/0/gram", {4, 4});
  EXPECT_EQ(gram[5], 2.5);
  EXPECT_EQ(reader.read_f32("/layers/0/x", {-1, 4})[11], 1.5f);
  EXPECT_EQ(reader.read_i32("/tokens")[2], 7);
  EXPECT_EQ(reader.int_attribute("/", "seq_len"), 3);
  EXPECT_EQ(reader.int_attribute("/layers/0/gram", "count"), 12);
  EXPECT_DOUBLE_EQ(reader.float_attribute("/", "lambda"), 1e-6);
  const auto all = reader.datasets();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "/layers/0/gram");
  EXPECT_EQ(all[0].kind, ElementKind::f64);
  EXPECT_NO_THROW(reader.require_model("abc123", "m"));
}

TEST_F(ArtifactTest, SourceDateEpochFixesTheRecordedTime) {
  ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  EXPECT_EQ(utc_now_iso8601(), "2023-11-14T22:13:20Z");
  EXPECT_EQ(ArtifactReader(make("a.h5"), "calib", 1).provenance().created_utc, "2023-11-14T22:13:20Z");
  ::setenv("SOURCE_DATE_EPOCH", "17e8", 1);
  EXPECT_EKV_ERROR(utc_now_iso8601(), "SOURCE_DATE_EPOCH=17e8", "whole seconds");
  ::unsetenv("SOURCE_DATE_EPOCH");
  EXPECT_NE(utc_now_iso8601(), "2023-11-14T22:13:20Z");
}

TEST_F(ArtifactTest, IdenticalInputsGiveIdenticalDatasets) {
  const fs::path a = make("a.h5"), b = make("b.h5");
  ArtifactReader ra(a, "calib", 1), rb(b, "calib", 1);
  EXPECT_EQ(ra.read_f64("/layers/0/gram"), rb.read_f64("/layers/0/gram"));
  EXPECT_EQ(ra.read_f32("/layers/0/x"), rb.read_f32("/layers/0/x"));
}

TEST_F(ArtifactTest, BlocksWrittenInAnyOrderReadBackAsOneDataset) {
  const fs::path path = dir_ / "blocks.h5";
  {
    ArtifactWriter writer(path, "calib", 1, "abc123", {});
    writer.create_f32("/stack", {3, 2, 2});
    for (std::uint64_t block : {2u, 0u, 1u}) {
      const std::vector<float> values(4, float(block) + 0.5f);
      writer.write_f32_block("/stack", block, values);
    }
    EXPECT_EKV_ERROR(writer.write_f32_block("/stack", 3, std::vector<float>(4)), "blocks.h5", "/stack", "block 3",
                     "3×2×2");
    EXPECT_EKV_ERROR(writer.write_f32_block("/stack", 0, std::vector<float>(5)), "/stack", "block 0", "5 values");
    EXPECT_EKV_ERROR(writer.write_f32_block("/other", 0, std::vector<float>(4)), "/other", "no such dataset");
    writer.commit();
  }
  const ArtifactReader reader(path, "calib", 1);
  const auto stack = reader.read_f32("/stack", {3, 2, 2});
  for (std::size_t i = 0; i < stack.size(); ++i) EXPECT_EQ(stack[i], float(i / 4) + 0.5f) << i;
}

TEST_F(ArtifactTest, UncommittedWriteLeavesNothing) {
  const fs::path path = dir_ / "crash.h5";
  {
    ArtifactWriter writer(path, "calib", 1, "abc", {});
    std::vector<float> x(8, 1.0f);
    writer.write("/x", std::span<const float>(x), {8});
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir_ / "crash.h5.tmp"));
}

TEST_F(ArtifactTest, OutputDirectoryMissing) {
  const fs::path path = dir_ / "no" / "such" / "dir" / "a.h5";
  EXPECT_EKV_ERROR(ArtifactWriter(path, "calib", 1, "", {}), path.string(), "does not exist");
}

TEST_F(ArtifactTest, NotHdf5) {
  const fs::path path = dir_ / "text.h5";
  write_file(path, Bytes(100, 'x'));
  EXPECT_EKV_ERROR(ArtifactReader(path, "calib", 1), path.string(), "not an HDF5 file");
}

TEST_F(ArtifactTest, MissingFile) {
  const fs::path path = dir_ / "absent.h5";
  EXPECT_EKV_ERROR(ArtifactReader(path, "calib", 1), path.string(), "no such file");
}

TEST_F(ArtifactTest, Truncated) {
  const fs::path good = make("good.h5");
  const auto size = fs::file_size(good);
  for (double fraction : {0.05, 0.3, 0.6, 0.9}) {
    const fs::path cut = dir_ / "cut.h5";
    fs::copy_file(good, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, std::uintmax_t(double(size) * fraction));
    bool refused = false;
    try {
      ArtifactReader reader(cut, "calib", 1);
      reader.read_f64("/layers/0/gram", {4, 4});
      reader.read_f32("/layers/0/x", {3, 4});
    } catch (const Error& e) {
      refused = true;
      EXPECT_NE(std::string(e.what()).find(cut.string()), std::string::npos) << e.what();
    }
    EXPECT_TRUE(refused) << "a file cut to " << fraction << " of its size was accepted";
  }
}

TEST_F(ArtifactTest, WrongType) {
  const fs::path path = make("rope.h5", "rope");
  EXPECT_EKV_ERROR(ArtifactReader(path, "calib", 1), path.string(), "ekv.type", "expected calib, found rope");
}

TEST_F(ArtifactTest, FutureVersion) {
  const fs::path path = make("future.h5", "calib", 7);
  EXPECT_EKV_ERROR(ArtifactReader(path, "calib", 1), path.string(), "format_version", "version 7");
}

TEST_F(ArtifactTest, PlainHdf5IsNotAnArtifact) {
  const fs::path path = dir_ / "plain.h5";
  H5Fclose(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  EXPECT_EKV_ERROR(ArtifactReader(path, "calib", 1), path.string(), "ekv.type", "not an ekv artifact");
}

TEST_F(ArtifactTest, InvalidVersion) {
  const fs::path path = make("zero.h5", "calib", 0);
  EXPECT_EKV_ERROR(ArtifactReader(path, "calib", 1), path.string(), "format_version", "invalid");
}

TEST_F(ArtifactTest, ShapeMismatchNamesDataset) {
  const fs::path path = make("a.h5");
  ArtifactReader reader(path, "calib", 1);
  EXPECT_EKV_ERROR(reader.read_f64("/layers/0/gram", {4, 5}), path.string() + ":/layers/0/gram",
                   "expected 4×5, found 4×4");
}

TEST_F(ArtifactTest, WrongDtype) {
  const fs::path path = make("a.h5");
  ArtifactReader reader(path, "calib", 1);
  EXPECT_EKV_ERROR(reader.read_i32("/layers/0/gram"), path.string() + ":/layers/0/gram", "expected int32",
                   "float64");
  // Issue 33: a Gram rewritten in f32 was read as f64 and used.
  EXPECT_EKV_ERROR(reader.read_f64("/layers/0/x"), path.string() + ":/layers/0/x", "expected float64", "float32");
}

// Issue 33: a layer's datasets swapped with another layer's were read as that layer's. Writers
// stamp "/layers/<l>/..." datasets with their layer.
TEST_F(ArtifactTest, ADatasetMovedToAnotherLayerIsRefused) {
  const fs::path path = make("a.h5");
  EXPECT_EQ(ArtifactReader(path, "calib", 1).int_attribute("/layers/0/gram", "layer"), 0);
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  ASSERT_GE(H5Lmove(file, "/layers/0/gram", file, "/layers/3/gram", lcpl, H5P_DEFAULT), 0);
  H5Pclose(lcpl);
  H5Fclose(file);
  ArtifactReader reader(path, "calib", 1);
  EXPECT_EKV_ERROR(reader.read_f64("/layers/3/gram", {4, 4}), path.string() + ":/layers/3/gram",
                   "attribute layer says 0", "moved here");
}

TEST_F(ArtifactTest, MissingDataset) {
  const fs::path path = make("a.h5");
  ArtifactReader reader(path, "calib", 1);
  EXPECT_EKV_ERROR(reader.read_f32("/layers/9/x"), path.string() + ":/layers/9/x", "missing");
}

// A shape is a claim: an unwritten chunked dataset declares 2 Gi floats in a few bytes of file.
// The reader refuses it by its storage before allocating 8 GiB.
TEST_F(ArtifactTest, ShapeBeyondItsStoredBytesIsRefused) {
  const fs::path path = make("big.h5");
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hsize_t dims[2] = {hsize_t(1) << 15, hsize_t(1) << 16}, chunk[2] = {1024, 1024};
  const hid_t space = H5Screate_simple(2, dims, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 2, chunk);
  const hid_t dataset = H5Dcreate2(file, "/big", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(dataset, 0);
  H5Dclose(dataset), H5Pclose(dcpl), H5Sclose(space), H5Fclose(file);
  ArtifactReader reader(path, "calib", 1);
  EXPECT_EKV_ERROR(reader.read_f32("/big"), path.string() + ":/big", "32768×65536", "needs 8589934592 bytes",
                   "stores 0");
  EXPECT_EQ(reader.read_f64("/layers/0/gram").size(), 16u);  // written datasets still read
}

TEST_F(ArtifactTest, NaNRefused) {
  const fs::path path = make("nan.h5", "calib", 1, std::nanf(""));
  ArtifactReader reader(path, "calib", 1);
  EXPECT_EKV_ERROR(reader.read_f32("/layers/0/x"), path.string() + ":/layers/0/x", "non-finite");
  EXPECT_EQ(reader.read_f32("/layers/0/x", {}, true).size(), 12u);
}

TEST_F(ArtifactTest, ModelFingerprintMismatch) {
  const fs::path path = make("a.h5");
  ArtifactReader reader(path, "calib", 1);
  EXPECT_EKV_ERROR(reader.require_model("def456", "other.gguf"), path.string(), "model_fingerprint",
                   "expected def456", "found abc123");
}

}  // namespace
}  // namespace ekv::test
