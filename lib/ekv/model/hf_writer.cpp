#include "ekv/model/hf_writer.hpp"

#include <fstream>

#include "ekv/core/atomic_output.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/core/version.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/io/safetensors.hpp"
#include "ekv/model/tensor_names.hpp"
#include "ekv/model/tokenizer.hpp"

namespace ekv {

namespace fs = std::filesystem;

void write_hf_checkpoint(const ModelSource& model, const fs::path& folder, DType dtype) {
  EKV_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16, folder.string(),
            ": an HF checkpoint is written as f32, f16 or bf16, not ", dtype_name(dtype));
  AtomicOutput output(folder);
  fs::create_directory(output.temp_path());

  nlohmann::json config = config_to_hf(model.config());
  config["torch_dtype"] = dtype == DType::f32 ? "float32" : dtype == DType::f16 ? "float16" : "bfloat16";
  config["ekv_source"] = {{"path", model.path().string()}, {"format", model.format()},
                          {"fingerprint", model.fingerprint()}, {"producer", std::string(version())}};
  {
    const fs::path config_path = output.temp_path() / "config.json";
    std::ofstream out(config_path);
    out << config.dump(2) << "\n";
    EKV_CHECK(out.good(), config_path.string(), ": write failed");
  }

  if (model.format() == "gguf" && GgufFile(model.path()).has("tokenizer.ggml.tokens")) {
    // The GGUF carries the tokenizer; an HF folder carries it as tokenizer.json.
    const fs::path tokenizer_path = output.temp_path() / "tokenizer.json";
    std::ofstream out(tokenizer_path);
    out << Tokenizer::for_model(model.path()).to_hf_json().dump() << "\n";
    EKV_CHECK(out.good(), tokenizer_path.string(), ": write failed");
  } else if (fs::exists(model.path() / "tokenizer.json")) {
    fs::copy_file(model.path() / "tokenizer.json", output.temp_path() / "tokenizer.json");
  }

  const auto tensors = expected_tensors(model.config());
  SafetensorsWriter writer(output.temp_path() / "model.safetensors",
                           {{"format", "pt"}, {"ekv_source_fingerprint", model.fingerprint()}});
  for (const auto& tensor : tensors) writer.declare(tensor.name, dtype, tensor.shape);
  Progress progress("write " + folder.filename().string(), tensors.size(), "tensors");
  for (const auto& tensor : tensors) {
    writer.write_floats(tensor.name, model.load(tensor.name));
    progress.advance();
  }
  writer.commit();
  progress.finish();
  output.commit();
}

}  // namespace ekv
