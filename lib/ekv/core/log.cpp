#include "ekv/core/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "ekv/core/run_context.hpp"
#include "ekv/core/version.hpp"

namespace ekv::log {

namespace {
std::atomic<Level> g_level{Level::info};
std::atomic<std::uint64_t> g_warnings{0};
std::mutex g_mutex;

void emit(Level at, const char* tag, const std::string& message) {
  if (at < g_level.load()) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s%s\n", tag, message.c_str());
  std::fflush(stderr);
}
}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level.load(); }

void debug(const std::string& message) { emit(Level::debug, "debug: ", message); }
void info(const std::string& message) { emit(Level::info, "", message); }
void warn(const std::string& message) {
  ++g_warnings;
  emit(Level::warn, "warning: ", message);
}
void error(const std::string& message) { emit(Level::error, "error: ", message); }

std::uint64_t warning_count() { return g_warnings.load(); }

void start() {
  const RunContext& context = run_context();
  info(producer(context.tool) + ": " + context.command_line);
}

}  // namespace ekv::log
