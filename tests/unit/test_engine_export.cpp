// ekv-export --format gguf | hf-deepseek (lib/ekv/engine): the latent norm is linear within its
// bound; the slot plan holds what the format can and refuses what it cannot, naming the layer,
// the heads and the chunk; and the written files, read the way llama.cpp and transformers read
// them and computed from their definitions (tests/support/mla_reference), give the logits of
// ekv's own compressed forward on the tiny planted model.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "ekv/compressed/compressed_forward.hpp"
#include "ekv/engine/latent_norm.hpp"
#include "ekv/engine/slot_plan.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/rope/rope_file.hpp"
#include "ekv/tools/export.hpp"
#include "ekv/tools/jlrd.hpp"
#include "ekv/tools/select_rope.hpp"
#include "expect_error.hpp"
#include "mla_reference.hpp"
#include "tiny_pipeline.hpp"

namespace ekv {
namespace {

namespace fs = std::filesystem;

TEST(LatentNorm, IsLinearWithinItsBoundForEveryInput) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  const int d = 48, d_kv = 10, rank = 12;
  Matrix a(d_kv, d);
  for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = 3.0f * normal(rng);
  Vector w(d);
  for (int i = 0; i < d; ++i) w[i] = 1.0f + normal(rng);
  const double eps = 1e-5;
  const LatentNorm norm = linear_latent_norm(a, w, rank, eps);
  EXPECT_EQ(std::exp2(std::round(std::log2(norm.scale))), norm.scale) << "s is a power of two";
  EXPECT_EQ(std::exp2(std::round(std::log2(norm.weight))), norm.weight) << "w_n is a power of two";
  const double kappa = 1.0 / norm.up_scale;
  EXPECT_GE(kappa, std::sqrt(0.5) - 1e-12);
  EXPECT_LE(kappa, std::sqrt(2.0) + 1e-12);
  EXPECT_LE(norm.max_relative_error, 1e-9);
  for (int trial = 0; trial < 200; ++trial) {
    // The attention input of any residual stream h: RMSNorm(h) ⊙ w, h of any scale.
    Eigen::VectorXd h(d);
    const double magnitude = std::pow(10.0, trial % 7 - 3);
    for (int i = 0; i < d; ++i) h[i] = magnitude * normal(rng);
    const Eigen::VectorXd x = (h / std::sqrt(h.squaredNorm() / d + 1e-5)).cwiseProduct(w.cast<double>());
    const Eigen::VectorXd c = a.cast<double>() * x;
    Eigen::VectorXd padded = Eigen::VectorXd::Zero(rank);
    padded.head(d_kv) = norm.scale * c;
    const double mean = padded.squaredNorm() / rank;
    ASSERT_LE(mean, eps / double(1 << 30)) << "trial " << trial;
    const Eigen::VectorXd engine = padded * (norm.weight / std::sqrt(mean + eps));
    EXPECT_LE((engine.head(d_kv) - kappa * c).norm(), norm.max_relative_error * kappa * c.norm() + 1e-300);
  }
}

ModelConfig elitekv_config(std::vector<std::vector<std::vector<int>>> elite, std::vector<int> ranks) {
  ModelConfig c;
  c.name = "planned";
  c.layers = int(elite.size());
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 16;  // 8 chunks
  c.hidden = 32;
  c.rope_theta = 10000;
  c.elitekv.r = int(elite[0][0].size());
  c.elitekv.elite = std::move(elite);
  c.elitekv.kv_rank = std::move(ranks);
  return c;
}

TEST(SlotPlan, LlamaCppTakesTheShortestProgressionAndItsFrequencies) {
  const ModelConfig c = elitekv_config({{{1, 5}, {3, 7}}, {{3, 5}, {1, 7}}}, {6, 9});
  const SlotPlan plan = plan_slots(c, EngineFormat::gguf);
  EXPECT_EQ(plan.slot_chunks, (std::vector<int>{1, 3, 5, 7}));
  EXPECT_EQ(plan.kv_lora_rank, 9);
  EXPECT_EQ(plan.nope_dim, 16 - 4);
  EXPECT_EQ(plan.cache_elements_per_layer(), 9 + 8);
  // Slot i turns at freq_scale · base^(−2i/n_rot) = ω of chunk 1 + 2i.
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(plan.freq_scale * std::pow(plan.freq_base, -2.0 * i / plan.rope_dims()),
                std::pow(10000.0, -2.0 * (1 + 2 * i) / 16), 1e-12);
  // Layer 1: head 0 holds chunks 3 (slot 1) and 5 (slot 2).
  EXPECT_EQ(plan.holder[1][1].kv_head, 0);
  EXPECT_EQ(plan.holder[1][1].index, 0);
  EXPECT_EQ(plan.holder[1][2].kv_head, 0);
  EXPECT_EQ(plan.holder[1][0].kv_head, 1);
}

TEST(SlotPlan, SharedChunksAreRefusedForLlamaCppAndHeldByTransformers) {
  const ModelConfig c = elitekv_config({{{1, 2}, {3, 4}}, {{2, 4}, {2, 3}}}, {6, 6});
  EXPECT_EKV_ERROR(plan_slots(c, EngineFormat::gguf), "layer 1", "KV heads 0 and 1", "chunk 2",
                   "--layout llama.cpp");
  const SlotPlan plan = plan_slots(c, EngineFormat::hf_deepseek);
  EXPECT_EQ(plan.slot_chunks, (std::vector<int>{1, 2, 2, 3, 4}));  // chunk 2 twice: layer 1 needs both
  EXPECT_EQ(plan.holder[0][2].kv_head, -1) << "layer 0 uses one of chunk 2's slots";
  ModelConfig biased = c;
  biased.attention_bias = true;
  biased.architecture = "qwen2";
  EXPECT_EKV_ERROR(plan_slots(biased, EngineFormat::gguf), "biases", "deepseek2");
}

// The tiny model through a chain whose selection fits `layout`, at r = 1 (2 slots among 4
// chunks: a llama.cpp progression need not start at chunk 0) and one latent rank of 5, into the
// EliteKV folder `folder` (rope-FOLDER.h5, FOLDER.h5); returns the export's options.
ExportOptions layout_chain(const test::TinyPipeline& pipeline, const std::string& layout, const std::string& folder) {
  SelectRopeOptions select;
  select.model = pipeline.path("tiny.gguf");
  select.calib = pipeline.path("calib.h5");
  select.r_max = 1;
  select.layout = layout;
  select.output = pipeline.path("rope-" + folder + ".h5");
  run_select_rope(select);
  pipeline.make_export(folder, 1, {5}, "calib.h5", false, "rope-" + folder + ".h5");
  return pipeline.export_options(folder, "rope-" + folder + ".h5");
}

// The tiny model through a layout-constrained chain, then written in both engine formats.
class EngineExport : public ::testing::Test {
 protected:
  void SetUp() override { chain_ = layout_chain(pipeline_, "llama.cpp", "elitekv"); }

