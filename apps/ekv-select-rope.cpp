// ekv-select-rope: which RoPE chunks each KV head keeps (RoPElite), and its baselines.
#include <iostream>

#include "ekv/core/cli.hpp"
#include "ekv/tools/select_rope.hpp"

int main(int argc, char** argv) {
  ekv::SelectRopeOptions options;
  ekv::EvaluateRopeOptions evaluate;
  ekv::MergeRopeOptions merge;
  CLI::App* evaluate_command = nullptr;
  CLI::App* merge_command = nullptr;
  return ekv::tool_main(
      argc, argv,
      {"ekv-select-rope",
       "Per layer and KV head, choose the RoPE frequency chunks that keep their rotation: the greedy RoPElite "
       "search from the empty set (objective l1: mean |Δlogit| over sampled causal pairs; l2: mean squared "
       "Δlogit over all pairs, exact) or a baseline (uniform, high, low, norm). One run stores every r <= "
       "--r-max. `evaluate` compares rope.h5 files on held-out inputs.",
       "ekv-select-rope --model model.gguf --calib calib.h5 --method elite --objective l1 --r-max 16 -o rope.h5\n"
       "  ekv-select-rope evaluate --model model.gguf --calib heldout.h5 --r 2,4,8,16 elite.h5 norm.h5\n"
       "  ekv-select-rope merge layers-0-15.h5 layers-15-30.h5 -o rope.h5",
       "ekv-calibrate (makes calib.h5), ekv-info (describes rope.h5)"},
      [&](CLI::App& app) {
        options.register_with(app);
        evaluate_command = app.add_subcommand("evaluate", "Held-out mean |Δlogit| of rope.h5 files");
        evaluate.register_with(*evaluate_command);
        merge_command = app.add_subcommand("merge", "Join --layers shards into one rope.h5");
        merge.register_with(*merge_command);
      },
      [&] {
        if (evaluate_command->parsed()) ekv::run_evaluate_rope(evaluate, std::cout);
        else if (merge_command->parsed()) ekv::run_merge_rope(merge);
        else ekv::run_select_rope(options);
        return 0;
      });
}
