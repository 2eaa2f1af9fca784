// ekv-check: the CPU reference checker: perplexity, and the fidelity and decoding of compressed models.
#include "ekv/core/cli.hpp"
#include "ekv/tools/check.hpp"

int main(int argc, char** argv) {
  ekv::PplOptions ppl;
  ekv::CompareOptions compare;
  ekv::DecodeOptions decode;
  CLI::App *ppl_command = nullptr, *compare_command = nullptr, *decode_command = nullptr;
  return ekv::tool_main(
      argc, argv,
      {"ekv-check",
       "CPU reference checker. `ppl`: perplexity of a model on a text over non-overlapping windows (every token "
       "but the first of a window is scored), ending with a `final: ppl=...` line. `compare`: an ekv-export "
       "folder against its original on held-out text: per layer the attention-block error with the original's "
       "inputs, mean KL(orig‖comp), top-1 agreement, both perplexities, cache bytes per token; markdown on "
       "stdout, JSON to --output. `decode`: token-by-token decoding from the real compressed cache by the "
       "absorbed path, the reconstruct path and the decode pack, each checked against the compressed prefill.",
       "ekv-check compare --model model.gguf --compressed out/model-elitekv --text eval.txt -o report.json\n"
       "  ekv-check decode --compressed out/model-elitekv --model model.gguf --text eval.txt --steps 64",
       "ekv-export (makes the compressed folder), ekv-info, ekv-convert"},
      [&](CLI::App& app) {
        app.require_subcommand(1);
        ppl_command = app.add_subcommand("ppl", "Perplexity of a model on a text file");
        ppl.register_with(*ppl_command);
        compare_command = app.add_subcommand("compare", "Fidelity of a compressed model to its original");
        compare.register_with(*compare_command);
        decode_command = app.add_subcommand("decode", "Decode from the compressed cache; all paths must agree");
        decode.register_with(*decode_command);
      },
      [&] {
        if (ppl_command->parsed()) ekv::run_check_ppl(ppl);
        if (compare_command->parsed()) ekv::run_check_compare(compare);
        if (decode_command->parsed()) ekv::run_check_decode(decode);
        return 0;
      });
}
