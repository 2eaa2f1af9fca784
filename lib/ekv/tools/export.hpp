// ekv-export: the compressed model as an HF checkpoint (config.json with the EliteKV keys,
// model.safetensors, tokenizer.json, PyTorch modeling files for trust_remote_code) plus the
// decode pack (decode-pack.h5) inside the same folder (docs/method.md §6); or, with --format,
// in a stock engine's latent-attention format (docs/method.md §11): llama.cpp's deepseek2 GGUF or
// transformers' DeepseekV3, from the artifacts or from an export folder (--compressed).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace ekv {

struct ExportOptions {
  std::string model;
  std::string rope;
  std::string jlrd;
  std::string compressed;           // an export folder to write in an engine --format instead
  std::string format = "elitekv";   // elitekv | gguf | hf-deepseek
  std::string dtype = "f32";        // weights of model.safetensors (gguf: also q8_0)
  std::string cache_dtype = "f16";  // what a decode kernel caches k_e and c in (recorded in the pack)
  std::int64_t pack_positions = 4096;
  std::string output;

  void register_with(CLI::App& app);
  void check() const;
};

void run_export(const ExportOptions& options);

// ekv-export pack: rewrites DIR/decode-pack.h5 from the weights of an export folder, for an
// export whose weights changed after ekv-export wrote it (ekv-uptrain). The pack then names
// the folder's current fingerprint, so ekv-check decode verifies it against these weights.
struct RepackOptions {
  std::string compressed;
  std::string cache_dtype = "f16";
  std::int64_t pack_positions = 4096;
  bool staging = false;  // the folder is ekv-uptrain's unfinished FOLDER.partial, which readers refuse

  void register_with(CLI::App& command);
};

void run_repack(const RepackOptions& options);

}  // namespace ekv
