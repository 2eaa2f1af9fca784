// GGUF reader: a valid file parses; every corrupt or hostile variant gives an ekv::Error
// naming the file, never a crash or a huge allocation.
#include <gtest/gtest.h>

#include <limits>

#include "ekv/core/leniency.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/model/model_source.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {
namespace {

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = temp_dir("gguf"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string save(const Bytes& bytes, const std::string& name = "model.gguf") {
    const auto path = dir_ / name;
    write_file(path, bytes);
    return path.string();
  }
  std::filesystem::path dir_;
  TinyModel tiny_ = make_tiny_model();
};

TEST_F(GgufTest, ValidFileParses) {
  const std::string path = save(tiny_model_gguf(tiny_).build());
  GgufFile file(path);
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.get_uint("llama.block_count"), 2u);
  EXPECT_EQ(file.tensors().size(), 3u + 9u * 2u);
  const auto* q = file.find_tensor("blk.1.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape(), (std::vector<std::int64_t>{32, 32}));
  EXPECT_EQ(q->bytes, 32u * 32u * 4u);
}

TEST_F(GgufTest, Version2Accepted) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.version = 2;
  EXPECT_EQ(GgufFile(save(b.build())).version(), 2u);
}

TEST_F(GgufTest, BadMagic) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.magic = 0x12345678;
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "bad magic");
}

TEST_F(GgufTest, FutureVersion) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.version = 4;
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "version 4", "newer");
}

TEST_F(GgufTest, Version1Refused) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.version = 1;
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "too old");
}

TEST_F(GgufTest, BigEndianRefused) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.version = __builtin_bswap32(3u);
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "big-endian");
}

TEST_F(GgufTest, EveryTruncatedHeaderFailsCleanly) {
  const GgufBuilder b = tiny_model_gguf(tiny_);
  const Bytes full = b.build();
  // Every prefix that ends inside the header must be refused with the file's name.
  for (std::size_t cut = 0; cut < b.header_bytes(); cut += 7) {
    const std::string path = save(Bytes(full.begin(), full.begin() + std::ptrdiff_t(cut)), "cut.gguf");
    EXPECT_EKV_ERROR(GgufFile{path}, path);
  }
}

TEST_F(GgufTest, TruncatedData) {
  const Bytes full = tiny_model_gguf(tiny_).build();
  const std::string path = save(Bytes(full.begin(), full.end() - 100));
  EXPECT_EKV_ERROR(GgufFile{path}, path, "outside", "truncated");
}

TEST_F(GgufTest, TensorOffsetOutOfBounds) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensors()[3].offset_override = std::uint64_t(1) << 40;
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, b.tensors()[3].name, "outside");
}

TEST_F(GgufTest, TensorOffsetOverflowing) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensors()[1].offset_override = ~std::uint64_t(0) - 31;  // aligned, and offset + size wraps around
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, b.tensors()[1].name);
}

// Overlapping tensors used to load, each reading the other's bytes.
TEST_F(GgufTest, OverlappingTensors) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensors()[2].offset_override = 0;  // where tensor 0 lies
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, b.tensors()[2].name, "overlaps", b.tensors()[0].name);
}

TEST_F(GgufTest, MisalignedOffset) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensors()[2].offset_override = 4;
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "not aligned");
}

TEST_F(GgufTest, AbsurdTensorCount) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensor_count_override = std::uint64_t(1) << 60;
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "tensor count");
}

TEST_F(GgufTest, AbsurdMetadataCount) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.kv_count_override = ~std::uint64_t(0);
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "metadata count");
}

TEST_F(GgufTest, AbsurdStringLength) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  Bytes raw;
  put_string(raw, "evil.key");
  put_u32(raw, 8);  // string
  put_u64(raw, std::uint64_t(1) << 62);
  b.add_raw_kv(raw);
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "evil.key", "string length");
}

TEST_F(GgufTest, AbsurdArrayLength) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  Bytes raw;
  put_string(raw, "evil.array");
  put_u32(raw, 9);  // array
  put_u32(raw, 4);  // of u32
  put_u64(raw, std::uint64_t(1) << 61);
  b.add_raw_kv(raw);
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "evil.array", "array length");
}

TEST_F(GgufTest, UnknownValueType) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  Bytes raw;
  put_string(raw, "odd.key");
  put_u32(raw, 99);
  b.add_raw_kv(raw);
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "odd.key", "unknown value type");
}

TEST_F(GgufTest, DuplicateMetadataKey) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.add_u32("llama.block_count", 2);
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "duplicate metadata key llama.block_count");
}

TEST_F(GgufTest, DuplicateTensorName) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.add_f32_tensor("output_norm.weight", {32}, std::vector<float>(32, 1.0f));
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "duplicate tensor name output_norm.weight");
}

TEST_F(GgufTest, UnsupportedTensorType) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensors()[0].type = 16;  // IQ2_XXS
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "token_embd.weight", "IQ2_XXS", "not supported");
}

