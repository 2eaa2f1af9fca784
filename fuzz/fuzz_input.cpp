#include "fuzz_input.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <vector>

#include "ekv/core/error.hpp"

namespace ekv::fuzz {

namespace fs = std::filesystem;

namespace {
// Never destroyed: the atexit cleanup runs after static destructors would have freed it.
const fs::path& private_dir() {
  static const fs::path* dir = [] {
    const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    auto* d = new fs::path(base / ("ekv-fuzz-" + std::to_string(::getpid())));
    fs::create_directories(*d);
    std::atexit([] { std::error_code ignored; fs::remove_all(private_dir(), ignored); });
    return d;
  }();
  return *dir;
}
}  // namespace

fs::path write_input(const std::uint8_t* data, std::size_t size, const std::string& name) {
  const fs::path path = private_dir() / name;
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

void expect_clear_errors(const std::function<void()>& parse) {
  try {
    parse();
  } catch (const ekv::Error&) {
    // the refusal a user would see, naming the file and the field
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: an exception other than ekv::Error escaped: %s\n", e.what());
    std::abort();
  }
}

void check_and_dequantize(DType dtype, std::span<const std::byte> bytes, std::uint64_t elements) {
  if (bytes.size() != storage_bytes(dtype, elements)) finding("tensor span size");
  const std::uint64_t block = dtype_info(dtype).block_elements;
  const std::uint64_t leading = std::min<std::uint64_t>(elements, 4 * 256) / block * block;
  std::vector<float> values(leading);
  dequantize(dtype, bytes.first(storage_bytes(dtype, leading)), values);
}

void finding(const char* what) {
  std::fprintf(stderr, "fuzz: broken promise: %s\n", what);
  std::abort();
}

}  // namespace ekv::fuzz
