// ekv-cuda-verify: the CUDA decode kernels against the CPU reference, and their speed.
#include "ekv/core/cli.hpp"
#include "ekv/cuda/verify.hpp"

int main(int argc, char** argv) {
  ekv::CudaVerifyOptions options;
  return ekv::tool_main(
      argc, argv,
      {"ekv-cuda-verify",
       "Runs the compressed-cache decode kernel (one new token per sequence; k_e per KV head and the shared latent c "
       "in fp16 or bf16; split-KV with a combine step) on seeded random queries and caches with variable sequence "
       "lengths, and compares it with the CPU reference by NMSE (fails above --tolerance, printing the shape). "
       "Shapes come from a decode pack (--pack, --layer) or from --heads/--kv-heads/--head-dim/--r/--rank. --bench "
       "adds time, GB/s of cache read, the fraction of the GPU's peak bandwidth and the speedup over the full-cache "
       "kernel at equal batch and context. Without a GPU it prints why and exits 77 (ctest's skip code).",
       "ekv-cuda-verify --pack out/model-elitekv/decode-pack.h5 --batch 1,16,64 --context 1024,8192 --bench -o verify.json",
       "ekv-export (writes the pack), ekv-check decode (the CPU decode paths)"},
      [&](CLI::App& app) { options.register_with(app); },
      [&] { return ekv::run_cuda_verify(options); });
}
