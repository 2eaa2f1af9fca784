// Prefill throughput of the fp32 forward pass on real text, and how close its linear layers
// run to OpenBLAS sgemm on the same shapes, in one run.
//
//   bench_prefill MODEL TEXT [--window 512] [--batch 4] [--threads 2] [--repeats 2] [--rss] [--stream]
//
// Prints tokens/s of the whole forward (hidden states + logits of every position), the
// GFLOP/s achieved inside linear layers during the forward, the GFLOP/s of bare sgemm calls
// on the same (N, out, in) shapes with fresh buffers, their ratio, and with --rss the peak
// resident memory. --stream loads each layer's weights anew on every pass (layer-streaming,
// one layer resident) instead of keeping them all after the warm-up.
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "bench_util.hpp"
#include "ekv/compressed/compressed_forward.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tokenizer.hpp"

namespace {

using ekv::bench::now_seconds;
using ekv::bench::peak_rss_kib;

// GFLOP/s of bare sgemm (row-major x [n, in] times Wᵀ, W [out, in]) on one shape, OpenBLAS using
// its own threads: the reference the forward's linear layers are held against.
double sgemm_gflops(int n, int out, int in, int repeats) {
  std::vector<float> x(std::size_t(n) * in), w(std::size_t(out) * in), y(std::size_t(n) * out);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i % 97) * 0.01f;
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(i % 89) * 0.01f;
  auto call = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x.data(), in, w.data(), in, 0.0f,
                y.data(), out);
  };
  call();  // warm-up
  const double start = now_seconds();
  for (int r = 0; r < repeats; ++r) call();
  return 2.0 * n * double(out) * in * repeats / (now_seconds() - start) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_prefill MODEL TEXT [--window N] [--batch B] [--threads T] [--repeats R] "
                         "[--rss] [--stream]\n");
    return 2;
  }
  int window = 512, batch = 4, threads = 2, repeats = 2;
  bool rss = false, stream = false;
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return std::stoi(argv[++i]); };
    if (arg == "--window") window = value();
    else if (arg == "--batch") batch = value();
    else if (arg == "--threads") threads = value();
    else if (arg == "--repeats") repeats = value();
    else if (arg == "--rss") rss = true;
    else if (arg == "--stream") stream = true;
  }
  ekv::set_compute_threads(threads);
  const auto model = ekv::ModelSource::open(argv[1]);
  const std::vector<std::int32_t> all = ekv::Tokenizer::for_model(argv[1]).encode(ekv::read_file(argv[2]));
  const std::size_t needed = std::size_t(window) * std::size_t(batch);
  if (all.size() < needed) {
    std::fprintf(stderr, "the text has %zu tokens, %zu needed\n", all.size(), needed);
    return 1;
  }
  const std::span<const std::int32_t> tokens(all.data(), needed);
  ekv::Forward forward(*model);
  ekv::install_compressed_attention(forward);
  forward.set_keep_weights(!stream);

  // Warm-up pass loads and keeps the weights; timed passes measure compute only.
  forward.hidden_states(tokens, batch, window);
  ekv::reset_linear_stats();
  const double start = now_seconds();
  for (int r = 0; r < repeats; ++r) {
    const ekv::Matrix hidden = forward.hidden_states(tokens, batch, window);
    for (int b = 0; b < batch; ++b) forward.logits(hidden, Eigen::Index(b) * window, window);
  }
  const double seconds = now_seconds() - start;
  const ekv::LinearStats stats = ekv::linear_stats();

  // Bare sgemm on the forward's shapes, weighted by how many FLOPs each shape carried.
  const ekv::ModelConfig& c = model->config();
  const int n = window * batch, q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  const std::vector<std::tuple<int, int, int, double>> shapes = {
      // rows, out, in, calls per forward
      {n, q, c.hidden, c.layers}, {n, kv, c.hidden, 2.0 * c.layers}, {n, c.hidden, q, c.layers},
      {n, c.ffn, c.hidden, 2.0 * c.layers}, {n, c.hidden, c.ffn, c.layers}, {window, c.vocab, c.hidden, batch}};
  openblas_set_num_threads(threads);  // bare sgemm with OpenBLAS's own threading
  double flops = 0, sgemm_seconds = 0;
  for (const auto& [rows, out, in_features, calls] : shapes) {
    const double shape_flops = 2.0 * rows * double(out) * in_features * calls;
    flops += shape_flops;
    sgemm_seconds += shape_flops / (sgemm_gflops(rows, out, in_features, 3) * 1e9);
  }
  const double achieved = stats.flops / stats.seconds / 1e9, bare = flops / sgemm_seconds / 1e9;
  std::printf("prefill: %d x %d tokens, %d threads, %d repeats: %.1f tokens/s (%.2f s per pass)\n", batch, window,
              threads, repeats, double(needed) * repeats / seconds, seconds / repeats);
  std::printf("linear layers: %.1f GFLOP/s achieved in the forward (%.0f%% of its time), bare sgemm on the same "
              "shapes %.1f GFLOP/s, ratio %.3f\n",
              achieved, 100.0 * stats.seconds / seconds, bare, achieved / bare);
  if (rss) std::printf("peak RSS: %.1f MiB\n", peak_rss_kib() / 1024.0);
  return 0;
}
