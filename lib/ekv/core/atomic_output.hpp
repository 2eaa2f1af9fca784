// Atomic outputs: everything is written under "<name>.tmp" and renamed into place only by
// commit(), after fsync. A crash or a thrown error leaves no file that a consumer would open.
#pragma once

#include <cstdio>
#include <filesystem>

namespace ekv {

class AtomicOutput {
 public:
  // For a file or a directory at `path`: require_output_path(path) must hold.
  explicit AtomicOutput(std::filesystem::path path);
  ~AtomicOutput();  // removes the temporary unless committed
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& final_path() const { return final_; }

  // fsyncs the temporary (every file inside, for a directory), replaces the final path
  // with it, and fsyncs the parent directory.
  void commit();

 private:
  std::filesystem::path final_;
  std::filesystem::path temp_;
  bool committed_ = false;
};

// Flushes and closes `file` (the output's temporary, written with stdio), then commits: a failed
// flush or close (a full disk) is an error naming the temporary, and nothing is renamed.
void close_and_commit(std::FILE*& file, AtomicOutput& output);

// A small text output (a JSON report) written whole under the temporary name, then committed.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

// Readers refuse AtomicOutput's temporaries: "<name>.tmp" is by construction an output whose
// commit (the rename is the completion marker) never happened, however complete it looks.
void require_committed(const std::filesystem::path& path);

}  // namespace ekv
