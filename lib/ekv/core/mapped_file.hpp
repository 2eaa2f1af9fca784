// A read-only memory map of a whole file: weights are paged in on demand, so touching one
// layer costs one layer of memory.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace ekv {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  int guard_slot_ = -1;  // a SIGBUS here names the file (mapping_guard.hpp)
};

// Drops the resident pages wholly inside `bytes` from this process's mapping (the data stays
// in the page cache and the mapping stays valid): after a tensor is dequantized its source
// pages no longer count toward the resident memory of a layer-streaming run.
void release_pages(std::span<const std::byte> bytes);

}  // namespace ekv
