// The one guard every tool applies to its output paths before any work, so a bad -o fails at
// once rather than after an hour of compute, and never overwrites what the run reads.
#pragma once

#include <filesystem>
#include <vector>

namespace ekv {

// `output` must lie in an existing directory and be, if it exists already, a regular file or a
// folder (not a device such as /dev/null, a pipe or a socket), and must not be any of `inputs`
// (compared after resolving ".", ".." and symbolic links, and as the same file when both exist).
// The error names the output path and the input it would overwrite.
void require_output_path(const std::filesystem::path& output, const std::vector<std::filesystem::path>& inputs = {});

}  // namespace ekv
