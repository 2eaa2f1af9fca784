#include "ekv/refine/layer_refinement.hpp"

#include <limits>

#include "ekv/core/error.hpp"
#include "ekv/lrd/attention_error.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/refine/attention_weighting.hpp"

namespace ekv {

const NameTable<ChunkMapChoice>& name_table(ChunkMapChoice) {
  static const NameTable<ChunkMapChoice> table{{"none", ChunkMapChoice::none},
                                               {"scalar", ChunkMapChoice::scalar},
                                               {"matrix", ChunkMapChoice::matrix},
                                               {"per-chunk", ChunkMapChoice::per_chunk},
                                               {"head", ChunkMapChoice::head},
                                               {"auto", ChunkMapChoice::automatic}};
  return table;
}

const NameTable<RowWeighting>& name_table(RowWeighting) {
  static const NameTable<RowWeighting> table{{"none", RowWeighting::none}, {"attention", RowWeighting::attention}};
  return table;
}

namespace {
// 4 parameters per chunk: 8 sequences of causal pairs pin them down; more only cost time.
constexpr int kChunkMapSequences = 8;
// Per-chunk maps choose each chunk's kind on these many sequences after the fitted ones.
constexpr int kChunkKindSequences = 4;
// A head map has (d_h − 2r)² parameters per KV head; it is fitted on sequences the floor that
// chooses it does not measure, so its choice is not won by fitting the choosing sequences.
constexpr int kHeadMapSequences = 4;

// The one kind a non-automatic choice names.
ChunkMapKind single_kind(ChunkMapChoice choice) {
  switch (choice) {
    case ChunkMapChoice::scalar: return ChunkMapKind::scalar;
    case ChunkMapChoice::matrix: return ChunkMapKind::matrix;
    case ChunkMapChoice::per_chunk: return ChunkMapKind::per_chunk;
    case ChunkMapChoice::head: return ChunkMapKind::head;
    case ChunkMapChoice::none:
    case ChunkMapChoice::automatic: break;
  }
  fail("chunk maps: " + name_of(choice) + " names no single kind");
}

struct FittedMaps {
  std::vector<ChunkMap> chunks;
  std::vector<HeadMap> heads;
  Matrix wk;
};

FittedMaps fit_maps(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                    const LayerSamples& samples, int choice_seqs, const RopeTable& rope, ChunkMapKind kind) {
  FittedMaps fitted;
  if (kind == ChunkMapKind::head) {
    const int first = samples.sequences >= choice_seqs + kHeadMapSequences ? choice_seqs : 0;
    fitted.heads = fit_head_maps(w, c, elite, *samples.x, first, std::min(kHeadMapSequences, samples.sequences),
                                 samples.seq_len, rope);
    fitted.wk = apply_head_maps(w.wk, c, fitted.heads);
  } else {
    const bool per_chunk = kind == ChunkMapKind::per_chunk;
    EKV_CHECK(!per_chunk || samples.sequences >= 2, "--chunk-map per-chunk needs 2 or more stored sequences (one to "
                                                    "fit, one to choose each chunk's kind); calib.h5 stores ",
              samples.sequences);
    const int heldout = per_chunk ? std::min(kChunkKindSequences, std::max(1, samples.sequences / 3)) : 0;
    fitted.chunks = fit_chunk_maps(w, c, elite, *samples.x, std::min(samples.sequences - heldout, kChunkMapSequences),
                                   samples.seq_len, rope, kind, heldout);
    fitted.wk = apply_chunk_maps(w.wk, c, fitted.chunks);
  }
  return fitted;
}

// Block error of the RoPElite layer with these maps and no factorization.
double floor_error(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                   const Matrix& wk, const LayerSamples& samples, int sequences, const RopeTable& rope) {
  LayerWeights mapped = w;
  mapped.wk = wk;
  JointLayout layout;
  const MatrixD joint = build_joint_matrix(mapped, c, elite, layout);
  return attention_error(w, c, elite, layout, exact_factor(joint), *samples.x, 0, sequences, samples.seq_len, rope).block;
}
}  // namespace

RefinedLayer refine_layer(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                          const LayerSamples& samples, const RopeTable& rope, const LrdOptions& lrd,
                          const RefineOptions& options, int target_rank) {
  RefinedLayer out;
  out.wk = w.wk;
  const bool maps = options.chunk_map != ChunkMapChoice::none;
  const bool automatic = options.chunk_map == ChunkMapChoice::automatic;
  const bool weighted = options.weighting == RowWeighting::attention;
  const int seqs = std::min(options.choice_seqs, samples.sequences);
  if (maps || weighted)
    EKV_CHECK(samples.x && seqs > 0, "chunk maps and attention-aware weights need stored calibration sequences "
                                     "(calib.h5 with --keep-seqs > 0, and --attention-seqs > 0)");
  if (maps) {
    out.floor_unrotated = floor_error(w, c, elite, w.wk, samples, seqs, rope);
    out.floor_mapped = out.floor_unrotated;
    const std::vector<ChunkMapKind> kinds = automatic
                                                ? std::vector<ChunkMapKind>{ChunkMapKind::scalar, ChunkMapKind::matrix}
                                                : std::vector<ChunkMapKind>{single_kind(options.chunk_map)};
    for (ChunkMapKind kind : kinds) {
      FittedMaps fitted = fit_maps(w, c, elite, samples, seqs, rope, kind);
      const double floor = floor_error(w, c, elite, fitted.wk, samples, seqs, rope);
      if (!automatic || floor < out.floor_mapped) {
        out.floor_mapped = floor;
        out.map_kind = kind;
        out.maps = std::move(fitted.chunks);
        out.head_maps = std::move(fitted.heads);
        out.wk = std::move(fitted.wk);
      }
    }
  }
  LayerWeights mapped = w;
  mapped.wk = out.wk;
  JointLayout layout;
  MatrixD joint = build_joint_matrix(mapped, c, elite, layout);
  if (!weighted) {
    out.factors = std::make_unique<LayerFactors>(std::move(joint), std::move(layout), samples.gram, lrd);
    return out;
  }
  EKV_CHECK(samples.gram && lrd.basis == SvdBasis::whitened && lrd.mode == FactorMode::joint,
            "attention-aware weights need --svd whitened, --mode joint and --calib");
  const double centre = balanced_key_scale(joint, layout, attention_row_weights(w, c, layout, *samples.gram, 1.0), *samples.gram);
  double best = std::numeric_limits<double>::infinity();
  for (double step : {0.25, 0.5, 1.0, 2.0, 4.0}) {
    const RowWeights rows = attention_row_weights(w, c, layout, *samples.gram, centre * step);
    auto factors = std::make_unique<LayerFactors>(joint, layout, samples.gram, lrd, &rows);
    const int rank = std::min(target_rank, factors->max_rank());
    const double error =
        attention_error(w, c, elite, layout, factors->factor(rank), *samples.x, 0, seqs, samples.seq_len, rope).block;
    if (error < best) {
      best = error;
      out.key_scale = centre * step;
      out.factors = std::move(factors);
    }
  }
  return out;
}

HeadOutputs head_outputs(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                         const JointLayout& layout, const LowRank& factor, const std::vector<float>& x_original,
                         const std::vector<float>& x_compressed, int sequences, int seq_len, const RopeTable& rope) {
  const std::size_t step = std::size_t(seq_len) * std::size_t(c.hidden);
  EKV_CHECK(x_original.size() >= step * std::size_t(sequences) && x_compressed.size() == x_original.size(),
            "head outputs: ", sequences, " sequences requested, fewer stored");
  HeadOutputs out;
  for (int s = 0; s < sequences; ++s) {
    SequenceOutputs o = attention_outputs(w, c, elite, layout, factor, x_original.data() + std::size_t(s) * step,
                                          x_compressed.data() + std::size_t(s) * step, seq_len, rope);
    out.original.push_back(std::move(o.original));
    out.compressed.push_back(std::move(o.compressed));
  }
  return out;
}

OutputRefit refit_layer_output(const LayerWeights& w, const ModelConfig& c, const std::vector<std::vector<int>>& elite,
                               const JointLayout& layout, const LowRank& factor, const LayerSamples& samples,
                               const RopeTable& rope, int heldout, SequentialStreams* streams, bool compensate) {
  if (!streams) {
    EKV_CHECK(samples.x && samples.sequences > heldout, "--refit-output needs more stored calibration sequences (",
              samples.sequences, ") than --refit-heldout (", heldout, "): calibrate with a larger --keep-seqs");
    const HeadOutputs o =
        head_outputs(w, c, elite, layout, factor, *samples.x, *samples.x, samples.sequences, samples.seq_len, rope);
    return refit_output(w.wo, o.original, o.compressed, heldout);
  }
  streams->enter(w);
  const std::vector<Matrix> gap = compensate ? streams->gap() : std::vector<Matrix>();
  const HeadOutputs o = head_outputs(w, c, elite, layout, factor, streams->original_inputs(),
                                     streams->compressed_inputs(), streams->sequences(), streams->seq_len(), rope);
  OutputRefit refit = refit_output(w.wo, o.original, o.compressed, heldout, compensate ? &gap : nullptr);
  auto stacked = [&](const std::vector<Matrix>& parts, const Matrix& projection) {
    Matrix all(Eigen::Index(parts.size()) * streams->seq_len(), c.hidden), block;
    for (std::size_t s = 0; s < parts.size(); ++s) {
      linear(parts[s], projection, block);
      all.middleRows(Eigen::Index(s) * streams->seq_len(), streams->seq_len()) = block;
    }
    return all;
  };
  streams->leave(w, stacked(o.original, w.wo), stacked(o.compressed, refit.wo));
  return refit;
}

}  // namespace ekv
