#include "ekv/cuda/verify.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "ekv/compressed/decode_pack.hpp"
#include "ekv/compressed/decode_reference.hpp"
#include "ekv/core/atomic_output.hpp"
#include "ekv/core/cli.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/cuda/decode_attention.hpp"

namespace ekv {

namespace {
void cuda_check(cudaError_t status, const char* what) {
  EKV_CHECK(status == cudaSuccess, what, ": ", cudaGetErrorString(status));
}

// A device buffer freed on scope exit.
struct DeviceBuffer {
  explicit DeviceBuffer(std::size_t bytes) { cuda_check(cudaMalloc(&ptr, std::max<std::size_t>(bytes, 1)), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr(other.ptr) { other.ptr = nullptr; }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(ptr); }
  void* ptr = nullptr;
};

template <class T>
DeviceBuffer upload(const std::vector<T>& host) {
  DeviceBuffer buffer(host.size() * sizeof(T));
  cuda_check(cudaMemcpy(buffer.ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  return buffer;
}

// Random N(0,1) values rounded to the cache dtype: `rounded` holds what the GPU sees, as fp32.
std::vector<std::uint16_t> random_cache(std::size_t count, bool bf16, std::mt19937& rng, std::vector<float>& rounded) {
  std::normal_distribution<float> normal;
  std::vector<std::uint16_t> bits(count);
  rounded.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const float x = normal(rng);
    if (bf16) {
      const __nv_bfloat16 v = __float2bfloat16(x);
      std::memcpy(&bits[i], &v, 2);
      rounded[i] = __bfloat162float(v);
    } else {
      const __half v = __float2half(x);
      std::memcpy(&bits[i], &v, 2);
      rounded[i] = __half2float(v);
    }
  }
  return bits;
}

std::vector<float> random_floats(std::size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> out(count);
  for (float& x : out) x = normal(rng);
  return out;
}

double nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    diff += double(got[i] - want[i]) * (got[i] - want[i]);
    norm += double(want[i]) * want[i];
  }
  return norm > 0 ? diff / norm : diff;
}

double peak_bandwidth_gbs(int device) {
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess)
    return NAN;
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;  // double data rate
}

template <class Launch>
double time_ms(Launch launch, int iterations) {
  cudaEvent_t start, stop;
  cuda_check(cudaEventCreate(&start), "event");
  cuda_check(cudaEventCreate(&stop), "event");
  launch();  // warm-up
  cuda_check(cudaEventRecord(start), "event");
  for (int i = 0; i < iterations; ++i) launch();
  cuda_check(cudaEventRecord(stop), "event");
  cuda_check(cudaEventSynchronize(stop), "event");
  float ms = 0;
  cuda_check(cudaEventElapsedTime(&ms, start, stop), "event");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / iterations;
}
}  // namespace

void CudaVerifyOptions::register_with(CLI::App& app) {
  app.add_option("--pack", pack, "decode-pack.h5 from ekv-export: takes the shapes of --layer");
  app.add_option("--layer", layer, "Layer of the pack")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--heads", heads, "Query heads H (without --pack)")->check(CLI::PositiveNumber);
  app.add_option("--kv-heads", kv_heads, "KV heads G")->check(CLI::PositiveNumber);
  app.add_option("--head-dim", head_dim, "Head dim d_h (for the full-cache baseline)")->check(CLI::PositiveNumber);
  app.add_option("--r", r, "Elite chunks per KV head")->check(CLI::NonNegativeNumber);
  app.add_option("--rank", rank, "Latent size d_kv")->check(CLI::PositiveNumber);
  add_list_option(app, "--batch", batches, "Batch sizes, comma-separated");
  add_list_option(app, "--context", contexts, "Context lengths (T_max), comma-separated");
  app.add_option("--cache-dtype", cache_dtype, "Cache dtype")->check(CLI::IsMember({"f16", "bf16"}))->capture_default_str();
  app.add_option("--tolerance", tolerance, "Largest NMSE against the CPU reference")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--bench", bench, "Time the kernels: GB/s, fraction of peak, speedup over the full cache");
  app.add_option("--iterations", iterations, "Timed launches per shape")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", seed, "Seed of the random queries and caches")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--output,-o", output, "verify.json")->required();
}

