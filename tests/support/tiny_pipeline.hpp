// The tiny planted model taken through ekv-calibrate and ekv-select-rope (all chunks ranked),
// in a fresh folder: the starting point of the J-LRD and export tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gguf_builder.hpp"

namespace ekv::test {

struct TinyPipeline {
  explicit TinyPipeline(const std::string& name, std::uint32_t seed = 31);
  ~TinyPipeline();
  std::string path(const std::string& name) const { return (dir / name).string(); }
  // Another calibration of the token stream into `name` (the stream holds 600 tokens).
  void calibrate(const std::string& name, int seq_len, int num_seqs, int keep_seqs) const;

  std::filesystem::path dir;
  TinyModel tiny;
  std::vector<std::int32_t> stream;  // the calibration token stream (600 tokens)
  // Files: tiny.gguf, tokens.safetensors, calib.h5, rope.h5 (elite-l1, r_max = n_c = 4).
};

}  // namespace ekv::test
