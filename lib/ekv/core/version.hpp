// Version and provenance strings of this build.
#pragma once

#include <string>
#include <string_view>

namespace ekv {

std::string_view version();  // "0.1.0"
std::string_view git_sha();  // 12 hex digits, "-dirty" when built from a changed tree
std::string producer(std::string_view tool);  // "ekv-info 0.1.0 (git 0123abcd4567)"

}  // namespace ekv
