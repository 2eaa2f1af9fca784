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

namespace {
std::string kind_of(std::filesystem::file_type type) {
  using std::filesystem::file_type;
  switch (type) {
    case file_type::fifo: return "a FIFO";
    case file_type::socket: return "a socket";
    case file_type::character: return "a character device";
    case file_type::block: return "a block device";
    case file_type::directory: return "a folder";
    default: return "not a regular file";
  }
}

void require_kind(const std::filesystem::path& path, bool folder_allowed) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  EKV_CHECK(std::filesystem::exists(status), path.string(), ": no such file", folder_allowed ? " or folder" : "");
  const bool ok = status.type() == std::filesystem::file_type::regular ||
                  (folder_allowed && status.type() == std::filesystem::file_type::directory);
  EKV_CHECK(ok, path.string(), ": ", kind_of(status.type()), ", not a ", folder_allowed ? "file or folder" : "file",
            " (a FIFO or device would block or never end)");
}
}  // namespace

void require_regular_file(const std::filesystem::path& path) { require_kind(path, false); }
void require_file_or_folder(const std::filesystem::path& path) { require_kind(path, true); }

std::string read_file(const std::filesystem::path& path) {
  require_regular_file(path);
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
  require_regular_file(path);
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
