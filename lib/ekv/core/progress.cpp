#include "ekv/core/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "ekv/core/log.hpp"

namespace ekv {

std::string format_duration(double seconds) {
  char buffer[32];
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) {
    std::snprintf(buffer, sizeof buffer, "%.1fs", seconds);
  } else if (seconds < 3600) {
    std::snprintf(buffer, sizeof buffer, "%dm%02ds", int(seconds / 60), int(seconds) % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%dh%02dm", int(seconds / 3600), int(seconds / 60) % 60);
  }
  return buffer;
}

Progress::Progress(std::string label, std::uint64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      terminal_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

Progress::~Progress() {
  if (!finished_) finish();
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::advance(std::uint64_t amount) {
  done_ += amount;
  const auto now = std::chrono::steady_clock::now();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  if (since_print >= (terminal_ ? 0.25 : 5.0)) {
    last_print_ = now;
    print(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  print(true);
}

void Progress::print(bool final_line) {
  if (log::level() > log::Level::info) return;
  const double elapsed = elapsed_seconds();
  const double rate = elapsed > 0 ? double(done_) / elapsed : 0.0;
  const double eta = (rate > 0 && total_ >= done_) ? double(total_ - done_) / rate : NAN;
  const double percent = total_ ? 100.0 * double(done_) / double(total_) : 100.0;
  char line[256];
  if (final_line) {
    std::snprintf(line, sizeof line, "%s: %llu/%llu %s in %s (%.1f %s/s)", label_.c_str(),
                  (unsigned long long)done_, (unsigned long long)total_, unit_.c_str(),
                  format_duration(elapsed).c_str(), rate, unit_.c_str());
  } else {
    std::snprintf(line, sizeof line, "%s: %llu/%llu %s (%.0f%%) %.1f %s/s, ETA %s", label_.c_str(),
                  (unsigned long long)done_, (unsigned long long)total_, unit_.c_str(), percent, rate,
                  unit_.c_str(), format_duration(eta).c_str());
  }
  if (terminal_) {
    std::fprintf(stderr, "\r\033[K%s%s", line, final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line);
  }
  std::fflush(stderr);
}

}  // namespace ekv
