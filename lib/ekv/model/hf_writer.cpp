#include "ekv/model/hf_writer.hpp"

#include "ekv/core/atomic_output.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/core/version.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/io/safetensors.hpp"
#include "ekv/model/tensor_names.hpp"
#include "ekv/model/tokenizer.hpp"

namespace ekv {

namespace fs = std::filesystem;

void write_checkpoint_folder(const ModelSource& model, const fs::path& folder, DType dtype,
                             const CheckpointContents& contents) {
  EKV_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16, folder.string(),
            ": an HF checkpoint is written as f32, f16 or bf16, not ", dtype_name(dtype));
  AtomicOutput output(folder);
  fs::create_directory(output.temp_path());

  nlohmann::json config = contents.config;
  config["torch_dtype"] = dtype == DType::f32 ? "float32" : dtype == DType::f16 ? "float16" : "bfloat16";
  config["ekv_source"] = {{"path", model.path().string()}, {"format", model.format()},
                          {"fingerprint", model.fingerprint()}, {"producer", std::string(version())}};
  write_text_file(output.temp_path() / "config.json", config.dump(2) + "\n");
  if (model.format() == "gguf" && GgufFile(model.path()).has("tokenizer.ggml.tokens")) {
    // The GGUF carries the tokenizer; an HF folder carries it as tokenizer.json.
    write_text_file(output.temp_path() / "tokenizer.json", Tokenizer::for_model(model.path()).to_hf_json().dump() + "\n");
  } else if (fs::exists(model.path() / "tokenizer.json")) {
    fs::copy_file(model.path() / "tokenizer.json", output.temp_path() / "tokenizer.json");
  }
  for (const auto& [name, text] : contents.extra_files) write_text_file(output.temp_path() / name, text);

  if (contents.start) contents.start(output.temp_path());
  SafetensorsWriter writer(output.temp_path() / "model.safetensors",
                           {{"format", "pt"}, {"ekv_source_fingerprint", model.fingerprint()}});
  for (const auto& tensor : contents.tensors) writer.declare(tensor.name, dtype, tensor.shape);
  Progress progress("write " + folder.filename().string(), contents.tensors.size(), "tensors");
  for (const auto& tensor : contents.tensors) {
    writer.write_floats(tensor.name, contents.load(tensor));
    progress.advance();
  }
  writer.commit();
  progress.finish();
  if (contents.finish) contents.finish(output.temp_path());
  output.commit();
}

void write_hf_checkpoint(const ModelSource& model, const fs::path& folder, DType dtype) {
  write_checkpoint_folder(model, folder, dtype,
                          {config_to_hf(model.config()), expected_tensors(model.config()),
                           [&](const ExpectedTensor& tensor) { return model.load(tensor.name); }, {}, {}, {}});
}

}  // namespace ekv
