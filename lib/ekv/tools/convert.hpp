// ekv-convert: write any model ekv can read (GGUF or HF) as an HF checkpoint folder in the
// rotate_half layout, dequantized to f32, f16 or bf16.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace ekv {

struct ConvertOptions {
  std::string model;
  std::string output;
  std::string dtype = "f32";

  void register_with(CLI::App& app);
  void check() const;
};

void run_convert(const ConvertOptions& options);

}  // namespace ekv
