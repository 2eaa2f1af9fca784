#include "ekv/core/atomic_output.hpp"

#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "ekv/core/error.hpp"
#include "ekv/core/failpoint.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/core/read_file.hpp"

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
  require_output_path(final_);
  require_replaceable_folder(final_);
  temp_ = final_;
  temp_ += ".tmp";
  std::error_code ignored;
  if (fs::exists(temp_, ignored)) {
    log::info(cat(temp_.string(), ": removing the unfinished output of an interrupted run"));
    fs::remove_all(temp_, ignored);
  }
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ignored;
    fs::remove_all(temp_, ignored);
  }
}

void require_committed(const fs::path& path) {
  // The name as given and the path it resolves to, every part of both: "export.tmp/.", a link to
  // an export.tmp folder and "export.tmp/decode-pack.h5" are all inside an unfinished output.
  std::error_code ignored;
  const fs::path resolved = fs::weakly_canonical(fs::absolute(path, ignored), ignored);
  for (const fs::path& spelling : {fs::absolute(path, ignored).lexically_normal(), resolved}) {
    for (const fs::path& part : spelling) {
      EKV_CHECK(part.extension() != ".tmp", path.string(), ": an unfinished output: ", part.string(),
                " (ekv tools write under <name>.tmp and rename it when complete; this one was interrupted): run "
                "the tool again");
      EKV_CHECK(part.extension() != ".partial", path.string(), ": an unfinished output: ", part.string(),
                " (ekv-uptrain assembles its folder as <name>.partial and renames it when complete; this one was "
                "interrupted): run ekv-uptrain again");
    }
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
  failpoint("commit");
  std::error_code error;
  bool exchanged = false;
  if (fs::is_directory(final_) && fs::is_directory(temp_)) {
    // The folder replaced may hold only what the new one has (and ekv's digest caches): anything
    // else is someone's file, which the exchange would delete.
    for (const auto& entry : fs::directory_iterator(final_)) {
      const fs::path name = entry.path().filename();
      EKV_CHECK(fs::exists(temp_ / name) || name.extension() == ".ekv-sha256", final_.string(), ": holds ",
                name.string(), ", which this output does not: refusing to replace the folder (move ", name.string(),
                " out of it, or write elsewhere)");
    }
    // A folder cannot be renamed over a non-empty one. Swapping the two in one step keeps a
    // complete folder under the final name at every instant (removing the old one first would
    // leave a half-deleted folder there if killed); the old one then goes as a leftover .tmp.
    exchanged = ::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) == 0;
    if (!exchanged) fs::remove_all(final_, error);  // a filesystem without RENAME_EXCHANGE
  }
  if (!exchanged) {
    fs::rename(temp_, final_, error);
    EKV_CHECK(!error, final_.string(), ": cannot move the finished output into place: ", error.message());
  }
  committed_ = true;
  fsync_path(fs::absolute(final_).parent_path());
  failpoint("replaced");
  if (exchanged) fs::remove_all(temp_, error);  // the previous folder
}

void close_and_commit(std::FILE*& file, AtomicOutput& output) {
  const bool ok = std::fflush(file) == 0;
  const bool closed = std::fclose(file) == 0;
  file = nullptr;
  EKV_CHECK(ok && closed, output.temp_path().string(), ": write failed (disk full?): ", std::strerror(errno));
  output.commit();
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  AtomicOutput output(path);
  write_text_file(output.temp_path(), text);
  output.commit();
}

}  // namespace ekv
