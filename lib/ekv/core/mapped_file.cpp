#include "ekv/core/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "ekv/core/error.hpp"
#include "ekv/core/mapping_guard.hpp"
#include "ekv/core/read_file.hpp"

namespace ekv {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  require_regular_file(path);
  // O_NONBLOCK: had the path become a FIFO since the check, open would wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  EKV_CHECK(fd >= 0, path.string(), ": cannot open: ", std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    fail(cat(path.string(), ": not a regular file"));
  }
  size_ = std::size_t(info.st_size);
  if (size_ > 0) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int saved = errno;
    ::close(fd);
    EKV_CHECK(mapped != MAP_FAILED, path.string(), ": cannot map: ", std::strerror(saved));
    data_ = static_cast<const std::byte*>(mapped);
    guard_slot_ = guard_mapping(data_, size_, path);
  } else {
    ::close(fd);
  }
}

void release_pages(std::span<const std::byte> bytes) {
  const auto page = std::uintptr_t(::sysconf(_SC_PAGESIZE));
  const auto begin = (std::uintptr_t(bytes.data()) + page - 1) / page * page;
  const auto end = (std::uintptr_t(bytes.data()) + bytes.size()) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  unguard_mapping(guard_slot_);
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace ekv
