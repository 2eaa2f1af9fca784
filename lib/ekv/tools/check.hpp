// ekv-check: the CPU reference checker. `ppl` measures perplexity on a text; `compare` the
// fidelity of a compressed model to its original; `decode` decodes from the compressed cache.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "ekv/check/held_out_windows.hpp"
#include "ekv/model/model_source.hpp"

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

struct CompareOptions {
  std::string model;       // the original
  std::string compressed;  // the ekv-export folder
  std::string text;
  std::string held_out_from;  // calib.h5 made from `text`: score only the windows it never sampled
  int window = 512;
  int max_windows = 16;
  int batch = 2;
  int threads = 0;
  std::string output;  // report.json

  void register_with(CLI::App& command);
  void check() const;
};

// Markdown table on stdout, JSON report to the file, then `final: ...`.
void run_check_compare(const CompareOptions& options);

// The windows of a text (`tokens`, from `text_path`) that calib.h5's sample never read
// (compare --held-out-from). calib.h5 must be of `original` and of this text: every sampled
// sequence is checked against the text's tokens, and a mismatch names the calibration file.
HeldOutWindows calibration_held_out(const std::string& calib_path, const ModelSource& original,
                                    const std::string& text_path, const std::vector<std::int32_t>& tokens, int window,
                                    int max_windows);

struct DecodeOptions {
  std::string compressed;
  std::string model;  // optional: the original, for KL / top-1 of the decoded tokens
  std::string pack;   // optional: decode-pack.h5 (default: the one inside the export folder)
  std::string text;
  int prompt = 64;
  int steps = 64;
  double tolerance = 1e-4;  // on max |Δlogit| / max |logit| against the compressed prefill
  int threads = 0;

  void register_with(CLI::App& command);
  void check() const;
};

// Fails (non-zero exit) when a path disagrees with the prefill beyond the tolerance.
void run_check_decode(const DecodeOptions& options);

}  // namespace ekv
