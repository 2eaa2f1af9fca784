// ekv-jlrd: J-LRD factorization of the non-elite keys and values into one cached latent.
#include "ekv/core/cli.hpp"
#include "ekv/tools/jlrd.hpp"

int main(int argc, char** argv) {
  ekv::JlrdOptions options;
  return ekv::tool_main(
      argc, argv,
      {"ekv-jlrd",
       "Per layer, stack the non-elite key rows of every KV head (elite chunks from rope.h5 at --r) over all value "
       "rows into W_J and factor W_J ≈ B A by SVD: weight SVD (the paper) or whitened by the calibration Gram, "
       "optionally K/V-balanced, jointly (J-LRD) or separately (S-LRD). One decomposition serves every rank of the "
       "sweep; the table (weight, data, logit and attention-output errors, cache ratio) is also written as CSV. "
       "Cache ratio = (2rG + d_kv) / (2 G d_h): rotated elite dims plus the latent, over the full K and V. "
       "--budget F spends the whole model's latent dims where they lower the data error most. "
       "Output-aware options (measured best together on held-out text, the pipeline's default): --chunk-map auto "
       "fits a map for each non-elite chunk in place of its lost rotation, --weighting attention weights key rows by "
       "the queries that read them and value rows by W_o, --refit-output refits W_o by ridge regression on the "
       "stored calibration sequences (calibrate with --keep-seqs 32).",
       "ekv-jlrd --model model.gguf --rope rope.h5 --calib calib.h5 --r 6 --svd whitened --budget 0.25 "
       "--chunk-map auto --weighting attention --refit-output -o jlrd.h5",
       "ekv-select-rope (makes rope.h5), ekv-info (describes jlrd.h5)"},
      [&](CLI::App& app) { options.register_with(app); },
      [&] {
        ekv::run_jlrd(options);
        return 0;
      });
}