  std::string path(const std::string& name) const { return pipeline_.path(name); }

  ExportOptions engine(const std::string& format, const std::string& output, bool from_folder) const {
    ExportOptions e;
    e.model = path("tiny.gguf");
    e.format = format;
    if (from_folder) {
      e.compressed = chain_.output;
    } else {
      e.rope = chain_.rope;
      e.jlrd = chain_.jlrd;
    }
    e.output = path(output);
    return e;
  }

  Eigen::MatrixXd ekv_logits(const std::vector<std::int32_t>& tokens) const {
    const auto model = ModelSource::open(path("elitekv"));
    Forward forward(*model);
    EXPECT_TRUE(install_compressed_attention(forward));
    const int T = int(tokens.size());
    return forward.logits(forward.hidden_states(tokens, 1, T), 0, T).cast<double>();
  }

  static double relative(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
  }

  test::TinyPipeline pipeline_{"engine-export", 31, false, /*tokenizer=*/true};
  ExportOptions chain_;
};

TEST_F(EngineExport, BothFormatsComputeTheCompressedModel) {
  const std::vector<std::int32_t> tokens(pipeline_.stream.begin() + 100, pipeline_.stream.begin() + 164);
  const Eigen::MatrixXd ours = ekv_logits(tokens);
  run_export(engine("gguf", "model.gguf", false));
  const double gguf_error = relative(test::MlaReference::from_gguf(path("model.gguf")).logits(tokens), ours);
  EXPECT_LE(gguf_error, 1e-5) << "llama.cpp's reading of the GGUF";
  run_export(engine("hf-deepseek", "deepseek", false));
  const double hf_error = relative(test::MlaReference::from_deepseek_v3(path("deepseek")).logits(tokens), ours);
  EXPECT_LE(hf_error, 1e-5) << "transformers' reading of the folder";
  // Without the trick that makes the latent norm linear the engines would compute something else:
  // the reference with the norm's weight at 1 and its epsilon 0 (a pure RMSNorm) is far off.
  test::MlaReference plain = test::MlaReference::from_gguf(path("model.gguf"));
  plain.kv_norm_eps = 0;
  for (auto& block : plain.blocks) block.kv_norm.setOnes();
  EXPECT_GT(relative(plain.logits(tokens), ours), 1e-2);
}

TEST_F(EngineExport, FromTheFolderEqualsFromTheArtifacts) {
  run_export(engine("gguf", "artifacts.gguf", false));
  run_export(engine("gguf", "folder.gguf", true));
  const GgufFile a(path("artifacts.gguf")), b(path("folder.gguf"));
  EXPECT_EQ(a.metadata_order(), b.metadata_order());
  for (const auto& key : a.metadata_order())
    EXPECT_EQ(a.find(key)->summary(1000), b.find(key) ? b.find(key)->summary(1000) : "(missing)") << key;
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (std::size_t i = 0; i < a.tensors().size(); ++i) {
    const auto bytes_a = a.tensor_bytes(a.tensors()[i]), bytes_b = b.tensor_bytes(b.tensors()[i]);
    EXPECT_TRUE(std::equal(bytes_a.begin(), bytes_a.end(), bytes_b.begin(), bytes_b.end())) << a.tensors()[i].name;
  }
}

TEST_F(EngineExport, GgufKeysAndTensorTypesAreWhatLlamaCppLoads) {
  ExportOptions e = engine("gguf", "q8.gguf", true);
  e.dtype = "q8_0";
  run_export(e);
  const GgufFile f(path("q8.gguf"));
  EXPECT_EQ(f.get_string("general.architecture"), "deepseek2");
  EXPECT_EQ(f.get_uint("deepseek2.attention.head_count_kv"), 1u);
  EXPECT_EQ(f.get_uint("deepseek2.leading_dense_block_count"), 2u);
  EXPECT_EQ(f.get_uint("deepseek2.attention.q_lora_rank"), 0u);
  EXPECT_EQ(f.get_uint("deepseek2.attention.kv_lora_rank"), 5u);
  EXPECT_EQ(f.get_uint("deepseek2.rope.dimension_count"), 4u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), 1u) << "the tokenizer metadata is carried over";
  // q8_0 where rows are whole blocks of 32 (hidden 32), f16 elsewhere, f32 norms and latent.
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->dtype, DType::q8_0);
  EXPECT_EQ(f.find_tensor("blk.0.attn_v_b.weight")->dtype, DType::f16);
  EXPECT_EQ(f.find_tensor("blk.0.attn_kv_a_mqa.weight")->dtype, DType::f32);
  EXPECT_EQ(f.find_tensor("blk.0.attn_kv_a_norm.weight")->dtype, DType::f32);
  EXPECT_EQ(f.find_tensor("blk.1.attn_k_b.weight")->shape(), (std::vector<std::int64_t>{4, 5, 8 - 2}));
}

