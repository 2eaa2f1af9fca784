// ekv-calibrate on a planted tiny model: the stored sums agree with the stored inputs and an
// independent recomputation, shards merge exactly, a seed fixes every byte, bad input leaves
// no output behind.
#include <gtest/gtest.h>

#include <cmath>

#include "ekv/calib/calib_file.hpp"
#include "ekv/core/error.hpp"
#include "ekv/tools/calibrate.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"
#include "token_file.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

class CalibrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir("calibrate");
    write_file(dir_ / "tiny.gguf", tiny_model_gguf(tiny_).build());
    std::vector<std::int32_t> stream;
    for (int i = 0; i < 700; ++i) stream.push_back((i * 13 + i / 7) % tiny_.config.vocab);
    write_token_file(dir_ / "tokens.safetensors", stream);
  }
  void TearDown() override { fs::remove_all(dir_); }

  CalibrateOptions options(const std::string& output, std::uint64_t seed = 3) const {
    CalibrateOptions o;
    o.model = (dir_ / "tiny.gguf").string();
    o.tokens = (dir_ / "tokens.safetensors").string();
    o.seq_len = 16;
    o.num_seqs = 6;
    o.keep_seqs = 6;
    o.micro_batch = 4;  // two micro-batches: sequences must still arrive in order
    o.seed = seed;
    o.output = (dir_ / output).string();
    return o;
  }

  fs::path dir_;
  TinyModel tiny_ = make_tiny_model(9);
};

