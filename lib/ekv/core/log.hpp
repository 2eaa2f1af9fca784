// Messages go to stderr (data goes to stdout or files). Warnings are counted so that a
// tool's summary line can say how many things were skipped.
#pragma once

#include <cstdint>
#include <string>

namespace ekv::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, quiet = 4 };

void set_level(Level level);
Level level();

void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

std::uint64_t warning_count();

// First line of every tool: tool, version, git sha and the full command line.
void start();

}  // namespace ekv::log
