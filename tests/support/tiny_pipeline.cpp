#include "tiny_pipeline.hpp"

#include "ekv/tools/calibrate.hpp"
#include "ekv/tools/select_rope.hpp"
#include "token_file.hpp"

namespace ekv::test {

namespace fs = std::filesystem;

TinyPipeline::TinyPipeline(const std::string& name, std::uint32_t seed)
    : dir(temp_dir(name)), tiny(make_tiny_model(seed)) {
  write_file(dir / "tiny.gguf", tiny_model_gguf(tiny).build());
  for (int i = 0; i < 600; ++i) stream.push_back((i * 7 + i / 3) % tiny.config.vocab);
  write_token_file(dir / "tokens.safetensors", stream);
  CalibrateOptions calibrate;
  calibrate.model = path("tiny.gguf");
  calibrate.tokens = path("tokens.safetensors");
  calibrate.seq_len = 32;
  calibrate.num_seqs = 12;
  calibrate.keep_seqs = 2;
  calibrate.output = path("calib.h5");
  run_calibrate(calibrate);
  SelectRopeOptions select;
  select.model = path("tiny.gguf");
  select.calib = path("calib.h5");
  select.r_max = tiny.config.chunks();  // all n_c chunks
  select.output = path("rope.h5");
  run_select_rope(select);
}

TinyPipeline::~TinyPipeline() { fs::remove_all(dir); }

}  // namespace ekv::test
