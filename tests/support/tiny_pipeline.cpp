#include "tiny_pipeline.hpp"

#include "ekv/tools/calibrate.hpp"
#include "ekv/tools/jlrd.hpp"
#include "ekv/tools/select_rope.hpp"
#include "token_file.hpp"

namespace ekv::test {

namespace fs = std::filesystem;

TinyPipeline::TinyPipeline(const std::string& name, std::uint32_t seed, bool biased, bool tokenizer)
    : dir(temp_dir(name)), tiny(make_tiny_model(seed, biased)) {
  write_file(dir / "tiny.gguf", tiny_model_gguf(tiny, tokenizer).build());
  for (int i = 0; i < 600; ++i) stream.push_back((i * 7 + i / 3) % tiny.config.vocab);
  write_token_file(dir / "tokens.safetensors", stream);
  calibrate("calib.h5", 32, 12, 2);
  SelectRopeOptions select;
  select.model = path("tiny.gguf");
  select.calib = path("calib.h5");
  select.r_max = tiny.config.chunks();  // all n_c chunks
  select.output = path("rope.h5");
  run_select_rope(select);
}

TinyPipeline::~TinyPipeline() { fs::remove_all(dir); }

void TinyPipeline::calibrate(const std::string& name, int seq_len, int num_seqs, int keep_seqs) const {
  CalibrateOptions options;
  options.model = path("tiny.gguf");
  options.tokens = path("tokens.safetensors");
  options.seq_len = seq_len;
  options.num_seqs = num_seqs;
  options.keep_seqs = keep_seqs;
  options.output = path(name);
  run_calibrate(options);
}

std::string TinyPipeline::make_export(const std::string& name, int r, std::vector<int> ranks, const std::string& calib,
                                      bool refit, const std::string& rope) const {
  JlrdOptions j;
  j.refit_output = refit;
  j.model = path("tiny.gguf");
  j.rope = path(rope);
  j.calib = path(calib);
  j.r = r;
  j.svd = SvdBasis::whitened;
  j.ranks = std::move(ranks);
  j.output = path(name + ".h5");
  run_jlrd(j);
  const ExportOptions e = export_options(name, rope);
  run_export(e);
  return e.output;
}

ExportOptions TinyPipeline::export_options(const std::string& name, const std::string& rope) const {
  ExportOptions e;
  e.model = path("tiny.gguf");
  e.rope = path(rope);
  e.jlrd = path(name + ".h5");
  e.pack_positions = 200;
  e.output = path(name);
  return e;
}

}  // namespace ekv::test
