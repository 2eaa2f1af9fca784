// The tiny planted model taken through ekv-calibrate and ekv-select-rope (all chunks ranked),
// in a fresh folder: the starting point of the J-LRD and export tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ekv/tools/export.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {

struct TinyPipeline {
  // biased: the tiny model as a qwen2 with q/k/v biases (make_tiny_model); tokenizer: its GGUF
  // carries a toy tokenizer (tiny_model_gguf).
  explicit TinyPipeline(const std::string& name, std::uint32_t seed = 31, bool biased = false, bool tokenizer = false);
  ~TinyPipeline();
  std::string path(const std::string& name) const { return (dir / name).string(); }
  // Another calibration of the token stream into `name` (the stream holds 600 tokens).
  void calibrate(const std::string& name, int seq_len, int num_seqs, int keep_seqs) const;
  // ekv-jlrd at r with the given ranks (whitened, joint) into name.h5, then ekv-export into the
  // folder `name` (decode pack of 200 positions); returns the folder. `rope`: the selection used.
  std::string make_export(const std::string& name, int r, std::vector<int> ranks,
                          const std::string& calib = "calib.h5", bool refit = false,
                          const std::string& rope = "rope.h5") const;
  // The options make_export uses.
  ExportOptions export_options(const std::string& name, const std::string& rope = "rope.h5") const;

  std::filesystem::path dir;
  TinyModel tiny;
  std::vector<std::int32_t> stream;  // the calibration token stream (600 tokens)
  // Files: tiny.gguf, tokens.safetensors, calib.h5, rope.h5 (elite-l1, r_max = n_c = 4).
};

}  // namespace ekv::test
