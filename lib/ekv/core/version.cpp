#include "ekv/core/version.hpp"

#include "ekv/core/error.hpp"

namespace ekv {

std::string_view version() { return EKV_VERSION; }

std::string_view git_sha() {
  return
#include "ekv_git_sha.inc"
      ;
}

std::string producer(std::string_view tool) { return cat(tool, " ", version(), " (git ", git_sha(), ")"); }

}  // namespace ekv
