// The real default model (SmolLM2-135M-Instruct Q4_1): its config, and the round trip
// GGUF -> HF folder (our writer) -> HF reader with identical per-layer tensors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "ekv/calib/calib_file.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/hf_writer.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/model/tokenizer.hpp"
#include "ekv/tools/calibrate.hpp"
#include "ekv/tools/check.hpp"
#include "expect_error.hpp"
#include "ekv/model/model_source.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

std::string default_model() {
  const char* path = std::getenv("EKV_DEFAULT_MODEL");
  return path ? path : "";
}

class DefaultModel : public ::testing::Test {
 protected:
  void SetUp() override {
    // A missing model is a failure, not a skip: CI fetches it first (scripts/fetch-model.sh).
    ASSERT_FALSE(default_model().empty()) << "EKV_DEFAULT_MODEL is not set";
    ASSERT_TRUE(fs::exists(default_model())) << default_model() << " is missing; run scripts/fetch-model.sh";
  }
};

TEST_F(DefaultModel, Config) {
  const auto model = ModelSource::open(default_model());
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.layers, 30);
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.heads, 9);
  EXPECT_EQ(c.kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.ffn, 1536);
  EXPECT_EQ(c.vocab, 49152);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(model->tensor("model.layers.0.self_attn.q_proj.weight").dtype, DType::q4_1);
  EXPECT_EQ(model->tensor("model.embed_tokens.weight").dtype, DType::q8_0);
}

TEST_F(DefaultModel, GgufToHfRoundTripIsExact) {
  const auto gguf = ModelSource::open(default_model());
  const fs::path dir = temp_dir("e2e-roundtrip");
  write_hf_checkpoint(*gguf, dir / "hf", DType::f32);
  const auto hf = ModelSource::open(dir / "hf");
  EXPECT_EQ(config_to_hf(hf->config()), config_to_hf(gguf->config()));
  for (int l = 0; l < gguf->config().layers; ++l) {
    const LayerWeights a = gguf->layer(l), b = hf->layer(l);
    EXPECT_EQ(a.wq, b.wq) << "layer " << l;
    EXPECT_EQ(a.wk, b.wk) << "layer " << l;
    EXPECT_EQ(a.wv, b.wv) << "layer " << l;
    EXPECT_EQ(a.wo, b.wo) << "layer " << l;
    EXPECT_EQ(a.w_gate, b.w_gate) << "layer " << l;
    EXPECT_EQ(a.w_up, b.w_up) << "layer " << l;
    EXPECT_EQ(a.w_down, b.w_down) << "layer " << l;
    EXPECT_EQ(a.attn_norm, b.attn_norm) << "layer " << l;
    EXPECT_EQ(a.ffn_norm, b.ffn_norm) << "layer " << l;
  }
  const GlobalWeights ga = gguf->globals(), gb = hf->globals();
  EXPECT_EQ(ga.embedding, gb.embedding);
  EXPECT_EQ(ga.final_norm, gb.final_norm);
  EXPECT_EQ(gb.output.size(), 0);  // tied
  fs::remove_all(dir);
}

TEST_F(DefaultModel, CalibrationStoresTheForwardPassInputs) {
  const char* corpus = std::getenv("EKV_CALIB_TEXT");
  ASSERT_TRUE(corpus && fs::exists(corpus)) << "EKV_CALIB_TEXT is missing; run scripts/make-corpora.sh";
  const fs::path dir = temp_dir("e2e-calibrate");
  CalibrateOptions options;
  options.model = default_model();
  options.texts = {corpus};
  options.seq_len = 64;
  options.num_seqs = 3;
  options.keep_seqs = 3;
  options.micro_batch = 2;
  options.layers = "14:16";
  options.output = (dir / "calib.h5").string();
  run_calibrate(options);
  const CalibData data = read_calib(options.output);
  ASSERT_EQ(data.layers.size(), 2u);
  // An independent forward pass over the same tokens, capturing layer 15's attention input.
  const auto model = ModelSource::open(default_model());
  Forward forward(*model);
  Matrix captured;
  forward.set_capture([&](const LayerActivations& a) {
    if (a.layer == 15) captured = a.x;
  });
  forward.hidden_states(data.tokens, 3, 64, 15);
  ASSERT_EQ(captured.rows(), 3 * 64);
  const Matrix stored = Eigen::Map<const Matrix>(data.layers[1].x.data(), 3 * 64, 576);
  EXPECT_LT((stored - captured).cwiseAbs().maxCoeff(), 1e-5f * captured.cwiseAbs().maxCoeff());
  const Eigen::MatrixXd gram = captured.cast<double>().transpose() * captured.cast<double>();
  EXPECT_LT((data.layers[1].gram - gram).cwiseAbs().maxCoeff(), 1e-6 * gram.cwiseAbs().maxCoeff());
  fs::remove_all(dir);
}

// make fit scores the calibration corpus's windows that calib.h5 never sampled: on the real
// corpus none of the chosen windows overlaps a sampled sequence, and the evaluation text (or any
// other) is refused, since its tokens are not the calibration's.
TEST_F(DefaultModel, HeldOutWindowsOfTheCalibrationCorpusAvoidItsSample) {
  const char* corpus = std::getenv("EKV_CALIB_TEXT");
  const char* eval = std::getenv("EKV_EVAL_TEXT");
  ASSERT_TRUE(corpus && fs::exists(corpus) && eval && fs::exists(eval)) << "run scripts/make-corpora.sh";
  const fs::path dir = temp_dir("e2e-held-out");
  CalibrateOptions options;
  options.model = default_model();
  options.texts = {corpus};
  options.seq_len = 512;
  options.num_seqs = 64;
  options.keep_seqs = 0;
  options.layers = "0:1";
  options.output = (dir / "calib.h5").string();
  run_calibrate(options);
  const CalibData calib = read_calib(options.output, false);
  const auto model = ModelSource::open(default_model());
  const Tokenizer tokenizer = Tokenizer::for_model(default_model());
  const auto tokens = tokenizer.encode(read_file(corpus), corpus);
  const HeldOutWindows held_out = calibration_held_out(options.output, *model, corpus, tokens, 512, 16);
  ASSERT_EQ(held_out.chosen, 16);
  EXPECT_LT(held_out.free, held_out.total);  // the sample did take windows away
  // Find each chosen window in the text and check it against every sampled sequence.
  for (int w = 0; w < held_out.chosen; ++w) {
    const auto first = held_out.tokens.begin() + std::ptrdiff_t(w) * 512;
    std::int64_t at = -1;
    for (std::int64_t k = 0; k < held_out.total && at < 0; ++k)
      if (std::equal(first, first + 512, tokens.begin() + k * 512)) at = k * 512;
    ASSERT_GE(at, 0) << "window " << w << " is not a window of the text";
    for (std::int64_t offset : calib.offsets) EXPECT_TRUE(offset + 512 <= at || offset >= at + 512) << offset;
  }
  const auto other = tokenizer.encode(read_file(eval), eval);
  EXPECT_EKV_ERROR(calibration_held_out(options.output, *model, eval, other, 512, 16), "calib.h5", eval,
                   "another text");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ekv::test
