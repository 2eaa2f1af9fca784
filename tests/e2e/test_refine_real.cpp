// The output-aware options on the real default model, end to end: calibrate on the calibration
// corpus, search the elite chunks, factor at 25 % cache once as the previous best configuration
// (whitened J-LRD, budget) and once with the pipeline's options (chunk maps, attention-aware
// weights, W_o refit; same r, so only the options differ), export both and compare them with the original on held-out
// evaluation text. The new default must lower the mean KL by at least 10 %.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "ekv/check/fidelity.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tokenizer.hpp"
#include "ekv/tools/calibrate.hpp"
#include "ekv/tools/export.hpp"
#include "ekv/tools/jlrd.hpp"
#include "ekv/tools/select_rope.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

TEST(DefaultModelRefine, NewDefaultBeatsPreviousBestOnHeldOutKl) {
  const char* model_path = std::getenv("EKV_DEFAULT_MODEL");
  const char* calib_text = std::getenv("EKV_CALIB_TEXT");
  const char* eval_text = std::getenv("EKV_EVAL_TEXT");
  ASSERT_TRUE(model_path && fs::exists(model_path)) << "EKV_DEFAULT_MODEL is missing; run scripts/fetch-model.sh";
  ASSERT_TRUE(calib_text && fs::exists(calib_text)) << "EKV_CALIB_TEXT is missing; run scripts/make-corpora.sh";
  ASSERT_TRUE(eval_text && fs::exists(eval_text)) << "EKV_EVAL_TEXT is missing; run scripts/make-corpora.sh";
  const fs::path dir = temp_dir("e2e-refine");
  auto path = [&](const char* name) { return (dir / name).string(); };

  CalibrateOptions calibrate;
  calibrate.model = model_path;
  calibrate.texts = {calib_text};
  calibrate.seq_len = 256;
  calibrate.num_seqs = 16;
  calibrate.keep_seqs = 8;
  calibrate.output = path("calib.h5");
  run_calibrate(calibrate);
  SelectRopeOptions select;
  select.model = model_path;
  select.calib = calibrate.output;
  select.r_max = 4;
  select.output = path("rope.h5");
  run_select_rope(select);

  auto factor_and_export = [&](const char* name, bool refined) {
    JlrdOptions jlrd;
    jlrd.model = model_path;
    jlrd.rope = select.output;
    jlrd.calib = calibrate.output;
    jlrd.r = 4;
    jlrd.svd = SvdBasis::whitened;
    jlrd.budget = 0.25;
    if (refined) {
      jlrd.chunk_map = ChunkMapChoice::automatic;
      jlrd.weighting = RowWeighting::attention;
      jlrd.refit_output = true;
    }
    jlrd.output = path((std::string(name) + ".h5").c_str());
    run_jlrd(jlrd);
    ExportOptions out;
    out.model = model_path;
    out.rope = select.output;
    out.jlrd = jlrd.output;
    out.output = path(name);
    run_export(out);
    return out.output;
  };
  const std::string previous = factor_and_export("previous", false), refined = factor_and_export("refined", true);

  const auto original = ModelSource::open(model_path);
  const std::vector<std::int32_t> tokens = Tokenizer::for_model(model_path).encode(read_file(eval_text));
  const PerplexityOptions windows{256, 4, 2};
  const FidelityResult before = compare_models(*original, *ModelSource::open(previous), tokens, windows);
  const FidelityResult after = compare_models(*original, *ModelSource::open(refined), tokens, windows);
  std::printf("held-out KL %.4f -> %.4f, top-1 %.4f -> %.4f\n", before.mean_kl(), after.mean_kl(), before.top1(),
              after.top1());
  EXPECT_LT(after.mean_kl(), 0.9 * before.mean_kl());
  EXPECT_GT(after.top1(), before.top1());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ekv::test
