#include "ekv/core/atomic_output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "ekv/core/error.hpp"

namespace ekv {

namespace fs = std::filesystem;

namespace {
void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EKV_CHECK(fd >= 0, path.string(), ": cannot open to sync: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  EKV_CHECK(rc == 0, path.string(), ": fsync failed: ", std::strerror(saved));
}
}  // namespace

AtomicOutput::AtomicOutput(fs::path path) : final_(std::move(path)) {
  EKV_CHECK(!final_.filename().empty(), final_.string(), ": output path names no file");
  temp_ = final_;
  temp_ += ".tmp";
  const fs::path parent = fs::absolute(final_).parent_path();
  EKV_CHECK(fs::is_directory(parent), final_.string(), ": output directory ", parent.string(),
            " does not exist");
  std::error_code ignored;
  fs::remove_all(temp_, ignored);  // a leftover from a killed run
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ignored;
    fs::remove_all(temp_, ignored);
  }
}

void AtomicOutput::commit() {
  EKV_CHECK(!committed_, final_.string(), ": committed twice");
  EKV_CHECK(fs::exists(temp_), temp_.string(), ": nothing was written");
  if (fs::is_directory(temp_)) {
    for (const auto& entry : fs::recursive_directory_iterator(temp_))
      if (entry.is_regular_file()) fsync_path(entry.path());
  }
  fsync_path(temp_);
  std::error_code error;
  if (fs::is_directory(final_) && fs::is_directory(temp_)) fs::remove_all(final_, error);
  fs::rename(temp_, final_, error);
  EKV_CHECK(!error, final_.string(), ": cannot move the finished output into place: ", error.message());
  fsync_path(fs::absolute(final_).parent_path());
  committed_ = true;
}

}  // namespace ekv
