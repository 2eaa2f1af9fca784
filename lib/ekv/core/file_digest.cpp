#include "ekv/core/file_digest.hpp"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <system_error>

#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/sha256.hpp"

namespace ekv {

namespace fs = std::filesystem;

namespace {

constexpr const char* kCacheTag = "ekv-sha256-v1";

// "<tag> <size> <mtime in ns since the file clock's epoch>": what must match for a cached digest.
std::string cache_key(const fs::path& path, std::uintmax_t size) {
  const auto mtime = fs::last_write_time(path).time_since_epoch();
  return cat(kCacheTag, " ", size, " ", std::chrono::duration_cast<std::chrono::nanoseconds>(mtime).count());
}

}  // namespace

std::string cached_file_sha256(const fs::path& path) {
  const std::uintmax_t size = fs::file_size(path);
  const std::string key = cache_key(path, size);
  fs::path cache = path;
  cache += ".ekv-sha256";
  {
    std::ifstream in(cache);
    std::string line;
    if (std::getline(in, line) && line.size() == key.size() + 65 && line.compare(0, key.size(), key) == 0 &&
        line[key.size()] == ' ')
      return line.substr(key.size() + 1);
  }
  if (size > (std::uintmax_t(64) << 20))  // worth a line only where it takes a while
    log::info(cat("hashing ", path.string(), " (once; cached in ", cache.string(), ")"));
  const std::string digest = sha256_file_hex(path);
  // Written under a temporary name and renamed, so a concurrent reader sees all or nothing.
  fs::path temp = cache;
  temp += cat(".", ::getpid(), ".tmp");
  std::error_code error;
  {
    std::ofstream out(temp);
    out << key << " " << digest << "\n";
    if (!out) error = std::make_error_code(std::errc::io_error);
  }
  if (!error) fs::rename(temp, cache, error);
  if (error) {
    fs::remove(temp, error);
    log::info(cat("cannot cache the digest of ", path.string(), " beside it; it will be recomputed"));
  }
  return digest;
}

}  // namespace ekv
