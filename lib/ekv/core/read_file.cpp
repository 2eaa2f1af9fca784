#include "ekv/core/read_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdint>
#include <fstream>
#include <vector>
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

void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  EKV_CHECK(!out.fail(), path.string(), ": write failed (disk full?): ", std::strerror(errno));
}

void require_text_corpus(const std::filesystem::path& path) {
  EKV_CHECK(std::filesystem::is_regular_file(path), path.string(), ": no such text file");
  std::ifstream in(path, std::ios::binary);
  EKV_CHECK(in, path.string(), ": cannot open");
  std::vector<char> block(1 << 20);
  std::uint64_t offset = 0;
  while (in) {
    in.read(block.data(), std::streamsize(block.size()));
    const auto got = std::size_t(in.gcount());
    const auto nul = std::find(block.begin(), block.begin() + std::ptrdiff_t(got), '\0');
    EKV_CHECK(nul == block.begin() + std::ptrdiff_t(got), path.string(), ": a NUL byte at offset ",
              offset + std::uint64_t(nul - block.begin()), ": a binary file, not a text corpus");
    offset += got;
  }
  EKV_CHECK(!in.bad(), path.string(), ": read error");
  EKV_CHECK(offset > 0, path.string(), ": empty: a text corpus needs text");
}

}  // namespace ekv
