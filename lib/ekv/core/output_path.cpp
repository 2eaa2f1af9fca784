#include "ekv/core/output_path.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "ekv/core/error.hpp"

namespace ekv {

namespace fs = std::filesystem;

void require_output_path(const fs::path& output, const std::vector<fs::path>& inputs) {
  EKV_CHECK(!output.empty(), "the output path is empty");
  EKV_CHECK(!output.filename().empty(), output.string(), ": output path names no file");
  const fs::path parent = fs::absolute(output).parent_path();
  EKV_CHECK(fs::is_directory(parent), output.string(), ": output directory ", parent.string(), " does not exist");
  std::error_code error;
  const fs::file_status status = fs::status(output, error);
  EKV_CHECK(!fs::exists(status) || fs::is_regular_file(status) || fs::is_directory(status), output.string(),
            ": exists and is not a regular file or folder (a device, pipe or socket): outputs are replaced "
            "by renaming, which would destroy it");
  const fs::path resolved = fs::weakly_canonical(fs::absolute(output), error);
  for (const auto& input : inputs) {
    if (input.empty()) continue;
    std::error_code ignored;
    const bool same = fs::weakly_canonical(fs::absolute(input), ignored) == resolved ||
                      (fs::exists(status) && fs::exists(input, ignored) && fs::equivalent(input, output, ignored));
    EKV_CHECK(!same, output.string(), ": output would overwrite the input ", input.string());
    // An input inside the output folder (or below it) would go with the folder it replaces.
    const fs::path within = fs::weakly_canonical(fs::absolute(input), ignored);
    const auto [end, at] = std::mismatch(resolved.begin(), resolved.end(), within.begin(), within.end());
    EKV_CHECK(end != resolved.end() || at == within.end(), output.string(), ": the output folder holds the input ",
              input.string(), "; replacing the folder would delete it (write the output elsewhere)");
  }
}

void require_replaceable_folder(const fs::path& folder) {
  std::error_code error;
  if (!fs::is_directory(folder, error) || fs::is_empty(folder, error)) return;
  bool ours = false;
  std::ifstream in(folder / "config.json");
  if (in) {
    const nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    ours = config.is_object() && config.contains("ekv_source");
  }
  EKV_CHECK(ours, folder.string(), ": exists and is not a folder an ekv tool wrote (no config.json with ekv_source): "
            "refusing to replace it and everything in it (remove it yourself, or write elsewhere)");
}

}  // namespace ekv
