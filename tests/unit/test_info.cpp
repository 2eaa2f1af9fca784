// ekv-info describes every kind of file the tools read or write: the GGUF model, a safetensors
// file, calib.h5, rope.h5, jlrd.h5, an export folder (HF) and its decode pack, each by what
// identifies it (type, format version, the inputs it names, its datasets), and refuses a file it
// cannot tell, naming it.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "ekv/tools/export.hpp"
#include "ekv/tools/info.hpp"
#include "ekv/tools/jlrd.hpp"
#include "expect_error.hpp"
#include "tiny_pipeline.hpp"

namespace ekv {
namespace {

std::string describe(const std::string& path) {
  std::ostringstream out;
  InfoOptions options;
  options.path = path;
  run_info(options, out);
  return out.str();
}

void expect_has(const std::string& text, const std::string& part, const std::string& file) {
  EXPECT_NE(text.find(part), std::string::npos) << file << " lacks \"" << part << "\" in:\n" << text.substr(0, 1500);
}

TEST(Info, DescribesEveryArtifactType) {
  const test::TinyPipeline pipeline("info");
  JlrdOptions j;
  j.model = pipeline.path("tiny.gguf");
  j.rope = pipeline.path("rope.h5");
  j.calib = pipeline.path("calib.h5");
  j.r = 1;
  j.ranks = {5};
  j.output = pipeline.path("jlrd.h5");
  run_jlrd(j);
  ExportOptions e;
  e.model = j.model;
  e.rope = j.rope;
  e.jlrd = j.output;
  e.pack_positions = 64;
  e.output = pipeline.path("export");
  run_export(e);

  const std::string gguf = describe(pipeline.path("tiny.gguf"));
  expect_has(gguf, "format: GGUF v3", "tiny.gguf");
  expect_has(gguf, "fingerprint: ", "tiny.gguf");
  expect_has(describe(pipeline.path("tokens.safetensors")), "format: safetensors, 1 tensors", "tokens.safetensors");
  const std::string calib = describe(pipeline.path("calib.h5"));
  expect_has(calib, "type calib, format version 1", "calib.h5");
  expect_has(calib, "/layers/0/gram", "calib.h5");
  const std::string rope = describe(pipeline.path("rope.h5"));
  expect_has(rope, "type rope, format version 1", "rope.h5");
  expect_has(rope, "calib  " + pipeline.path("calib.h5"), "rope.h5");  // the input it names
  const std::string jlrd = describe(pipeline.path("jlrd.h5"));
  expect_has(jlrd, "type jlrd, format version 2", "jlrd.h5");
  expect_has(jlrd, "rope  " + pipeline.path("rope.h5"), "jlrd.h5");
  expect_has(jlrd, "/layers/0/b_k", "jlrd.h5");
  const std::string folder = describe(pipeline.path("export"));
  expect_has(folder, "format: HF checkpoint folder", "export");
  expect_has(folder, "k_rope_proj", "export");
  const std::string pack = describe(pipeline.path("export") + "/decode-pack.h5");
  expect_has(pack, "type decode-pack, format version 1", "decode-pack.h5");
  expect_has(pack, "jlrd  " + pipeline.path("jlrd.h5"), "decode-pack.h5");
  expect_has(describe(pipeline.path("export") + "/model.safetensors"), "format: safetensors", "model.safetensors");
  EXPECT_EKV_ERROR(describe(pipeline.path("tokens.safetensors") + ".missing"), "tokens.safetensors.missing");
}

}  // namespace
}  // namespace ekv
