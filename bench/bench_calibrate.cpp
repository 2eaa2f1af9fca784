// Calibration costs, two modes:
//
//   bench_calibrate overhead MODEL TEXT [N] [S]
//       plain forward vs forward + calibration capture (statistics and per-layer writes) over
//       the same N x S tokens in one run: tokens/s of each and the capture overhead.
//   bench_calibrate make-checkpoint DIR LAYERS
//       writes an HF folder with LLaMA-2-7B layer shapes (d 4096, 32 heads, FFN 11008, vocab
//       32000) and random bf16 weights, plus DIR/tokens.safetensors (8 x 512 random ids), for
//       the peak-memory runs of bench/calibrate_memory.sh. Random values: memory test only.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <string>

#include "bench_util.hpp"
#include "ekv/calib/calib_file.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/io/safetensors.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tensor_names.hpp"
#include "ekv/model/tokenizer.hpp"
#include "ekv/tools/calibrate.hpp"

namespace fs = std::filesystem;

namespace {

using ekv::bench::now_seconds;

int overhead(const std::string& model_path, const std::string& text_path, int num_seqs, int seq_len) {
  const auto model = ekv::ModelSource::open(model_path);
  const auto stream = ekv::Tokenizer::for_model(model_path).encode(ekv::read_file(text_path));
  std::vector<std::int32_t> tokens;
  for (const auto offset : ekv::sample_offsets(std::int64_t(stream.size()), seq_len, num_seqs, 0))
    tokens.insert(tokens.end(), stream.begin() + offset, stream.begin() + offset + seq_len);
  const int layers = model->config().layers;
  const double total = double(num_seqs) * seq_len;

  ekv::Forward plain(*model);
  plain.set_micro_batch(8);
  plain.set_keep_weights(true);
  plain.hidden_states(tokens, num_seqs, seq_len, layers - 1);  // warm-up: weights loaded once
  double start = now_seconds();
  plain.hidden_states(tokens, num_seqs, seq_len, layers - 1);
  const double forward_seconds = now_seconds() - start;

  const fs::path out = fs::temp_directory_path() / "ekv-bench-calib.h5";
  ekv::CalibWriter writer(out, model->fingerprint(), {});
  ekv::LayerStatistics current(0, model->config());
  plain.set_capture([&](const ekv::LayerActivations& a) {
    current.add(a, 8);
    if (a.first_sequence + a.batch == num_seqs) {
      writer.write_layer(current, "f32", seq_len);
      current = ekv::LayerStatistics(a.layer + 1, model->config());
    }
  });
  start = now_seconds();
  plain.hidden_states(tokens, num_seqs, seq_len, layers - 1);
  const double calibrate_seconds = now_seconds() - start;
  std::printf("forward: %d x %d tokens, %.1f tokens/s; with calibration capture: %.1f tokens/s; overhead %.1f%%\n",
              num_seqs, seq_len, total / forward_seconds, total / calibrate_seconds,
              100.0 * (calibrate_seconds / forward_seconds - 1.0));
  return 0;
}

int make_checkpoint(const fs::path& dir, int layers) {
  ekv::ModelConfig c;
  c.layers = layers;
  c.hidden = 4096;
  c.heads = 32;
  c.kv_heads = 32;
  c.head_dim = 128;
  c.ffn = 11008;
  c.vocab = 32000;
  c.context = 4096;
  c.rope_theta = 10000;
  c.norm_eps = 1e-5;
  c.bos_token = 1;
  c.eos_token = 2;
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << ekv::config_to_hf(c).dump(2);
  const auto tensors = ekv::expected_tensors(c);
  ekv::SafetensorsWriter writer(dir / "model.safetensors", {{"format", "pt"}});
  for (const auto& t : tensors) writer.declare(t.name, ekv::DType::bf16, t.shape);
  std::mt19937 rng(1);
  ekv::Progress progress("make-checkpoint", tensors.size(), "tensors");
  for (const auto& t : tensors) {
    std::vector<float> values(std::size_t(std::accumulate(t.shape.begin(), t.shape.end(), std::int64_t(1),
                                                          std::multiplies<>())));
    const bool norm = t.shape.size() == 1;
    for (auto& v : values) v = norm ? 1.0f : (float(rng() >> 8) / float(1 << 24) - 0.5f) * 0.04f;
    writer.write_floats(t.name, values);
    progress.advance();
  }
  writer.commit();
  ekv::SafetensorsWriter token_writer(dir / "tokens.safetensors");
  std::vector<std::int32_t> tokens(8 * 512);
  for (auto& token : tokens) token = std::int32_t(rng() % 32000);
  token_writer.declare("tokens", ekv::DType::i32, {std::int64_t(tokens.size())});
  token_writer.write("tokens", std::as_bytes(std::span(tokens)));
  token_writer.commit();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "overhead" && argc >= 4)
    return overhead(argv[2], argv[3], argc > 4 ? std::stoi(argv[4]) : 16, argc > 5 ? std::stoi(argv[5]) : 512);
  if (mode == "make-checkpoint" && argc == 4) return make_checkpoint(argv[2], std::stoi(argv[3]));
  std::fprintf(stderr, "usage: bench_calibrate overhead MODEL TEXT [N] [S] | make-checkpoint DIR LAYERS\n");
  return 2;
}
