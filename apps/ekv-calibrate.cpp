// ekv-calibrate: capture calibration statistics of the unmodified model (calib.h5).
#include "ekv/core/cli.hpp"
#include "ekv/tools/calibrate.hpp"

int main(int argc, char** argv) {
  ekv::CalibrateOptions options;
  ekv::MergeOptions merge;
  CLI::App* merge_command = nullptr;
  return ekv::tool_main(
      argc, argv,
      {"ekv-calibrate",
       "Run the unmodified model, layer by layer, on N sequences of S tokens sampled (from --seed) out of "
       "calibration text, and store per layer: the Gram sum of the attention inputs (fp64, with its token "
       "count), per-chunk q/k norm sums, and the inputs X of the first K sequences. `merge` sums shards made "
       "from different sequences of the same model.",
       "ekv-calibrate --model model.gguf --text ~/.cache/ekv/corpora/calib.txt -S 512 -N 64 --seed 0 -o calib.h5\n"
       "  ekv-calibrate merge a.h5 b.h5 -o all.h5",
       "ekv-info (describe calib.h5), ekv-select-rope (reads it)"},
      [&](CLI::App& app) {
        options.register_with(app);
        merge_command = app.add_subcommand("merge", "Merge calib.h5 shards of the same model");
        merge.register_with(*merge_command);
      },
      [&] {
        if (merge_command->parsed()) ekv::run_calibrate_merge(merge);
        else ekv::run_calibrate(options);
        return 0;
      });
}
