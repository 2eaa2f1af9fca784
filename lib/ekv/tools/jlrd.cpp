#include "ekv/tools/jlrd.hpp"

#include <cstdio>

#include "ekv/core/cli.hpp"
#include "ekv/jlrd/jlrd_run.hpp"
#include "ekv/model/linear.hpp"

namespace ekv {

void JlrdOptions::register_with(CLI::App& app) {
  app.add_option("--model,-m", model, "The model");
  app.add_option("--rope", rope, "rope.h5 from ekv-select-rope (the elite chunks)");
  app.add_option("--calib,-c", calib, "calib.h5: Gram for whitening/balancing/data error, X for attention errors");
  app.add_option("--r", r, "Elite chunks per KV head (at most the rope file's r_max)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  add_choice_option(app, "--mode", mode,
                    "joint (J-LRD), separate (S-LRD baseline), or values (non-elite keys dropped, values factored "
                    "alone: with select-rope --method uniform, the KV-Latent-style baseline)");
  add_choice_option(app, "--svd", svd, "weight (the paper) or whitened by the calibration Gram");
  app.add_flag("--balance-kv", balance_kv, "Scale K rows by ‖W_v X‖/‖W_kn X‖ before factoring");
  add_list_option(app, "--rank", ranks, "Latent sizes d_kv, comma-separated; the first is stored, all are swept");
  add_list_option(app, "--cache-ratio", cache_ratios, "Or target cache ratios (uniform d_kv), comma-separated");
  app.add_option("--budget", budget, "Or one whole-model cache ratio with ranks chosen per layer")
      ->check(unit_fraction());
  app.add_option("--layers", layers, "Layer range a:b (b exclusive); default: the rope file's range");
  add_choice_option(app, "--precision", precision, "SVD in f64, or f32 (LAPACKE_sgesdd: faster on 7B-size layers)");
  app.add_option("--attention-seqs", attention_seqs, "Stored sequences for the attention errors (0: skip)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  add_choice_option(app, "--chunk-map", chunk_map,
                    "Non-elite chunks: none (unrotated), scalar or matrix (a fitted map per chunk folded into W_k), "
                    "per-chunk (scalar or matrix per chunk, whichever fits held-out stored sequences better), "
                    "head (one fitted map over all non-elite dims of each KV head), "
                    "auto (per layer scalar or matrix, whichever measures the lower error)");
  add_choice_option(app, "--weighting", weighting,
                    "none, or attention: weight key rows by the queries that read them and value rows by W_o "
                    "(needs --svd whitened; the key/value balance is chosen per layer by measured error)");
  app.add_flag("--refit-output", refit_output,
               "Refit W_o by ridge regression so the compressed block output matches the original's");
  app.add_flag("--sequential", sequential,
               "With --refit-output: fit each layer on the inputs that the already-compressed layers below produce "
               "(the stored sequences run through both models, GPTQ's order)");
  app.add_flag("--compensate", compensate,
               "With --sequential: the refit target also closes the residual-stream gap the layers below left");
  app.add_flag("--refit-stream", refit_stream,
               "With --refit-output: fit on every sequence of calib.h5 (run again from its tokens, the normal "
               "equations summed as they pass: memory does not grow with the sequences) instead of the stored ones");
  app.add_option("--refit-heldout", refit_heldout, "Sequences (the last) held out to choose the refit's ridge")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--low-memory", low_memory,
               "With --budget: keep no decomposed layer between the two passes (each is decomposed again for the "
               "sweep: same result, more time); chosen by itself when the layers would not fit in a quarter of the "
               "free memory");
  add_threads_option(app, threads);
  app.add_option("--output,-o", output, "Output jlrd.h5 (and a .csv sweep table beside it)");
}

void run_jlrd(const JlrdOptions& options) {
  set_compute_threads(options.threads);
  const JlrdSummary s = run_jlrd_layers(options);
  std::printf("final: jlrd=%s mode=%s svd=%s balance=%s chunk_map=%s weighting=%s refit_output=%s r=%d layers=%d:%d "
              "cache_ratio=%.4f mean_data_error=%.4f mean_output_error=%.4f mean_block_error=%.4f "
              "mean_floor_unrotated=%.4f mean_floor_mapped=%.4f",
              options.output.c_str(), name_of(options.mode).c_str(), name_of(options.svd).c_str(),
              options.balance_kv ? "yes" : "no", name_of(options.chunk_map).c_str(), name_of(options.weighting).c_str(),
              options.refit_output ? "yes" : "no", options.r, s.layer_begin, s.layer_end, s.cache_ratio, s.data_error,
              s.output_error, s.block_error, s.floor_unrotated, s.floor_mapped);
  if (s.refits > 0)
    std::printf(" refit_fit_error=%.4f refit_heldout_before=%.4f refit_heldout_after=%.4f", s.refit_fit_error,
                s.refit_heldout_before, s.refit_heldout_after);
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace ekv
