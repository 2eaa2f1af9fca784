// ekv-export: the EliteKV-compressed model as an HF checkpoint plus its decode pack.
#include "ekv/core/cli.hpp"
#include "ekv/tools/export.hpp"

int main(int argc, char** argv) {
  ekv::ExportOptions options;
  ekv::RepackOptions repack;
  CLI::App* pack_command = nullptr;
  return ekv::tool_main(
      argc, argv,
      {"ekv-export",
       "Writes the compressed model: per layer q and o as the original, k_rope_proj (the elite key rows of rope.h5 "
       "at jlrd.h5's r), kv_a_proj (A: the cached latent c = A x), k_b_proj and v_b_proj (B_k, B_v from jlrd.h5), "
       "norms and MLP as the original. The folder is an HF checkpoint (config.json with elitekv_r, "
       "elitekv_elite_chunks, elitekv_kv_rank; model.safetensors; tokenizer.json; configuration_elitekv.py and "
       "modeling_elitekv.py, so transformers loads it with trust_remote_code=True and caches only k_e and c) plus "
       "decode-pack.h5 for decode kernels (absorbed query matrices, B_v, W_o, RoPE tables of the elite chunks). "
       "The inputs must chain: rope.h5 is the file jlrd.h5 was factored with, and all three come from one model. "
       "--format gguf | hf-deepseek writes the same model in a stock engine's latent-attention (MLA) format "
       "instead, exactly: llama.cpp's deepseek2 GGUF, or transformers' DeepseekV3 folder (no remote code), from "
       "the artifacts or from an export folder (--compressed, e.g. a recovered one). They hold selections made "
       "with ekv-select-rope --layout llama.cpp | transformers and one latent rank (ekv-jlrd --cache-ratio); "
       "anything else is refused (a shared chunk) or padded (ranks; the final line gives the cache it costs).",
       "ekv-export --model model.gguf --rope out/rope-elite-l1.h5 --jlrd out/jlrd.h5 -o out/model-elitekv\n"
       "  ekv-export --model model.gguf --compressed out/model-uptrained --format gguf --dtype f16 -o model.gguf\n"
       "  ekv-export pack --compressed out/model-uptrained   # rewrite the pack after the weights changed",
       "ekv-jlrd (makes jlrd.h5), ekv-check compare|decode (fidelity of the export), ekv-info (describes it)"},
      [&](CLI::App& app) {
        options.register_with(app);
        pack_command = app.add_subcommand("pack", "Rewrite DIR/decode-pack.h5 from an export folder's own weights");
        repack.register_with(*pack_command);
      },
      [&] {
        if (pack_command->parsed()) ekv::run_repack(repack);
        else ekv::run_export(options);
        return 0;
      });
}
