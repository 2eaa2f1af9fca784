// The ekv-jlrd tool on the planted tiny model: lossless at full rank, joint <= separate and
// whitened <= weight on data error, the budget meets its cache ratio, the output-aware options
// lower the block error and record what they chose, and bad options are refused.
#include <gtest/gtest.h>

#include <hdf5.h>

#include <cmath>
#include <filesystem>

#include "ekv/io/artifact.hpp"
#include "ekv/jlrd/jlrd_run.hpp"
#include "ekv/lrd/joint_matrix.hpp"
#include "ekv/lrd/jlrd_file.hpp"
#include "ekv/lrd/rank_budget.hpp"
#include "ekv/tools/calibrate.hpp"
#include "ekv/tools/jlrd.hpp"
#include "ekv/tools/select_rope.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"
#include "tiny_pipeline.hpp"
#include "token_file.hpp"

namespace ekv {
namespace {

namespace fs = std::filesystem;

constexpr int kColumns = 8;  // layer, rank, cache_ratio, weight/data/logit/output/block error

struct SweepTable {
  std::vector<std::array<double, kColumns>> rows;
  double at(int layer, int rank, int column) const {
    for (const auto& row : rows)
      if (int(row[0]) == layer && int(row[1]) == rank) return row[std::size_t(column)];
    ADD_FAILURE() << "no row for layer " << layer << " rank " << rank;
    return NAN;
  }
};

SweepTable read_sweep(const fs::path& path) {
  const ArtifactReader reader(path, "jlrd", kJlrdFormatVersion);
  const auto flat = reader.read_f64("/sweep", {-1, kColumns}, true);
  SweepTable table;
  for (std::size_t i = 0; i < flat.size(); i += kColumns) {
    std::array<double, kColumns> row;
    std::copy_n(flat.begin() + std::ptrdiff_t(i), kColumns, row.begin());
    table.rows.push_back(row);
  }
  return table;
}

class JlrdTool : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return pipeline_.path(name); }

  JlrdOptions options(const std::string& output) const {
    JlrdOptions o;
    o.model = path("tiny.gguf");
    o.rope = path("rope.h5");
    o.calib = path("calib.h5");
    o.output = path(output);
    return o;
  }

  test::TinyPipeline pipeline_{"jlrd"};
  const fs::path& dir_ = pipeline_.dir;
  const test::TinyModel& tiny_ = pipeline_.tiny;
};

TEST_F(JlrdTool, LosslessWithAllChunksEliteAndFullRank) {
  JlrdOptions o = options("lossless.h5");
  o.r = 4;  // every chunk keeps RoPE: W_J holds only the 16 value rows
  o.ranks = {16};
  run_jlrd(o);
  const SweepTable table = read_sweep(dir_ / "lossless.h5");
  for (int layer : {0, 1}) {
    EXPECT_LT(table.at(layer, 16, 3), 1e-6);   // weight error
    EXPECT_LT(table.at(layer, 16, 5), 1e-5);   // logit error
    EXPECT_LT(table.at(layer, 16, 6), 1e-5);   // attention-output error
    EXPECT_DOUBLE_EQ(table.at(layer, 16, 2), cache_ratio(4, 2, 8, 16));
  }
  EXPECT_TRUE(fs::exists(dir_ / "lossless.csv"));
}

TEST_F(JlrdTool, JointBeatsSeparateAndWhitenedBeatsWeight) {
  JlrdOptions joint = options("joint.h5"), separate = options("separate.h5"), weight = options("weight.h5");
  joint.r = separate.r = weight.r = 1;
  joint.svd = separate.svd = SvdBasis::whitened;
  separate.mode = FactorMode::separate;
  joint.ranks = separate.ranks = weight.ranks = {4, 8, 12, 16, 20};
  run_jlrd(joint);
  run_jlrd(separate);
  run_jlrd(weight);
  const SweepTable j = read_sweep(dir_ / "joint.h5"), s = read_sweep(dir_ / "separate.h5"),
                   w = read_sweep(dir_ / "weight.h5");
  for (int layer : {0, 1}) {
    double previous = 2.0;
    for (int rank : {4, 8, 12, 16, 20}) {
      // A separate factorization is one feasible rank-k factorization of the stack, and the
      // whitened joint SVD is the best rank-k one for the data error.
      EXPECT_LE(j.at(layer, rank, 4), s.at(layer, rank, 4) + 1e-9) << layer << "/" << rank;
      EXPECT_LE(j.at(layer, rank, 4), w.at(layer, rank, 4) + 1e-9) << layer << "/" << rank;
      EXPECT_LT(j.at(layer, rank, 4), previous);
      previous = j.at(layer, rank, 4);
    }
  }
}

