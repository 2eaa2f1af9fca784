// ekv-check: the CPU reference checker. Subcommand `ppl` measures perplexity on a text.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace ekv {

struct PplOptions {
  std::string model;
  std::string text;
  int window = 512;
  int max_windows = 0;
  int batch = 4;
  int threads = 0;

  void register_with(CLI::App& command);
  void check() const;
};

// Prints the summary line `final: ppl=... tokens=... windows=...` on stdout.
void run_check_ppl(const PplOptions& options);

}  // namespace ekv
