// Model loading costs on a real model: opening (header + index + validation), dequantizing
// one decoder layer, and the peak resident memory of a process that loads one layer.
//
//   bench_model_load MODEL                 Google Benchmark timings (open, one layer, ends)
//   bench_model_load MODEL --rss LAYER     loads one layer once and prints its peak RSS
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "bench_util.hpp"
#include "ekv/model/model_source.hpp"

namespace {

std::string g_model;

using ekv::bench::peak_rss_kib;

void BM_OpenModel(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(ekv::ModelSource::open(g_model));
}
BENCHMARK(BM_OpenModel)->Unit(benchmark::kMillisecond);

void BM_LoadLayer(benchmark::State& state) {
  const auto model = ekv::ModelSource::open(g_model);
  int layer = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(model->layer(layer));
    layer = (layer + 1) % model->config().layers;
  }
  const auto& c = model->config();
  const double params = double(c.hidden) * (2.0 * c.heads * c.head_dim + 2.0 * c.kv_heads * c.head_dim + 3.0 * c.ffn);
  state.counters["Mparams/s"] = benchmark::Counter(params / 1e6, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_LoadLayer)->Unit(benchmark::kMillisecond);

void BM_LoadGlobals(benchmark::State& state) {
  const auto model = ekv::ModelSource::open(g_model);
  for (auto _ : state) benchmark::DoNotOptimize(model->globals());
}
BENCHMARK(BM_LoadGlobals)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: bench_model_load MODEL [--rss LAYER | benchmark flags]\n");
    return 2;
  }
  g_model = argv[1];
  if (argc == 4 && std::strcmp(argv[2], "--rss") == 0) {
    const long before = peak_rss_kib();
    const auto model = ekv::ModelSource::open(g_model);
    const long opened = peak_rss_kib();
    const ekv::LayerWeights layer = model->layer(std::stoi(argv[3]));
    const long loaded = peak_rss_kib();
    const double fp32_mib = double(layer.wq.size() + layer.wk.size() + layer.wv.size() + layer.wo.size() +
                                   layer.w_gate.size() + layer.w_up.size() + layer.w_down.size()) * 4.0 / 1048576.0;
    std::printf("peak RSS: start %.1f MiB, after open %.1f MiB, after loading layer %s %.1f MiB "
                "(the layer's fp32 weights: %.1f MiB)\n",
                before / 1024.0, opened / 1024.0, argv[3], loaded / 1024.0, fp32_mib);
    return 0;
  }
  argv[1] = argv[0];
  --argc;
  ++argv;
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