TEST_F(EngineExport, SelectionsTheFormatCannotHoldAreRefused) {
  // The free selection at r = 2 of this model: its two KV heads share a chunk in some layer.
  const std::string free_folder = pipeline_.make_export("free-elitekv", 2, {4});
  const RopeData free = read_rope(path("rope.h5"));
  bool shared = false;
  for (int l = 0; l < 2; ++l) {
    const auto sets = elite_sets(free, l, 2);
    for (int c : sets[0]) shared = shared || std::count(sets[1].begin(), sets[1].end(), c) > 0;
  }
  ASSERT_TRUE(shared) << "the planted model's free selection should share a chunk";
  ExportOptions e = engine("gguf", "free.gguf", false);
  e.rope = path("rope.h5");
  e.jlrd = path("free-elitekv.h5");
  EXPECT_EKV_ERROR(run_export(e), "layer", "KV heads 0 and 1", "--layout llama.cpp");
  EXPECT_FALSE(fs::exists(path("free.gguf")));
  // transformers holds any multiset: the same selection is written, and exact.
  e.format = "hf-deepseek";
  e.output = path("free-deepseek");
  run_export(e);
  const auto model = ModelSource::open(free_folder);
  Forward forward(*model);
  install_compressed_attention(forward);
  const std::vector<std::int32_t> tokens(pipeline_.stream.begin(), pipeline_.stream.begin() + 40);
  const Eigen::MatrixXd ours = forward.logits(forward.hidden_states(tokens, 1, 40), 0, 40).cast<double>();
  EXPECT_LE(relative(test::MlaReference::from_deepseek_v3(path("free-deepseek")).logits(tokens), ours), 1e-5);
}

}  // namespace
}  // namespace ekv

