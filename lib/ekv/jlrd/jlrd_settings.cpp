#include "ekv/jlrd/jlrd_settings.hpp"

#include <filesystem>

#include "ekv/core/error.hpp"
#include "ekv/core/output_path.hpp"

namespace ekv {

bool JlrdSettings::measures_on_samples() const {
  return chunk_map != ChunkMapChoice::none || weighting != RowWeighting::none || refit_output;
}

void JlrdSettings::check() const {
  EKV_CHECK(!model.empty() && !rope.empty() && !output.empty(), "--model, --rope and --output are required");
  EKV_CHECK(int(!ranks.empty()) + int(!cache_ratios.empty()) + int(budget > 0) == 1,
            "give exactly one of --rank, --cache-ratio, --budget");
  EKV_CHECK(r >= 0, "--r ", r, ": must not be negative");
  EKV_CHECK(!calib.empty() || (svd == SvdBasis::weight && !balance_kv && budget <= 0),
            "--svd whitened, --balance-kv and --budget need --calib");
  for (int rank : ranks) EKV_CHECK(rank >= 1, "--rank ", rank, ": must be at least 1");
  for (double f : cache_ratios) EKV_CHECK(f > 0 && f <= 1, "--cache-ratio ", f, ": must be in (0, 1]");
  EKV_CHECK(budget >= 0 && budget <= 1, "--budget ", budget, ": must be in (0, 1]");
  EKV_CHECK(!measures_on_samples() || (!calib.empty() && attention_seqs > 0),
            "--chunk-map, --weighting and --refit-output measure on stored sequences: they need --calib and "
            "--attention-seqs > 0");
  EKV_CHECK(weighting == RowWeighting::none || (svd == SvdBasis::whitened && mode == FactorMode::joint && !balance_kv),
            "--weighting attention needs --svd whitened and --mode joint, and replaces --balance-kv");
  EKV_CHECK(mode != FactorMode::values || (chunk_map == ChunkMapChoice::none && !balance_kv),
            "--mode values drops the non-elite keys: --chunk-map and --balance-kv have nothing to act on");
  EKV_CHECK(!refit_output || refit_heldout >= 1, "--refit-heldout ", refit_heldout, ": must be at least 1");
  EKV_CHECK(!sequential || refit_output, "--sequential changes what --refit-output fits: give both");
  EKV_CHECK(!refit_stream || (refit_output && !sequential),
            "--refit-stream is where --refit-output fits (not with --sequential, whose streams are the stored sequences)");
  EKV_CHECK(!compensate || sequential, "--compensate closes the gap of --sequential streams: give both");
  EKV_CHECK(mode == FactorMode::joint || budget <= 0, "--budget needs --mode joint (ranks are prefixes of one SVD)");
  // The sweep table lands beside the output: it must not overwrite an input either.
  for (const auto& path : {std::filesystem::path(output), std::filesystem::path(output).replace_extension(".csv")})
    require_output_path(path, {model, rope, calib});
}

LrdOptions JlrdSettings::lrd() const { return {mode, svd, balance_kv, precision}; }

RefineOptions JlrdSettings::refine() const { return {chunk_map, weighting, attention_seqs}; }

std::vector<std::pair<std::string, std::string>> JlrdSettings::recorded() const {
  auto yes_no = [](bool on) { return std::string(on ? "true" : "false"); };
  return {{"mode", name_of(mode)},
          {"svd", name_of(svd)},
          {"balance_kv", yes_no(balance_kv)},
          {"allocation", budget > 0 ? "budget" : "uniform"},
          {"precision", name_of(precision)},
          {"chunk_map", name_of(chunk_map)},
          {"weighting", name_of(weighting)},
          {"refit_output", yes_no(refit_output)},
          {"refit_stream", yes_no(refit_stream)},
          {"sequential", yes_no(sequential)},
          {"compensate", yes_no(compensate)}};
}

}  // namespace ekv
