// What this process is: tool name and full command line, recorded once at start-up and
// stamped into every artifact and the first log line.
#pragma once

#include <string>

namespace ekv {

struct RunContext {
  std::string tool = "ekv";      // e.g. "ekv-calibrate"
  std::string command_line;      // argv joined with shell quoting
};

const RunContext& run_context();
void set_run_context(const std::string& tool, int argc, const char* const* argv);

// Quotes an argument so that a shell would read it back unchanged.
std::string shell_quote(const std::string& arg);

}  // namespace ekv
