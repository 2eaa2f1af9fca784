// ekv-jlrd: joint (or separate) low-rank factorization of the non-elite keys and the values,
// with rank sweeps and cache accounting (docs/method.md §5-6). The work is the library's
// (jlrd/jlrd_run); this file is the command line: options into JlrdSettings, the final line.
#pragma once

#include <CLI/CLI.hpp>

#include "ekv/jlrd/jlrd_settings.hpp"

namespace ekv {

struct JlrdOptions : JlrdSettings {
  int threads = 0;

  void register_with(CLI::App& app);
};

void run_jlrd(const JlrdOptions& options);

}  // namespace ekv
