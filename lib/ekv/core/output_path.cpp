#include "ekv/core/output_path.hpp"

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
  }
}

}  // namespace ekv
