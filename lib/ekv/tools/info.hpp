// ekv-info: describe any input or artifact (GGUF file, HF folder, safetensors file, ekv
// HDF5 artifact) as plain text.
#pragma once

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <string>

namespace ekv {

struct InfoOptions {
  std::string path;
  bool all_metadata = false;  // print every element of long GGUF arrays (tokenizer tables)

  void register_with(CLI::App& app);
  void check() const;
};

// Writes the description to `out`; fails with ekv::Error for unreadable or corrupt files.
void run_info(const InfoOptions& options, std::ostream& out);

}  // namespace ekv
