#include "ekv/core/run_context.hpp"

namespace ekv {

namespace {
RunContext& mutable_context() {
  static RunContext context;
  return context;
}
}  // namespace

const RunContext& run_context() { return mutable_context(); }

std::string shell_quote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
                          std::string::npos)
    return arg;
  std::string quoted = "'";
  for (char c : arg) quoted += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

void set_run_context(const std::string& tool, int argc, const char* const* argv) {
  RunContext& context = mutable_context();
  context.tool = tool;
  context.command_line.clear();
  for (int i = 0; i < argc; ++i) {
    if (i) context.command_line += ' ';
    context.command_line += shell_quote(argv[i]);
  }
}

}  // namespace ekv
