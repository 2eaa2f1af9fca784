// Writes a model as an HF checkpoint folder: config.json, tokenizer.json when the source has a
// tokenizer, and one model.safetensors holding every tensor, in the chosen float dtype.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ekv/io/dtype.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tensor_names.hpp"

namespace ekv {

struct CheckpointContents {
  nlohmann::json config;               // config.json (torch_dtype and ekv_source are added)
  std::vector<ExpectedTensor> tensors;  // in file order
  std::function<std::vector<float>(const ExpectedTensor&)> load;  // called once per tensor, in order
  std::vector<std::pair<std::string, std::string>> extra_files;   // (file name, text), e.g. modeling code
  // Called with the (not yet published) folder before the first tensor is loaded, e.g. to open
  // a file that the loads feed.
  std::function<void(const std::filesystem::path&)> start;
  // Called last with the (not yet published) folder, e.g. to add an artifact that belongs to it.
  std::function<void(const std::filesystem::path&)> finish;
};

// The folder appears atomically; an existing folder at `folder` is replaced. `source` provides
// the tokenizer and the provenance recorded in config.json.
void write_checkpoint_folder(const ModelSource& source, const std::filesystem::path& folder, DType dtype,
                             const CheckpointContents& contents);

// The model as it is (ekv-convert).
void write_hf_checkpoint(const ModelSource& model, const std::filesystem::path& folder, DType dtype);

}  // namespace ekv