TEST_F(GgufTest, BadDimensionCount) {
  for (std::size_t dims : {std::size_t(0), std::size_t(5)}) {
    GgufBuilder b = tiny_model_gguf(tiny_);
    b.tensors()[1].ne.assign(dims, 1);
    const std::string path = save(b.build());
    EXPECT_EKV_ERROR(GgufFile{path}, path, "dimension count");
  }
}

TEST_F(GgufTest, ZeroDimension) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensors()[1].ne = {0};
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "is 0");
}

TEST_F(GgufTest, ElementCountOverflow) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensors()[1].ne = {std::uint64_t(1) << 40, std::uint64_t(1) << 40};
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "overflow");
}

TEST_F(GgufTest, QuantizedRowNotWholeBlocks) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.tensors()[1].type = 2;  // Q4_0 with a 32-element row: fine ...
  b.tensors()[1].ne = {16};  // ... but 16 elements are half a block
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "block size");
}

TEST_F(GgufTest, BadAlignment) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  b.add_u32("general.alignment", 24);
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(GgufFile{path}, path, "general.alignment", "power of two");
}

TEST_F(GgufTest, WrongMetadataTypeForModel) {
  GgufBuilder b;
  b.add_string("general.architecture", "llama");
  b.add_string("llama.block_count", "two");
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(ModelSource::open(path), path, "llama.block_count", "expected an unsigned integer", "string");
}

TEST_F(GgufTest, MissingMetadataForModel) {
  GgufBuilder b;
  b.add_string("general.architecture", "llama");
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(ModelSource::open(path), path, "llama.block_count", "missing");
}

TEST_F(GgufTest, NonLlamaArchitectureRefused) {
  GgufBuilder b;
  b.add_string("general.architecture", "gpt2");
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(ModelSource::open(path), path, "general.architecture", "gpt2");
}

TEST_F(GgufTest, TensorShapeMismatch) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  for (auto& t : b.tensors())
    if (t.name == "blk.1.attn_k.weight") {
      t.ne = {32, 8};
      t.data.resize(32 * 8 * 4);
    }
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(ModelSource::open(path), path, "blk.1.attn_k.weight", "expected 16×32, found 8×32");
}

TEST_F(GgufTest, MissingTensor) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  auto& tensors = b.tensors();
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                               [](const auto& t) { return t.name == "blk.0.ffn_up.weight"; }),
                tensors.end());
  const std::string path = save(b.build());
  EXPECT_EKV_ERROR(ModelSource::open(path), path, "model.layers.0.mlp.up_proj.weight", "missing");
}

// Issue 33: a block_count one short ran one layer fewer with only a warning.
TEST_F(GgufTest, UnusedTensorsAreAnErrorUnlessAllowed) {
  TinyModel short_count = tiny_;
  short_count.config.layers = 1;  // the metadata says 1; the file holds both layers' tensors
  const std::string path = save(tiny_model_gguf(short_count).build());
  EXPECT_EKV_ERROR(ModelSource::open(path), path, "not used by ekv", "blk.1.attn_q.weight", "--allow-unused-tensors");
  leniency().unused_tensors = true;
  EXPECT_EQ(ModelSource::open(path)->config().layers, 1);
  leniency().unused_tensors = false;
}

TEST_F(GgufTest, NonFiniteHyperParametersAreRefused) {
  TinyModel infinite = tiny_;
  infinite.config.rope_theta = std::numeric_limits<double>::infinity();  // rope.freq_base = inf
  const std::string path = save(tiny_model_gguf(infinite).build(), "inf-base.gguf");
  EXPECT_EKV_ERROR(ModelSource::open(path), path, "RoPE base", "finite");
}

TEST_F(GgufTest, NaNWeightRefusedOnLoad) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  for (auto& t : b.tensors())
    if (t.name == "blk.0.attn_v.weight") {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(t.data.data() + 40, &nan, 4);
    }
  const std::string path = save(b.build());
  const auto model = ModelSource::open(path);  // the index is fine; the values are not
  EXPECT_EKV_ERROR(model->layer(0), path, "blk.0.attn_v.weight", "non-finite", "element 10");
  EXPECT_NO_THROW(model->layer(1));
}

// Issue 33: output weights of 1e30 (finite) gave a perplexity.
TEST_F(GgufTest, ImplausiblyLargeWeightRefusedOnLoad) {
  GgufBuilder b = tiny_model_gguf(tiny_);
  for (auto& t : b.tensors())
    if (t.name == "blk.1.ffn_down.weight") {
      const float huge = 1e30f;
      std::memcpy(t.data.data() + 8, &huge, 4);
    }
  const std::string path = save(b.build());
  const auto model = ModelSource::open(path);
  EXPECT_EKV_ERROR(model->layer(1), path, "blk.1.ffn_down.weight", "1e+30", "element 2", "corrupt");
  EXPECT_NO_THROW(model->layer(0));
}

TEST_F(GgufTest, NotAFileAtAll) {
  const std::string path = (dir_ / "missing.gguf").string();
  EXPECT_EKV_ERROR(GgufFile{path}, path, "no such file");
  const std::string empty = save({}, "empty.gguf");
  EXPECT_EKV_ERROR(GgufFile{empty}, empty, "too short");
}

}  // namespace
}  // namespace ekv::test
