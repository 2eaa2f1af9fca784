// ekv-check: the CPU reference checker (perplexity today; fidelity of compressed models later).
#include "ekv/core/cli.hpp"
#include "ekv/tools/check.hpp"

int main(int argc, char** argv) {
  ekv::PplOptions ppl;
  CLI::App* ppl_command = nullptr;
  return ekv::tool_main(
      argc, argv,
      {"ekv-check",
       "CPU reference checker. `ppl`: perplexity of a model on a text over non-overlapping windows (every token "
       "but the first of a window is scored), ending with a `final: ppl=...` line.",
       "ekv-check ppl --model ~/.cache/ekv/SmolLM2-135M-Instruct.Q4_1.gguf --text ~/.cache/ekv/corpora/eval.txt "
       "--window 512",
       "ekv-info, ekv-convert"},
      [&](CLI::App& app) {
        app.require_subcommand(1);
        ppl_command = app.add_subcommand("ppl", "Perplexity of a model on a text file");
        ppl.register_with(*ppl_command);
      },
      [&] {
        if (ppl_command->parsed()) ekv::run_check_ppl(ppl);
        return 0;
      });
}
