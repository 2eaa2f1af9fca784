// ekv-select-rope: which RoPE chunks each KV head keeps (RoPElite), and its baselines.
#include <iostream>

#include "ekv/core/cli.hpp"
#include "ekv/tools/select_rope.hpp"

int main(int argc, char** argv) {
  ekv::SelectRopeOptions options;
  ekv::EvaluateRopeOptions evaluate;
  CLI::App* evaluate_command = nullptr;
  return ekv::tool_main(
      argc, argv,
      {"ekv-select-rope",
       "Per layer and KV head, choose the RoPE frequency chunks that keep their rotation: the greedy RoPElite "
       "search from the empty set (objective l1: mean |Δlogit| over sampled causal pairs; l2: mean squared "
       "Δlogit over all pairs, exact) or a baseline (uniform, high, low, norm). One run stores every r <= "
       "--r-max. `evaluate` compares rope.h5 files on held-out inputs.",
       "ekv-select-rope --model model.gguf --calib calib.h5 --method elite --objective l1 --r-max 16 -o rope.h5\n"
       "  ekv-select-rope evaluate --model model.gguf --calib heldout.h5 elite.h5 norm.h5 --r 2 4 8 16",
       "ekv-calibrate (makes calib.h5), ekv-info (describes rope.h5)"},
      [&](CLI::App& app) {
        options.register_with(app);
        evaluate_command = app.add_subcommand("evaluate", "Held-out mean |Δlogit| of rope.h5 files");
        evaluate.register_with(*evaluate_command);
      },
      [&] {
        if (evaluate_command->parsed()) ekv::run_evaluate_rope(evaluate, std::cout);
        else ekv::run_select_rope(options);
        return 0;
      });
}
