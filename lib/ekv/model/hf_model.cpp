// An HF checkpoint folder as a ModelSource: config.json plus model.safetensors or the shards
// named by model.safetensors.index.json.
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "ekv/core/error.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/io/safetensors.hpp"
#include "ekv/model/model_source.hpp"

namespace ekv {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const fs::path& path) {
  require_regular_file(path);
  std::ifstream in(path);
  EKV_CHECK(in, path.string(), ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(cat(path.string(), ": not valid JSON: ", e.what()));
  }
}

// Shard file names from the index, refusing names that would leave the folder.
std::vector<std::string> shard_names(const fs::path& index_path) {
  const json index = read_json(index_path);
  EKV_CHECK(index.contains("weight_map") && index["weight_map"].is_object(), index_path.string(),
            ": field weight_map is missing");
  std::vector<std::string> names;
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    EKV_CHECK(file.is_string(), index_path.string(), ": weight_map.", tensor, ": expected a file name");
    const std::string name = file.get<std::string>();
    EKV_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
              index_path.string(), ": weight_map.", tensor, ": ", name, " is not a plain file name");
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  return names;
}

class HfModel final : public ModelSource {
 public:
  explicit HfModel(const fs::path& folder) : ModelSource(folder) {
    const fs::path config_path = folder / "config.json";
    EKV_CHECK(fs::exists(config_path), folder.string(), ": not a model folder (no config.json)");
    const json config = read_json(config_path);
    config_ = config_from_hf(config, config_path.string());
    if (config.contains("ekv_source") && config["ekv_source"].is_object() &&
        config["ekv_source"].contains("fingerprint") && config["ekv_source"]["fingerprint"].is_string())
      source_fingerprint_ = config["ekv_source"]["fingerprint"].get<std::string>();

    std::vector<std::string> files;
    if (fs::exists(folder / "model.safetensors.index.json")) {
      files = shard_names(folder / "model.safetensors.index.json");
    } else {
      EKV_CHECK(fs::exists(folder / "model.safetensors"), folder.string(),
                ": no model.safetensors or model.safetensors.index.json");
      files = {"model.safetensors"};
    }
    for (const auto& name : files) {
      shards_.push_back(std::make_unique<SafetensorsFile>(folder / name));
      const SafetensorsFile& shard = *shards_.back();
      for (const auto& entry : shard.entries()) {
        TensorRecord record;
        record.name = entry.name;
        record.source_name = entry.name;
        record.file = shard.path().string();
        record.dtype = entry.dtype;
        record.shape = entry.shape;
        locations_[entry.name] = {&shard, &entry};
        tensors_.push_back(std::move(record));
      }
    }
    finish_open();
  }

  std::string format() const override { return "hf"; }

 protected:
  std::span<const std::byte> raw_bytes(const TensorRecord& record) const override {
    const auto& [shard, entry] = locations_.at(record.name);
    return shard->bytes(*entry);
  }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, std::pair<const SafetensorsFile*, const SafetensorsEntry*>> locations_;
};

}  // namespace

std::unique_ptr<ModelSource> open_hf_model(const fs::path& folder) { return std::make_unique<HfModel>(folder); }

}  // namespace ekv
