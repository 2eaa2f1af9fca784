#include "ekv/tools/convert.hpp"

#include <filesystem>

#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/model/hf_writer.hpp"
#include "ekv/model/model_source.hpp"

namespace ekv {

namespace fs = std::filesystem;

void ConvertOptions::register_with(CLI::App& app) {
  app.add_option("--model,-m", model, "Input model: a .gguf file or an HF folder")->required();
  app.add_option("--output,-o", output, "Output HF folder (replaced atomically if it exists)")->required();
  app.add_option("--dtype", dtype, "Weight dtype of the output")->check(CLI::IsMember({"f32", "f16", "bf16"}));
}

void ConvertOptions::check() const {
  require_output_path(output, {model});
  require_replaceable_folder(output);
}

void run_convert(const ConvertOptions& options) {
  options.check();
  const auto model = ModelSource::open(options.model);
  const DType dtype = options.dtype == "f16" ? DType::f16 : options.dtype == "bf16" ? DType::bf16 : DType::f32;
  write_hf_checkpoint(*model, options.output, dtype);
  log::info(cat("final: wrote ", options.output, " (", model->tensors().size(), " tensors, ", options.dtype,
                ", fingerprint ", model->fingerprint().substr(0, 16), ")"));
}

}  // namespace ekv