TEST_F(JlrdTool, Fp32SvdAgreesWithFp64AndInputsAreRecorded) {
  JlrdOptions f64 = options("f64.h5"), f32 = options("f32.h5");
  f64.r = f32.r = 1;
  f64.svd = f32.svd = SvdBasis::whitened;
  f32.precision = SvdPrecision::f32;
  f64.ranks = f32.ranks = {4, 12};
  run_jlrd(f64);
  run_jlrd(f32);
  const SweepTable a = read_sweep(dir_ / "f64.h5"), b = read_sweep(dir_ / "f32.h5");
  for (int layer : {0, 1})
    for (int rank : {4, 12})
      for (int column : {3, 4, 6}) EXPECT_NEAR(a.at(layer, rank, column), b.at(layer, rank, column), 1e-4);
  const ArtifactReader reader(dir_ / "f32.h5", "jlrd", kJlrdFormatVersion);
  EXPECT_EQ(reader.string_attribute("/", "precision"), "f32");
  std::vector<std::string> types;
  for (const auto& input : reader.provenance().inputs) types.push_back(input.type);
  EXPECT_EQ(types, (std::vector<std::string>{"gguf", "rope", "calib"}));
}

TEST_F(JlrdTool, BudgetMeetsTheRatioAndBeatsUniform) {
  JlrdOptions budget = options("budget.h5"), uniform = options("uniform.h5");
  budget.r = uniform.r = 2;
  budget.svd = uniform.svd = SvdBasis::whitened;
  budget.budget = 0.5;
  uniform.cache_ratios = {0.5};
  run_jlrd(budget);
  run_jlrd(uniform);
  const ArtifactReader rb(dir_ / "budget.h5", "jlrd", kJlrdFormatVersion), ru(dir_ / "uniform.h5", "jlrd", kJlrdFormatVersion);
  EXPECT_NEAR(rb.float_attribute("/", "cache_ratio"), 0.5, 1.0 / 32);
  EXPECT_DOUBLE_EQ(ru.float_attribute("/", "cache_ratio"), 0.5);
  const auto ranks = rb.read_i32("/ranks");
  const SweepTable b = read_sweep(dir_ / "budget.h5"), u = read_sweep(dir_ / "uniform.h5");
  double budget_sq = 0, uniform_sq = 0;
  for (int layer : {0, 1}) {
    budget_sq += std::pow(b.at(layer, ranks[std::size_t(layer)], 4), 2);
    uniform_sq += std::pow(u.at(layer, 8, 4), 2);  // 0.5 · 32 − 2·2·2 = 8 per layer
  }
  EXPECT_LE(budget_sq, uniform_sq + 1e-12);
  EXPECT_EQ(rb.read_f32("/layers/0/a", {ranks[0], 32}).size(), std::size_t(ranks[0] * 32));
}