namespace ekv {
namespace {

// A qwen2 model (q/k/v biases, docs/method.md §10): DeepseekV3 holds its biases exactly, the
// query bias through the low-rank query path; deepseek2 has none and the GGUF is refused.
TEST(EngineExportBiases, DeepseekV3HoldsThemAndTheGgufIsRefused) {
  test::TinyPipeline pipeline("engine-biases", 31, /*biased=*/true);
  auto path = [&](const std::string& name) { return pipeline.path(name); };
  ExportOptions engine = layout_chain(pipeline, "transformers", "elitekv");
  engine.format = "hf-deepseek";
  engine.output = path("deepseek");
  run_export(engine);
  const auto model = ModelSource::open(path("elitekv"));
  Forward forward(*model);
  install_compressed_attention(forward);
  const std::vector<std::int32_t> tokens(pipeline.stream.begin() + 30, pipeline.stream.begin() + 80);
  const Eigen::MatrixXd ours = forward.logits(forward.hidden_states(tokens, 1, 50), 0, 50).cast<double>();
  const test::MlaReference theirs = test::MlaReference::from_deepseek_v3(path("deepseek"));
  ASSERT_TRUE(theirs.blocks[0].q_b.size() && theirs.blocks[0].o_bias.size()) << "the biased path was not written";
  const Eigen::MatrixXd logits = theirs.logits(tokens);
  EXPECT_LE((logits - ours).cwiseAbs().maxCoeff() / ours.cwiseAbs().maxCoeff(), 1e-5);
  // Dropping the written biases changes the logits: they are not decoration.
  test::MlaReference unbiased = theirs;
  for (auto& block : unbiased.blocks) block.o_bias.setZero(), block.kv_a_bias.setZero();
  EXPECT_GT((unbiased.logits(tokens) - ours).cwiseAbs().maxCoeff() / ours.cwiseAbs().maxCoeff(), 1e-3);
  engine.format = "gguf";
  engine.output = path("qwen.gguf");
  EXPECT_EKV_ERROR(run_export(engine), "biases", "deepseek2", "hf-deepseek");
}

}  // namespace
}  // namespace ekv
