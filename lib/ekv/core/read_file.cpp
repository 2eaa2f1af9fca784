#include "ekv/core/read_file.hpp"

#include <fstream>
#include <sstream>

#include "ekv/core/error.hpp"

namespace ekv {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EKV_CHECK(in, path.string(), ": cannot open");
  std::ostringstream content;
  content << in.rdbuf();
  EKV_CHECK(!in.bad(), path.string(), ": read error");
  return content.str();
}

}  // namespace ekv
