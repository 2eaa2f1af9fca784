// Attention biases (Qwen2) through the chain, on the planted tiny model as a qwen2 with large
// q/k/v biases (docs/method.md §10): the GGUF is read without llama's row permutation and with
// its biases; the forward equals the fp64 reference; at full rank the export equals RoPElite
// with the whole key bias kept, so dropping the non-elite key bias is exact; the decode paths
// (absorbed, reconstruct, the decode pack's folded biases) equal the compressed prefill.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ekv/check/decode_check.hpp"
#include "ekv/compressed/compressed_forward.hpp"
#include "ekv/compressed/decode_pack.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/model_source.hpp"
#include "reference_model.hpp"
#include "tiny_pipeline.hpp"

namespace ekv {
namespace {

namespace fs = std::filesystem;

class Biases : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return pipeline_.path(name); }
  std::vector<std::int32_t> tokens(int count) const {
    return {pipeline_.stream.begin(), pipeline_.stream.begin() + count};
  }
  Matrix logits(const std::string& model_path, int count) const {
    const auto model = ModelSource::open(model_path);
    Forward forward(*model);
    install_compressed_attention(forward);
    const auto ids = tokens(count);
    return forward.logits(forward.hidden_states(ids, 1, count), 0, count);
  }
  static double relative(const Matrix& ours, const test::Dense& reference) {
    return (ours.cast<double>() - reference).cwiseAbs().maxCoeff() / reference.cwiseAbs().maxCoeff();
  }

  test::TinyPipeline pipeline_{"biases", 31, /*biased=*/true};
};

TEST_F(Biases, Qwen2FileKeepsRotateHalfRowsAndItsBiases) {
  const auto model = ModelSource::open(path("tiny.gguf"));
  EXPECT_EQ(model->config().architecture, "qwen2");
  EXPECT_TRUE(model->config().attention_bias);
  for (int l = 0; l < model->config().layers; ++l) {
    const LayerWeights w = model->layer(l);
    const LayerWeights& planted = pipeline_.tiny.layers[std::size_t(l)];
    EXPECT_EQ(w.wq, planted.wq);  // qwen2 GGUF rows are already rotate_half: nothing to undo
    EXPECT_EQ(w.wk, planted.wk);
    EXPECT_EQ(w.bq, planted.bq);
    EXPECT_EQ(w.bk, planted.bk);
    EXPECT_EQ(w.bv, planted.bv);
  }
}

TEST_F(Biases, ForwardEqualsTheReferenceAndTheBiasesMatter) {
  const test::Dense expected = test::reference_logits(pipeline_.tiny, tokens(40));
  EXPECT_LT(relative(logits(path("tiny.gguf"), 40), expected), 1e-5);
  test::TinyModel unbiased = pipeline_.tiny;
  for (auto& w : unbiased.layers) w.bq = w.bk = w.bv = Vector();
  const test::Dense without = test::reference_logits(unbiased, tokens(40));
  EXPECT_GT((without - expected).cwiseAbs().maxCoeff() / expected.cwiseAbs().maxCoeff(), 1e-2);
}

// r = 1 at full rank (28 = the rows of W_J): the only change left is RoPE on one chunk per head
// and the dropped non-elite key bias. The reference keeps the whole key bias.
TEST_F(Biases, DroppingTheNonEliteKeyBiasIsExact) {
  const std::string folder = pipeline_.make_export("full", 1, {28});
  const auto compressed = ModelSource::open(folder);
  const auto& elite = compressed->config().elitekv.elite;
  const test::Dense expected = test::reference_logits(pipeline_.tiny, tokens(64), &elite);
  EXPECT_LT(relative(logits(folder, 64), expected), 1e-5);
  // The dropped part is not negligible: the non-elite rows of the planted key bias are N(0, 1).
  const LayerWeights w = compressed->layer(0);
  EXPECT_EQ(w.bk_rope.size(), 2 * 1 * compressed->config().kv_heads);
  const Vector& bk = pipeline_.tiny.layers[0].bk;
  EXPECT_GT(bk.squaredNorm() - w.bk_rope.squaredNorm(), 1.0);
  // The exported model carries the biases the modeling code reads.
  std::ifstream in(fs::path(folder) / "config.json");
  const auto config = nlohmann::json::parse(in);
  EXPECT_EQ(config.at("attention_bias"), true);
  EXPECT_EQ(config.at("ekv_architecture"), "qwen2");
}

TEST_F(Biases, DecodePathsAndThePackEqualThePrefill) {
  const std::string folder = pipeline_.make_export("lossy", 1, {5});
  const auto compressed = ModelSource::open(folder);
  const auto original = ModelSource::open(path("tiny.gguf"));
  const ArtifactReader pack(fs::path(folder) / "decode-pack.h5", "decode-pack", kDecodePackFormatVersion);
  const PackLayer layer = read_pack_layer(pack, read_pack_header(pack), 0);
  ASSERT_EQ(layer.bo.size(), compressed->config().hidden);  // the value bias folded through W_o
  ASSERT_EQ(layer.bq_absorbed.size(), std::size_t(compressed->config().heads));
  const DecodeCheckResult result = check_decode(*compressed, original.get(), &pack, pipeline_.stream, {40, 64});
  ASSERT_EQ(result.paths.size(), 3u);
  for (const auto& p : result.paths) {
    EXPECT_LT(p.max_relative_diff, 1e-5) << p.path;
    EXPECT_EQ(p.top1_agree, 64) << p.path;
  }
}

}  // namespace
}  // namespace ekv
