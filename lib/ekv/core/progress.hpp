// Progress of a long loop on stderr: done/total, rate and ETA. On a terminal the line is
// rewritten in place; in a log file a line is written every few seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ekv {

class Progress {
 public:
  Progress(std::string label, std::uint64_t total, std::string unit);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(std::uint64_t amount = 1);
  void finish();  // prints the final line (also called by the destructor)
  double elapsed_seconds() const;

 private:
  void print(bool final_line);

  std::string label_;
  std::string unit_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  bool finished_ = false;
  bool terminal_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
};

// "1h02m", "3m05s", "12.3s": compact durations for progress lines and summaries.
std::string format_duration(double seconds);

}  // namespace ekv
