// The output-aware options of ekv-jlrd for one layer (docs/method.md §9), in the order they apply:
// non-elite chunk maps folded into W_k, the attention-aware weighted decomposition with its key
// scale β chosen by measured block error, and (after the rank is known) the W_o refit.
// Choices are measured on the layer's stored calibration sequences.
#pragma once

#include <cmath>
#include <memory>
#include <vector>

#include "ekv/lrd/layer_factors.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "ekv/model/weights.hpp"
#include "ekv/refine/chunk_map.hpp"
#include "ekv/refine/head_map.hpp"
#include "ekv/refine/output_refit.hpp"
#include "ekv/refine/sequential_streams.hpp"

namespace ekv {

// The key maps of a layer: none, one kind for every layer, or automatic: per layer the kind
// (none, scalar, matrix) whose floor (block error unfactored) is lowest. Head maps are not among
// automatic's kinds: their lower floor did not carry through the factorization (docs/results.md).
enum class ChunkMapChoice { none, scalar, matrix, per_chunk, head, automatic };
const NameTable<ChunkMapChoice>& name_table(ChunkMapChoice);

// none: the SVD's own row weights; attention: key rows weighted by the queries that read them,
// value rows by W_o, with the key scale β searched per layer (docs/method.md §9).
enum class RowWeighting { none, attention };
const NameTable<RowWeighting>& name_table(RowWeighting);

struct RefineOptions {
  ChunkMapChoice chunk_map = ChunkMapChoice::none;
  RowWeighting weighting = RowWeighting::none;
  int choice_seqs = 2;  // stored sequences that measure each choice
};

// The stored calibration inputs of one layer.
struct LayerSamples {
  const Eigen::MatrixXd* gram = nullptr;
  const std::vector<float>* x = nullptr;  // [sequences, S, d]
  int sequences = 0, seq_len = 0;
};

struct RefinedLayer {
  std::unique_ptr<LayerFactors> factors;
  ChunkMapKind map_kind = ChunkMapKind::none;
  std::vector<ChunkMap> maps;       // map_kind scalar, matrix or per_chunk
  std::vector<HeadMap> head_maps;  // map_kind head
  Matrix wk;  // W_k with the maps folded in (what the latent reconstructs)
  double floor_unrotated = NAN, floor_mapped = NAN;  // block error with no factorization
  double key_scale = NAN;                            // β; NaN when unweighted
};

// target_rank: the d_kv at which β is chosen.
RefinedLayer refine_layer(const LayerWeights& weights, const ModelConfig& config,
                          const std::vector<std::vector<int>>& elite, const LayerSamples& samples,
                          const RopeTable& rope, const LrdOptions& lrd, const RefineOptions& options, int target_rank);

// Head outputs [S, H·d_h] of every stored sequence, of the original layer on x_original and of
// the compressed layer on x_compressed (both [sequences, S, d]; the same for layer-local fits).
struct HeadOutputs {
  std::vector<Matrix> original, compressed;
};
HeadOutputs head_outputs(const LayerWeights& weights, const ModelConfig& config, const std::vector<std::vector<int>>& elite,
                         const JointLayout& layout, const LowRank& factor, const std::vector<float>& x_original,
                         const std::vector<float>& x_compressed, int sequences, int seq_len, const RopeTable& rope);

// The W_o refit at the stored rank, the last `heldout` sequences choosing the ridge: on the
// layer's stored inputs, or with `streams` (--sequential) on the inputs that the compressed
// layers below produce, after which both streams move past this layer. compensate: the target
// also closes the residual-stream gap the layers below left.
OutputRefit refit_layer_output(const LayerWeights& weights, const ModelConfig& config,
                               const std::vector<std::vector<int>>& elite, const JointLayout& layout,
                               const LowRank& factor, const LayerSamples& samples, const RopeTable& rope, int heldout,
                               SequentialStreams* streams, bool compensate);

}  // namespace ekv
