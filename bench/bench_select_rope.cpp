// Search time of ekv-select-rope (elite, l1 and l2) for the whole model against one forward pass
// over the same calibration tokens (the kept sequences of calib.h5), in one run.
//
//   bench_select_rope MODEL CALIB [R_MAX] [PAIRS_PER_SEQ]
#include <cstdio>
#include <filesystem>

#include "bench_util.hpp"
#include "ekv/calib/calib_file.hpp"
#include "ekv/core/log.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/tools/select_rope.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_select_rope MODEL CALIB [R_MAX] [PAIRS_PER_SEQ]\n");
    return 2;
  }
  ekv::log::set_level(ekv::log::Level::warn);
  const auto model = ekv::ModelSource::open(argv[1]);
  const ekv::ArtifactReader reader(argv[2], "calib", ekv::kCalibFormatVersion);
  const ekv::CalibData header = ekv::read_calib_header(reader);
  std::vector<std::int32_t> tokens;
  for (auto index : header.kept)
    tokens.insert(tokens.end(), header.tokens.begin() + index * header.seq_len,
                  header.tokens.begin() + (index + 1) * header.seq_len);
  ekv::Forward forward(*model);
  double start = ekv::bench::now_seconds();
  const ekv::Matrix hidden = forward.hidden_states(tokens, header.keep_seqs, header.seq_len);
  for (int s = 0; s < header.keep_seqs; ++s)
    forward.logits(hidden, Eigen::Index(s) * header.seq_len, header.seq_len);
  const double forward_seconds = ekv::bench::now_seconds() - start;
  std::printf("forward over the %d x %d calibration tokens: %.2f s\n", header.keep_seqs, header.seq_len,
              forward_seconds);
  for (const char* objective : {"l2", "l1"}) {
    ekv::SelectRopeOptions options;
    options.model = argv[1];
    options.calib = argv[2];
    options.objective = objective;
    options.r_max = argc > 3 ? std::stoi(argv[3]) : 16;
    options.pairs_per_seq = argc > 4 ? std::stoi(argv[4]) : 4096;
    options.output = (std::filesystem::temp_directory_path() / "ekv-bench-rope.h5").string();
    start = ekv::bench::now_seconds();
    const double search = ekv::run_select_rope(options);
    const double total = ekv::bench::now_seconds() - start;
    std::printf("elite/%s: search %.2f s (%.2f x the forward), whole tool run %.2f s (%.2f x)\n", objective, search,
                search / forward_seconds, total, total / forward_seconds);
  }
  return 0;
}