using RowMajorD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Finite but huge weights overflow the activations: calibration stops at the first layer whose
// statistics are non-finite, naming it, and leaves no calib.h5 behind.
TEST_F(CalibrateTest, OverflowingWeightsAreRefusedBeforeCalibrating) {
  TinyModel broken = tiny_;
  broken.layers[0].w_up.setConstant(3e38f);  // layer 0's MLP overflows: layer 1's input is not finite
  write_file(dir_ / "tiny.gguf", tiny_model_gguf(broken).build());
  // Weights past 1e6 are refused as they load (issue 33), before any activation can overflow; the
  // statistics' own check ("layer 1: non-finite statistics") stays behind it.
  EXPECT_EKV_ERROR(run_calibrate(options("c.h5")), "tiny.gguf", "blk.0.ffn_up.weight", "past 1e+06");
  EXPECT_FALSE(fs::exists(dir_ / "c.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "c.h5.tmp"));
}

// A corpus that is empty or binary (a NUL byte: a .gz, a model file) is refused before any work,
// naming the file (and the offset of the first NUL).
TEST_F(CalibrateTest, EmptyOrBinaryCorpusIsRefused) {
  CalibrateOptions o = options("c.h5");
  o.tokens.clear();
  o.texts = {(dir_ / "empty.txt").string()};
  write_file(dir_ / "empty.txt", {});
  EXPECT_EKV_ERROR(o.check(), "empty.txt", "empty");
  std::vector<std::uint8_t> binary = {'a', 'b', 'c', 0, 1, 2};
  write_file(dir_ / "binary.txt", binary);
  o.texts = {(dir_ / "binary.txt").string()};
  EXPECT_EKV_ERROR(o.check(), "binary.txt", "NUL byte at offset 3", "not a text corpus");
  write_file(dir_ / "text.txt", {'o', 'k', '\n'});
  o.texts = {(dir_ / "text.txt").string()};
  o.check();  // and text passes
}

TEST_F(CalibrateTest, GramEqualsStoredInputs) {
  run_calibrate(options("c.h5"));
  const CalibData data = read_calib(dir_ / "c.h5");
  ASSERT_EQ(data.layers.size(), 2u);
  for (const auto& stats : data.layers) {
    ASSERT_EQ(stats.x.size(), std::size_t(6 * 16 * 32));
    const RowMajorD x = Eigen::Map<const Matrix>(stats.x.data(), 6 * 16, 32).cast<double>();
    const Eigen::MatrixXd expected = x.transpose() * x;
    EXPECT_LT((stats.gram - expected).cwiseAbs().maxCoeff(), 1e-9 * expected.cwiseAbs().maxCoeff());
    EXPECT_EQ(stats.count, 6 * 16);
    EXPECT_TRUE(stats.gram.isApprox(stats.gram.transpose()));
    EXPECT_GT(stats.q_norm_sum.minCoeff(), 0.0);
  }
}

TEST_F(CalibrateTest, LayerZeroInputIsNormedEmbedding) {
  run_calibrate(options("c.h5"));
  const CalibData data = read_calib(dir_ / "c.h5");
  const auto& x = data.layers[0].x;
  for (int t = 0; t < 6 * 16; ++t) {
    const int token = data.tokens[std::size_t(t)];
    const Eigen::VectorXd e = tiny_.globals.embedding.row(token).transpose().cast<double>();
    const double inv = 1.0 / std::sqrt(e.squaredNorm() / 32 + tiny_.config.norm_eps);
    for (int c = 0; c < 32; ++c)
      ASSERT_NEAR(x[std::size_t(t * 32 + c)], e[c] * inv * tiny_.layers[0].attn_norm[c], 1e-5) << t << "," << c;
  }
  // The tokens are the stream at the recorded offsets.
  EXPECT_EQ(data.tokens[16], (data.offsets[1] * 13 + data.offsets[1] / 7) % tiny_.config.vocab);
}

TEST_F(CalibrateTest, ChunkNormSumsMatchDefinition) {
  run_calibrate(options("c.h5"));
  const CalibData data = read_calib(dir_ / "c.h5");
  const auto& stats = data.layers[1];
  const Matrix x = Eigen::Map<const Matrix>(stats.x.data(), 6 * 16, 32);
  const Matrix k = x * tiny_.layers[1].wk.transpose();  // [T, G*d_h], before RoPE
  double expected = 0;  // KV head 1, chunk 2: dims (8+2, 8+2+4)
  for (Eigen::Index t = 0; t < k.rows(); ++t) expected += std::hypot(double(k(t, 10)), double(k(t, 14)));
  EXPECT_NEAR(stats.k_norm_sum(1, 2), expected, 1e-4 * expected);
}

TEST_F(CalibrateTest, SameSeedSameBytes) {
  run_calibrate(options("a.h5", 5));
  run_calibrate(options("b.h5", 5));
  run_calibrate(options("c.h5", 6));
  const ArtifactReader a(dir_ / "a.h5", "calib", 1), b(dir_ / "b.h5", "calib", 1), c(dir_ / "c.h5", "calib", 1);
  const auto datasets = a.datasets();
  ASSERT_EQ(datasets.size(), b.datasets().size());
  for (const auto& info : datasets) {
    switch (info.kind) {
      case ElementKind::f64: EXPECT_EQ(a.read_f64(info.name), b.read_f64(info.name)) << info.name; break;
      case ElementKind::f32: EXPECT_EQ(a.read_f32(info.name), b.read_f32(info.name)) << info.name; break;
      case ElementKind::i32: EXPECT_EQ(a.read_i32(info.name), b.read_i32(info.name)) << info.name; break;
      case ElementKind::i64: EXPECT_EQ(a.read_i64(info.name), b.read_i64(info.name)) << info.name; break;
      default: ADD_FAILURE() << info.name << ": unexpected dtype";
    }
  }
  EXPECT_NE(a.read_i64("/offsets"), c.read_i64("/offsets"));
}

TEST_F(CalibrateTest, MergeAddsSumsAndConcatenatesSamples) {
  CalibrateOptions first = options("s1.h5", 1), second = options("s2.h5", 2);
  second.keep_seqs = 2;
  run_calibrate(first);
  run_calibrate(second);
  run_calibrate_merge({{(dir_ / "s1.h5").string(), (dir_ / "s2.h5").string()}, (dir_ / "all.h5").string()});
  const CalibData s1 = read_calib(dir_ / "s1.h5"), s2 = read_calib(dir_ / "s2.h5"), all = read_calib(dir_ / "all.h5");
  EXPECT_EQ(all.num_seqs, 12);
  EXPECT_EQ(all.keep_seqs, 8);
  EXPECT_EQ(all.seeds, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(all.kept, (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  for (std::size_t l = 0; l < all.layers.size(); ++l) {
    EXPECT_EQ(all.layers[l].gram, s1.layers[l].gram + s2.layers[l].gram);
    EXPECT_EQ(all.layers[l].k_norm_sum, s1.layers[l].k_norm_sum + s2.layers[l].k_norm_sum);
    EXPECT_EQ(all.layers[l].count, 12 * 16);
    EXPECT_EQ(all.layers[l].x.size(), std::size_t(8 * 16 * 32));
  }
  EXPECT_EQ(std::vector<std::int32_t>(all.tokens.begin() + 6 * 16, all.tokens.end()), s2.tokens);
}

TEST_F(CalibrateTest, ShardSlicesMergeIntoTheUnshardedRun) {
  // --shard I/N takes slice I of the one sample; merging all slices in order must give the
  // unsharded file: the same tokens, offsets and stored X, and sums equal up to their order.
  CalibrateOptions whole = options("whole.h5");
  whole.num_seqs = 11;  // micro-batches of 4: slices 4, 4, 3
  whole.keep_seqs = 6;  // the kept X straddle the first two slices
  run_calibrate(whole);
  std::vector<std::string> slices;
  for (int i = 0; i < 3; ++i) {
    CalibrateOptions part = whole;
    part.shard = cat(i, "/3");
    part.output = (dir_ / cat("part", i, ".h5")).string();
    run_calibrate(part);
    slices.push_back(part.output);
  }
  const CalibData second = read_calib(slices[1]);
  EXPECT_EQ(second.num_seqs, 4);
  EXPECT_EQ(second.keep_seqs, 2);
  EXPECT_EQ(second.shard_index, 1);
  EXPECT_EQ(second.shard_count, 3);
  EXPECT_EQ(read_calib(slices[2]).keep_seqs, 0);
  // Missing, reordered or foreign slices are not the sample.
  const std::string bad = (dir_ / "bad.h5").string();
  EXPECT_EKV_ERROR(run_calibrate_merge({{slices[0], slices[1]}, bad}), "part0.h5", "all together and in order");
  EXPECT_EKV_ERROR(run_calibrate_merge({{slices[1], slices[0], slices[2]}, bad}), "part1.h5", "expected 0/3");
  run_calibrate(options("other.h5", 8));
  EXPECT_EKV_ERROR(run_calibrate_merge({{slices[0], slices[1], (dir_ / "other.h5").string()}, bad}), "other.h5",
                   "expected 2/3");
  EXPECT_FALSE(fs::exists(bad));

  run_calibrate_merge({slices, (dir_ / "merged.h5").string()});
  const CalibData a = read_calib(dir_ / "whole.h5"), b = read_calib(dir_ / "merged.h5");
  EXPECT_EQ(b.shard_count, 1);
  EXPECT_EQ(b.seeds, a.seeds);
  EXPECT_EQ(b.num_seqs, a.num_seqs);
  EXPECT_EQ(b.keep_seqs, a.keep_seqs);
  EXPECT_EQ(b.tokens, a.tokens);
  EXPECT_EQ(b.offsets, a.offsets);
  EXPECT_EQ(b.kept, a.kept);
  ASSERT_EQ(b.layers.size(), a.layers.size());
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_EQ(b.layers[l].x, a.layers[l].x) << l;
    EXPECT_EQ(b.layers[l].count, a.layers[l].count);
    EXPECT_LE((b.layers[l].gram - a.layers[l].gram).norm(), 1e-12 * a.layers[l].gram.norm()) << l;
    EXPECT_LE((b.layers[l].q_norm_sum - a.layers[l].q_norm_sum).norm(), 1e-12 * a.layers[l].q_norm_sum.norm()) << l;
  }
  CalibrateOptions malformed = whole;
  for (const char* shard : {"3/3", "1", "a/3", "1/0", "-1/3", "1/3x", "0/4"}) {
    malformed.shard = shard;
    EXPECT_EKV_ERROR(run_calibrate(malformed), "--shard ", shard);
  }
}

TEST_F(CalibrateTest, MergeRefusesMismatches) {
  run_calibrate(options("s1.h5", 1));
  CalibrateOptions other = options("s16.h5", 2);
  other.seq_len = 8;
  run_calibrate(other);
  const std::string s16 = (dir_ / "s16.h5").string();
  EXPECT_EKV_ERROR(run_calibrate_merge({{(dir_ / "s1.h5").string(), s16}, (dir_ / "m.h5").string()}), s16,
                   "seq_len", "expected 16, found 8");
  CalibrateOptions layers = options("l.h5", 2);
  layers.layers = "1:2";
  run_calibrate(layers);
  const std::string l = (dir_ / "l.h5").string();
  EXPECT_EKV_ERROR(run_calibrate_merge({{(dir_ / "s1.h5").string(), l}, (dir_ / "m.h5").string()}), l, "layers");
  // The same shard twice, or a copy of it, used to be merged, counting its statistics twice.
  const std::string s1 = (dir_ / "s1.h5").string();
  EXPECT_EKV_ERROR(run_calibrate_merge({{s1, s1}, (dir_ / "m.h5").string()}), "the same sampled sequences", "--seed");
  fs::copy_file(s1, dir_ / "copy.h5");
  EXPECT_EKV_ERROR(run_calibrate_merge({{s1, (dir_ / "copy.h5").string()}, (dir_ / "m.h5").string()}), "copy.h5",
                   "the same sampled sequences");
  EXPECT_FALSE(fs::exists(dir_ / "m.h5"));
}

TEST_F(CalibrateTest, LayerRangeAndBf16) {
  CalibrateOptions o = options("l.h5");
  o.layers = "1:2";
  o.store_dtype = "bf16";
  run_calibrate(o);
  run_calibrate(options("full.h5"));
  const CalibData part = read_calib(dir_ / "l.h5"), full = read_calib(dir_ / "full.h5");
  ASSERT_EQ(part.layers.size(), 1u);
  EXPECT_EQ(part.layers[0].layer, 1);
  EXPECT_EQ(part.layers[0].gram, full.layers[1].gram);  // the statistics never see the rounding
  double worst = 0;
  for (std::size_t i = 0; i < part.layers[0].x.size(); ++i)
    worst = std::max(worst, double(std::abs(part.layers[0].x[i] - full.layers[1].x[i]) /
                                   (std::abs(full.layers[1].x[i]) + 1e-3f)));
  EXPECT_LT(worst, 8e-3);  // bf16 keeps 8 significant bits
}

TEST_F(CalibrateTest, BadInputLeavesNoFile) {
  write_token_file(dir_ / "short.safetensors", {1, 2, 3});
  CalibrateOptions o = options("bad.h5");
  o.tokens = (dir_ / "short.safetensors").string();
  EXPECT_EKV_ERROR(run_calibrate(o), "fewer than one sequence");
  o = options("bad.h5");
  o.seq_len = 1000;
  EXPECT_EKV_ERROR(run_calibrate(o), "--seq-len 1000", "context");
  o = options("bad.h5");
  o.num_seqs = 0;
  o.keep_seqs = 0;
  EXPECT_EKV_ERROR(run_calibrate(o), "--num-seqs 0");
  o = options("bad.h5");
  o.layers = "1:9";
  EXPECT_EKV_ERROR(run_calibrate(o), "--layers 1:9");
  write_token_file(dir_ / "oov.safetensors", std::vector<std::int32_t>(100, 40));
  o = options("bad.h5");
  o.tokens = (dir_ / "oov.safetensors").string();
  EXPECT_EKV_ERROR(run_calibrate(o), "token id 40", "vocabulary");
  // -N 1000000000 used to allocate until the kernel killed the process.
  o = options("bad.h5");
  o.num_seqs = 1'000'000'000;
  EXPECT_EKV_ERROR(run_calibrate(o), "--num-seqs 1000000000", "GiB", "available");
  o = options("bad.h5");
  o.num_seqs = 200;  // 3200 tokens sampled from 700
  EXPECT_EKV_ERROR(run_calibrate(o), "--num-seqs 200", "700 tokens");
  EXPECT_FALSE(fs::exists(dir_ / "bad.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "bad.h5.tmp"));
  o = options("no/such/dir/out.h5");
  EXPECT_EKV_ERROR(run_calibrate(o), "out.h5", "does not exist");
}

TEST(SampleOffsets, UniformAndReproducible) {
  const auto a = sample_offsets(1000, 100, 5000, 42);
  EXPECT_EQ(a, sample_offsets(1000, 100, 5000, 42));
  EXPECT_EQ(*std::min_element(a.begin(), a.end()), 0);
  EXPECT_EQ(*std::max_element(a.begin(), a.end()), 900);  // last valid start is reached
  EXPECT_EQ(sample_offsets(100, 100, 3, 1), (std::vector<std::int64_t>{0, 0, 0}));
}

}  // namespace
}  // namespace ekv::test
