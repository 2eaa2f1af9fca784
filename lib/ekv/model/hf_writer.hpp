// Writes a model as an HF checkpoint folder: config.json and one model.safetensors holding
// every tensor ekv uses, in the HF layout, in the chosen float dtype.
#pragma once

#include <filesystem>

#include "ekv/io/dtype.hpp"
#include "ekv/model/model_source.hpp"

namespace ekv {

// The folder appears atomically; an existing folder at `folder` is replaced.
void write_hf_checkpoint(const ModelSource& model, const std::filesystem::path& folder, DType dtype);

}  // namespace ekv
