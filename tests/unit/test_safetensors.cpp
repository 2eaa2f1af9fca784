// safetensors reader and writer: round trips, and an enumerated list of corrupt files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ekv/io/safetensors.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = temp_dir("safetensors"); }
  void TearDown() override { fs::remove_all(dir_); }

  // A file with this header text and `data_bytes` bytes of data.
  std::string with_header(const std::string& header, std::size_t data_bytes, const std::string& name = "x.safetensors") {
    Bytes bytes;
    put_u64(bytes, header.size());
    bytes.insert(bytes.end(), header.begin(), header.end());
    bytes.resize(bytes.size() + data_bytes, 0);
    const auto path = dir_ / name;
    write_file(path, bytes);
    return path.string();
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripAllFloatTypes) {
  const fs::path path = dir_ / "rt.safetensors";
  const std::vector<float> values = {1.0f, -2.5f, 0.125f, 3.0e-3f, 65504.0f, -0.0f};
  {
    SafetensorsWriter writer(path, {{"format", "pt"}, {"note", "ekv test"}});
    writer.declare("a.f32", DType::f32, {2, 3});
    writer.declare("b.f16", DType::f16, {6});
    writer.declare("c.bf16", DType::bf16, {3, 2});
    writer.declare("d.empty", DType::f32, {0, 4});
    writer.write_floats("a.f32", values);
    writer.write_floats("b.f16", values);
    writer.write_floats("c.bf16", values);
    writer.write_floats("d.empty", {});
    EXPECT_FALSE(fs::exists(path));  // nothing visible before commit
    writer.commit();
  }
  ASSERT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir_ / "rt.safetensors.tmp"));
  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("note"), "ekv test");
  ASSERT_EQ(file.entries().size(), 4u);
  for (const char* name : {"a.f32", "b.f16", "c.bf16"}) {
    const auto* entry = file.find(name);
    ASSERT_NE(entry, nullptr) << name;
    std::vector<float> decoded(entry->elements());
    dequantize(entry->dtype, file.bytes(*entry), decoded);
    for (std::size_t i = 0; i < values.size(); ++i) {
      const float tolerance = entry->dtype == DType::f32 ? 0.0f : std::abs(values[i]) * 1e-2f;
      EXPECT_NEAR(decoded[i], values[i], tolerance) << name << "[" << i << "]";
    }
  }
  EXPECT_EQ(file.find("c.bf16")->shape, (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(file.find("d.empty")->elements(), 0u);
}

TEST_F(SafetensorsTest, UncommittedWriterLeavesNothing) {
  const fs::path path = dir_ / "crash.safetensors";
  {
    SafetensorsWriter writer(path);
    writer.declare("a", DType::f32, {2});
    writer.write_floats("a", std::vector<float>{1, 2});
  }  // destroyed without commit, as after an exception
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir_ / "crash.safetensors.tmp"));
}

TEST_F(SafetensorsTest, WriterRefusesMisuse) {
  SafetensorsWriter writer(dir_ / "misuse.safetensors");
  writer.declare("a", DType::f32, {2});
  writer.declare("b", DType::f32, {2});
  EXPECT_EKV_ERROR(writer.declare("a", DType::f32, {2}), "misuse.safetensors", "declared twice");
  EXPECT_EKV_ERROR(writer.declare("q", DType::q4_0, {32}), "cannot be stored in safetensors");
  EXPECT_EKV_ERROR(writer.write_floats("b", std::vector<float>{1, 2}), "out of declaration order");
}

TEST_F(SafetensorsTest, TooShort) {
  const auto path = dir_ / "short.safetensors";
  write_file(path, Bytes{1, 2, 3});
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path.string(), "too short");
}

TEST_F(SafetensorsTest, AbsurdHeaderLength) {
  Bytes bytes;
  put_u64(bytes, std::uint64_t(1) << 50);
  bytes.push_back('{');
  const auto path = dir_ / "absurd.safetensors";
  write_file(path, bytes);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path.string(), "exceeds the limit");
}

TEST_F(SafetensorsTest, TruncatedHeader) {
  Bytes bytes;
  put_u64(bytes, 1000);
  const std::string partial = R"({"a": {"dtype": "F32")";
  bytes.insert(bytes.end(), partial.begin(), partial.end());
  const auto path = dir_ / "trunc.safetensors";
  write_file(path, bytes);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path.string(), "truncated header");
}

TEST_F(SafetensorsTest, NotJson) {
  const std::string path = with_header("{not json at all", 0);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "not valid JSON");
}

TEST_F(SafetensorsTest, DuplicateName) {
  const std::string path = with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                       8);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "duplicate tensor name a");
}

TEST_F(SafetensorsTest, UnknownDtype) {
  const std::string path = with_header(R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "tensor a", "F8_E4M3");
}

TEST_F(SafetensorsTest, ShapeDoesNotMatchBytes) {
  const std::string path = with_header(R"({"w":{"dtype":"F32","shape":[3,3],"data_offsets":[0,32]}})", 32);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "tensor w", "need 36 bytes", "give 32");
}

TEST_F(SafetensorsTest, OffsetsOutOfBounds) {
  const std::string path = with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "tensor w", "outside");
}

TEST_F(SafetensorsTest, ReversedOffsets) {
  const std::string path = with_header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "tensor w", "reversed");
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const std::string path = with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                       12);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "overlap");
}

TEST_F(SafetensorsTest, AbsurdShape) {
  const std::string path =
      with_header(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", 4);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "tensor w", "overflow");
}

TEST_F(SafetensorsTest, NegativeShape) {
  const std::string path = with_header(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4);
  EXPECT_EKV_ERROR(SafetensorsFile{path}, path, "tensor w", "non-negative");
}

}  // namespace
}  // namespace ekv::test