// The controller's steps, driven one by one as the tool does: the budget is placed by
// plan_ranks, the layers are swept in any number of calls, and nothing lands on disk until
// finish (a crash between steps leaves no partial jlrd.h5 or sweep table).
TEST_F(JlrdTool, TheControllersStepsWriteOnlyAtFinish) {
  JlrdOptions o = options("steps.h5");
  o.r = 2;
  o.svd = SvdBasis::whitened;
  o.budget = 0.5;
  JlrdRun run(o);
  ASSERT_EQ(run.layers(), 2);
  EXPECT_THROW(run.sweep_layer(0), std::logic_error);  // a budget run's ranks come from plan_ranks
  run.plan_ranks();
  run.sweep_layer(0);
  run.sweep_layer(1);
  EXPECT_FALSE(fs::exists(dir_ / "steps.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "steps.csv"));
  const JlrdSummary summary = run.finish();
  EXPECT_TRUE(fs::exists(dir_ / "steps.csv"));
  const ArtifactReader reader(dir_ / "steps.h5", "jlrd", kJlrdFormatVersion);
  EXPECT_DOUBLE_EQ(reader.float_attribute("/", "cache_ratio"), summary.cache_ratio);
  EXPECT_NEAR(summary.cache_ratio, 0.5, 1.0 / 32);
  EXPECT_EQ(reader.string_attribute("/", "allocation"), "budget");
  EXPECT_EQ(summary.layer_begin, 0);
  EXPECT_EQ(summary.layer_end, 2);
}

// Issue 31: the streamed refit sums the same normal equations as the stored-sequence refit. With
// every sequence stored (keep = num), both fit the same data with the same held-out split, so
// the refitted W_o agree to rounding; with fewer stored, the streamed one sees more sequences
// and still refits W_o (the held-out error falls).
TEST_F(JlrdTool, StreamedRefitEqualsTheStoredRefitOnTheSameSequences) {
  pipeline_.calibrate("all-kept.h5", 32, 8, 8);
  JlrdOptions stored = options("stored.h5");
  stored.calib = path("all-kept.h5");
  stored.r = 1;
  stored.svd = SvdBasis::whitened;
  stored.ranks = {6};
  stored.refit_output = true;
  stored.refit_heldout = 3;
  run_jlrd(stored);
  JlrdOptions streamed = stored;
  streamed.output = path("streamed.h5");
  streamed.refit_stream = true;
  run_jlrd(streamed);
  const ArtifactReader a(dir_ / "stored.h5", "jlrd", kJlrdFormatVersion), b(dir_ / "streamed.h5", "jlrd", kJlrdFormatVersion);
  EXPECT_EQ(b.string_attribute("/", "refit_stream"), "true");
  int refitted = 0;
  for (int layer : {0, 1}) {
    const std::string name = "/layers/" + std::to_string(layer) + "/o_proj";
    ASSERT_EQ(a.has(name), b.has(name)) << name;
    if (!a.has(name)) continue;
    ++refitted;
    const std::vector<float> wa = a.read_f32(name), wb = b.read_f32(name);
    ASSERT_EQ(wa.size(), wb.size());
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < wa.size(); ++i) {
      diff += std::pow(double(wa[i]) - wb[i], 2);
      norm += std::pow(double(wa[i]), 2);
    }
    EXPECT_LT(std::sqrt(diff / norm), 1e-4) << name;
    EXPECT_EQ(a.float_attribute(name, "ridge"), b.float_attribute(name, "ridge")) << layer;
  }
  EXPECT_GT(refitted, 0);
  // Two stored sequences (one to fit, one held out), twelve streamed.
  JlrdOptions few = stored;
  few.calib = path("calib.h5");
  few.refit_heldout = 1;
  few.refit_stream = true;
  few.output = path("few.h5");
  run_jlrd(few);
  const ArtifactReader c(dir_ / "few.h5", "jlrd", kJlrdFormatVersion);
  EXPECT_TRUE(c.has("/layers/0/o_proj") || c.has("/layers/1/o_proj"));
  // S-LRD has no budget curve to read: its first pass only prepares the stream.
  JlrdOptions separate = few;
  separate.mode = FactorMode::separate;
  separate.output = path("separate-streamed.h5");
  EXPECT_NO_THROW(run_jlrd(separate));
  EXPECT_TRUE(fs::exists(dir_ / "separate-streamed.h5"));
}

// A bare file name as the output (the sweep CSV beside it has the parent "") used to fail after
// every SVD: "cannot create directories: Invalid argument".
TEST_F(JlrdTool, BareOutputNameInTheWorkingDirectory) {
  JlrdOptions o = options("unused.h5");
  o.r = 2;
  o.budget = 0.5;
  o.output = "bare.h5";
  const fs::path previous = fs::current_path();
  fs::current_path(dir_);
  EXPECT_NO_THROW(run_jlrd(o));
  fs::current_path(previous);
  EXPECT_TRUE(fs::exists(dir_ / "bare.h5"));
  EXPECT_TRUE(fs::exists(dir_ / "bare.csv"));
}

// --low-memory decomposes each layer again for the sweep instead of keeping it from the
// budget's first pass: the same computation, so the same bits (factors, refit, sweep, ranks).
TEST_F(JlrdTool, LowMemoryBudgetWritesTheSameFile) {
  pipeline_.calibrate("calib-kept.h5", 48, 12, 12);  // enough stored sequences for the W_o refit
  JlrdOptions kept = options("kept.h5");
  kept.calib = path("calib-kept.h5");
  kept.r = 1;
  kept.svd = SvdBasis::whitened;
  kept.budget = 0.3;
  kept.chunk_map = ChunkMapChoice::automatic;
  kept.weighting = RowWeighting::attention;
  kept.refit_output = true;
  kept.refit_heldout = 1;
  run_jlrd(kept);
  JlrdOptions low = kept;
  low.low_memory = true;
  low.output = path("low.h5");
  run_jlrd(low);
  const ArtifactReader a(dir_ / "kept.h5", "jlrd", kJlrdFormatVersion), b(dir_ / "low.h5", "jlrd", kJlrdFormatVersion);
  EXPECT_EQ(a.read_i32("/ranks"), b.read_i32("/ranks"));
  EXPECT_EQ(a.read_f64("/sweep"), b.read_f64("/sweep"));
  for (const char* name : {"/layers/0/a", "/layers/1/b_k", "/layers/1/b_v", "/layers/0/o_proj", "/layers/1/o_proj"}) {
    ASSERT_EQ(a.has(name), b.has(name)) << name;
    if (a.has(name)) {
      EXPECT_EQ(a.read_f32(name), b.read_f32(name)) << name;
    }
  }
  EXPECT_TRUE(a.has("/layers/0/o_proj") || a.has("/layers/1/o_proj"));  // the refit took part
}

TEST_F(JlrdTool, OutputAwareOptionsLowerTheBlockErrorAndAreRecorded) {
  JlrdOptions plain = options("plain.h5");
  plain.r = 1;
  plain.svd = SvdBasis::whitened;
  plain.cache_ratios = {0.25};
  run_jlrd(plain);
  JlrdOptions refined = plain;
  refined.output = path("refined.h5");
  refined.chunk_map = ChunkMapChoice::automatic;
  refined.weighting = RowWeighting::attention;
  refined.refit_output = true;
  refined.refit_heldout = 1;
  run_jlrd(refined);
  const SweepTable a = read_sweep(dir_ / "plain.h5"), b = read_sweep(dir_ / "refined.h5");
  const int rank = int(a.rows[0][1]);
  double before = 0, after = 0;
  for (int layer = 0; layer < 2; ++layer) {
    before += a.at(layer, rank, 7);
    after += b.at(layer, rank, 7);
  }
  EXPECT_LT(after, before);  // on the fitting sequences: each option can only lower it there
  const ArtifactReader reader(dir_ / "refined.h5", "jlrd", kJlrdFormatVersion);
  EXPECT_EQ(reader.string_attribute("/", "chunk_map"), "auto");
  EXPECT_EQ(reader.string_attribute("/", "weighting"), "attention");
  EXPECT_EQ(reader.string_attribute("/", "refit_output"), "true");
  for (int layer = 0; layer < 2; ++layer) {
    const std::string a_name = "/layers/" + std::to_string(layer) + "/a";
    EXPECT_LE(reader.float_attribute(a_name, "floor_mapped"), reader.float_attribute(a_name, "floor_unrotated"));
    EXPECT_GT(reader.float_attribute(a_name, "key_scale"), 0);
  }
}

// Each kind of chunk map runs through the tool and is recorded per layer with its maps.
TEST_F(JlrdTool, EveryChunkMapKindRunsAndIsRecorded) {
  for (ChunkMapChoice choice : {ChunkMapChoice::scalar, ChunkMapChoice::matrix, ChunkMapChoice::per_chunk}) {
    const std::string name = name_of(choice);
    JlrdOptions o = options(name + ".h5");
    o.r = 1;
    o.svd = SvdBasis::whitened;
    o.cache_ratios = {0.25};
    o.chunk_map = choice;
    run_jlrd(o);
    const ArtifactReader reader(dir_ / (name + ".h5"), "jlrd", kJlrdFormatVersion);
    EXPECT_EQ(reader.string_attribute("/", "chunk_map"), name);
    for (int layer = 0; layer < 2; ++layer) {
      const std::string prefix = "/layers/" + std::to_string(layer);
      EXPECT_EQ(reader.string_attribute(prefix + "/a", "chunk_map"), name) << "layer " << layer;
      const std::vector<double> maps = reader.read_f64(prefix + "/chunk_maps");
      ASSERT_FALSE(maps.empty()) << name << " layer " << layer;
      for (std::size_t i = 0; i < maps.size(); i += 6) {
        for (std::size_t e = 2; e < 6; ++e) EXPECT_TRUE(std::isfinite(maps[i + e])) << name;
        if (choice == ChunkMapChoice::scalar) {
          EXPECT_TRUE(maps[i + 3] == 0 && maps[i + 4] == 0 && maps[i + 2] == maps[i + 5]);
        }
      }
    }
  }
}

TEST_F(JlrdTool, Refusals) {
  JlrdOptions o = options("bad.h5");
  o.r = 5;
  o.ranks = {4};
  EXPECT_EKV_ERROR(run_jlrd(o), "--r 5", "rope.h5");
  test::TinyModel other = test::make_tiny_model(32);
  other.config.rope_theta = 777;
  test::write_file(dir_ / "other.gguf", test::tiny_model_gguf(other).build());
  o = options("bad.h5");
  o.ranks = {4};
  o.model = path("other.gguf");
  EXPECT_EKV_ERROR(run_jlrd(o), "rope.h5", "another model");
  o = options("bad.h5");
  EXPECT_EKV_ERROR(run_jlrd(o), "exactly one of --rank, --cache-ratio, --budget");
  o.ranks = {4};
  o.cache_ratios = {0.5};
  EXPECT_EKV_ERROR(run_jlrd(o), "exactly one of --rank, --cache-ratio, --budget");
  o = options("bad.h5");
  o.ranks = {4};
  o.svd = SvdBasis::whitened;
  o.calib.clear();
  EXPECT_EKV_ERROR(run_jlrd(o), "--svd whitened", "need --calib");
  o = options("bad.h5");
  o.mode = FactorMode::separate;
  o.budget = 0.5;
  EXPECT_EKV_ERROR(run_jlrd(o), "--budget needs --mode joint");
  o = options("bad.h5");
  o.r = 2;
  o.cache_ratios = {0.1};  // r = 2 alone caches 2·2·2 / 32 = 0.25
  EXPECT_EKV_ERROR(run_jlrd(o), "--cache-ratio 0.1", "alone caches");
  o = options("bad.h5");
  o.ranks = {4};
  o.mode = FactorMode::values;
  o.chunk_map = ChunkMapChoice::scalar;
  EXPECT_EKV_ERROR(run_jlrd(o), "--mode values drops the non-elite keys", "--chunk-map");
  o = options("bad.h5");
  o.ranks = {4};
  o.weighting = RowWeighting::attention;
  EXPECT_EKV_ERROR(run_jlrd(o), "--weighting attention needs --svd whitened");
  o = options("bad.h5");
  o.ranks = {4};
  o.refit_output = true;
  o.calib.clear();
  EXPECT_EKV_ERROR(run_jlrd(o), "--refit-output", "need --calib");
  o = options("bad.h5");
  o.ranks = {4};
  o.refit_output = true;
  o.refit_heldout = 2;  // the tiny calibration keeps 2 sequences: none would remain to fit on
  EXPECT_EKV_ERROR(run_jlrd(o), "calib.h5: keep_seqs: 2", "--refit-output needs more than --refit-heldout (2)");
  o = options("bad.h5");
  o.ranks = {4};
  o.sequential = true;
  EXPECT_EKV_ERROR(run_jlrd(o), "--sequential", "--refit-output");
  o = options("bad.h5");
  o.ranks = {4};
  o.refit_output = true;
  o.compensate = true;
  EXPECT_EKV_ERROR(run_jlrd(o), "--compensate", "--sequential");
  o = options("bad.h5");
  o.ranks = {1000};  // used to be clamped to the layer's largest rank without a word
  EXPECT_EKV_ERROR(run_jlrd(o), "--rank 1000", "layer 0 has at most");
  EXPECT_FALSE(fs::exists(dir_ / "bad.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "bad.csv"));
}

// A layer whose Gram is all zeros made --svd whitened loop forever (issue 21): the ridge grew
// from 0 × its mean diagonal. It is now an error naming the calibration file and the layer.
TEST_F(JlrdTool, ZeroGramIsAnErrorNamingFileAndLayer) {
  fs::copy_file(path("calib.h5"), path("zero.h5"));
  const hid_t file = H5Fopen(path("zero.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t dataset = H5Dopen2(file, "/layers/1/gram", H5P_DEFAULT);
  ASSERT_GE(dataset, 0);
  const std::vector<double> zeros(std::size_t(H5Sget_simple_extent_npoints(H5Dget_space(dataset))), 0.0);
  H5Dwrite(dataset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data());
  H5Dclose(dataset);
  H5Fclose(file);
  JlrdOptions o = options("zero-out.h5");
  o.calib = path("zero.h5");
  o.svd = SvdBasis::whitened;
  o.ranks = {4};
  EXPECT_EKV_ERROR(run_jlrd(o), "zero.h5", "layer 1", "not positive semi-definite");
}

}  // namespace
}  // namespace ekv