void CudaVerifyOptions::check() const {
  EKV_CHECK(!pack.empty() || (heads > 0 && kv_heads > 0 && head_dim > 0 && rank > 0),
            "give --pack, or --heads, --kv-heads, --head-dim, --r and --rank");
  for (int b : batches) EKV_CHECK(b > 0, "--batch ", b, ": must be positive");
  for (int t : contexts) EKV_CHECK(t > 0, "--context ", t, ": must be positive");
  EKV_CHECK(tolerance > 0, "--tolerance ", tolerance, ": must be a positive number");  // NaN too
}

int run_cuda_verify(const CudaVerifyOptions& options) {
  options.check();
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP: no CUDA device present (cudaGetDeviceCount found none); nothing was verified\n");
    return 77;
  }
  int H = options.heads, G = options.kv_heads, dh = options.head_dim, r = options.r, rank = options.rank;
  if (!options.pack.empty()) {
    const ArtifactReader pack(options.pack, "decode-pack", kDecodePackFormatVersion);
    const PackHeader header = read_pack_header(pack);
    H = header.heads;
    G = header.kv_heads;
    dh = header.head_dim;
    r = header.r;
    rank = read_pack_layer(pack, header, options.layer).rank;
  }
  const bool bf16 = options.cache_dtype == "bf16";
  const auto type = bf16 ? cuda::CacheType::bf16 : cuda::CacheType::f16;
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, 0), "device properties");
  const double peak = peak_bandwidth_gbs(0);
  nlohmann::json rows = nlohmann::json::array();
  bool ok = true;
  std::mt19937 rng(options.seed);
  for (int B : options.batches)
    for (int T : options.contexts) {
      // Variable lengths: sequence b is T − (b·37 mod T/4) tokens long.
      std::vector<int> lengths;
      for (int b = 0; b < B; ++b) lengths.push_back(T - (b * 37) % std::max(1, T / 4));
      const int da = 2 * r;
      const float scale = float(1.0 / std::sqrt(double(da + rank)));
      std::vector<float> k_rounded, c_rounded;
      const auto k_bits = random_cache(std::size_t(B) * T * G * da, bf16, rng, k_rounded);
      const auto c_bits = random_cache(std::size_t(B) * T * rank, bf16, rng, c_rounded);
      const auto q_e = random_floats(std::size_t(B) * H * da, rng), q_t = random_floats(std::size_t(B) * H * rank, rng);
      const DeviceBuffer d_k = upload(k_bits), d_c = upload(c_bits), d_qe = upload(q_e), d_qt = upload(q_t),
                         d_len = upload(lengths);
      DeviceBuffer d_out(sizeof(float) * std::size_t(B) * H * rank);
      cuda::CompressedDecodeArgs args;
      args.batch = B;
      args.heads = H;
      args.kv_heads = G;
      args.r = r;
      args.rank = rank;
      args.max_context = T;
      args.scale = scale;
      args.cache_type = type;
      args.q_elite = d_qe.as<float>();
      args.q_latent = d_qt.as<float>();
      args.k_elite = d_k.ptr;
      args.latent = d_c.ptr;
      args.lengths = d_len.as<int>();
      args.out = d_out.as<float>();
      DeviceBuffer workspace(cuda::compressed_decode_workspace(args));
      cuda::compressed_decode(args, workspace.ptr, nullptr);
      cuda_check(cudaDeviceSynchronize(), "compressed decode");
      std::vector<float> got(std::size_t(B) * H * rank), want(got.size());
      cuda_check(cudaMemcpy(got.data(), d_out.ptr, got.size() * sizeof(float), cudaMemcpyDeviceToHost), "download");
      compressed_decode_reference({B, H, G, T, scale}, r, rank, q_e.data(), q_t.data(), k_rounded.data(),
                                  c_rounded.data(), lengths.data(), want.data());
      const double error = nmse(got, want);

      // The full-cache baseline at the same batch and context (K and V of every KV head), checked
      // the same way: its speed means nothing unless it computes attention.
      std::vector<float> fk_rounded, fv_rounded;
      const auto fk_bits = random_cache(std::size_t(B) * T * G * dh, bf16, rng, fk_rounded);
      const auto fv_bits = random_cache(std::size_t(B) * T * G * dh, bf16, rng, fv_rounded);
      const auto q = random_floats(std::size_t(B) * H * dh, rng);
      const DeviceBuffer d_fk = upload(fk_bits), d_fv = upload(fv_bits), d_q = upload(q);
      DeviceBuffer d_fout(sizeof(float) * std::size_t(B) * H * dh);
      const float full_scale = float(1.0 / std::sqrt(double(dh)));
      cuda::FullDecodeArgs full{B, H, G, dh, T, full_scale, type, d_q.as<float>(), d_fk.ptr,
                                d_fv.ptr, d_len.as<int>(), d_fout.as<float>()};
      DeviceBuffer full_workspace(cuda::full_decode_workspace(full));
      cuda::full_decode(full, full_workspace.ptr, nullptr);
      cuda_check(cudaDeviceSynchronize(), "full-cache decode");
      std::vector<float> full_got(std::size_t(B) * H * dh), full_want(full_got.size());
      cuda_check(cudaMemcpy(full_got.data(), d_fout.ptr, full_got.size() * sizeof(float), cudaMemcpyDeviceToHost),
                 "download");
      full_decode_reference({B, H, G, T, full_scale}, dh, q.data(), fk_rounded.data(), fv_rounded.data(),
                            lengths.data(), full_want.data());
      const double full_error = nmse(full_got, full_want);

      const bool pass = error <= options.tolerance && full_error <= options.tolerance;
      ok = ok && pass;
      nlohmann::json row = {{"batch", B}, {"context", T}, {"heads", H}, {"kv_heads", G}, {"r", r}, {"rank", rank},
                            {"head_dim", dh}, {"cache_dtype", options.cache_dtype}, {"nmse", error},
                            {"full_cache_nmse", full_error}, {"pass", pass}};
      std::printf("%s B=%d T=%d H=%d G=%d r=%d d_kv=%d d_h=%d %s: NMSE %.3g, full cache %.3g (tolerance %.1g)\n",
                  pass ? "ok  " : "FAIL", B, T, H, G, r, rank, dh, options.cache_dtype.c_str(), error, full_error,
                  options.tolerance);
      if (options.bench) {
        double tokens = 0;
        for (int l : lengths) tokens += l;
        const double bytes = tokens * (double(G) * da + rank) * 2;
        const double ms = time_ms([&] { cuda::compressed_decode(args, workspace.ptr, nullptr); }, options.iterations);
        const double full_ms = time_ms([&] { cuda::full_decode(full, full_workspace.ptr, nullptr); }, options.iterations);
        const double gbs = bytes / (ms * 1e-3) / 1e9;
        row["ms"] = ms;
        row["gb_per_s"] = gbs;
        row["fraction_of_peak"] = gbs / peak;
        row["full_cache_ms"] = full_ms;
        row["speedup"] = full_ms / ms;
        std::printf("     %.4f ms, %.1f GB/s (%.1f %% of %.0f GB/s), full cache %.4f ms, speedup %.2f×\n", ms, gbs,
                    100 * gbs / peak, peak, full_ms, full_ms / ms);
      }
      rows.push_back(row);
    }
  const nlohmann::json report = {{"device", prop.name}, {"peak_gb_per_s", peak}, {"tolerance", options.tolerance},
                                 {"seed", options.seed}, {"shapes", rows}};
  write_text_atomically(options.output, report.dump(2) + "\n");
  std::printf("final: cuda-verify shapes=%zu %s device=%s\n", rows.size(), ok ? "pass" : "FAIL", prop.name);
  return ok ? 0 : 1;
}

}  // namespace ekv
