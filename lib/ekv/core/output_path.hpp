// The one guard every tool applies to its output paths before any work, so a bad -o fails at
// once rather than after an hour of compute, and never overwrites what the run reads.
#pragma once

#include <filesystem>
#include <vector>

namespace ekv {

// `output` must lie in an existing directory and be, if it exists already, a regular file or a
// folder (not a device such as /dev/null, a pipe or a socket), and must be neither any of
// `inputs` nor a folder that holds one (compared after resolving ".", ".." and symbolic links,
// and as the same file when both exist): replacing it would delete the input. The error names
// the output path and the input.
void require_output_path(const std::filesystem::path& output, const std::vector<std::filesystem::path>& inputs = {});

// An existing folder that an output may replace: empty, or one an ekv tool wrote (its
// config.json carries "ekv_source", as every checkpoint folder ekv writes does). Anything else
// (a user's folder, the working directory, a model folder) is refused by name.
void require_replaceable_folder(const std::filesystem::path& folder);

}  // namespace ekv
