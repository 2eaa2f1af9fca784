// ekv-cuda-verify: runs both decode kernels (decode_attention.hpp: compressed and full cache) on
// seeded random queries and caches of given shapes, checks each against its CPU reference
// (compressed_/full_decode_reference, built on the code ekv-check's pack path uses) by
// normalized error, and with --bench times them.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace ekv {

struct CudaVerifyOptions {
  std::string pack;                 // decode-pack.h5: heads, KV heads, r and d_kv of --layer
  int layer = 0;
  int heads = 0, kv_heads = 0, head_dim = 0, r = 0, rank = 0;  // or explicit shapes
  std::vector<int> batches{1, 4};
  std::vector<int> contexts{1024, 4096};
  std::string cache_dtype = "f16";
  double tolerance = 1e-3;  // NMSE against the CPU reference
  bool bench = false;
  int iterations = 20;
  std::uint32_t seed = 0;
  std::string output;  // verify.json

  void register_with(CLI::App& app);
  void check() const;
};

// Exit status 77 (ctest's skip code) with the reason printed when no GPU is present.
int run_cuda_verify(const CudaVerifyOptions& options);

}  // namespace ekv
