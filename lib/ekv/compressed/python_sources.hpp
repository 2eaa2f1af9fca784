// The PyTorch files ekv-export puts beside a compressed checkpoint so that transformers loads
// it with trust_remote_code (python/elitekv/ in the source tree, embedded at build time).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace ekv {

// (file name, text) of configuration_elitekv.py and modeling_elitekv.py.
const std::vector<std::pair<std::string, std::string>>& elitekv_python_sources();

}  // namespace ekv
