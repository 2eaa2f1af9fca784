// jlrd.h5 (ekv.type "jlrd", format version 2; docs/formats.md): what ekv-jlrd writes and
// ekv-export reads. Per layer the factors at the stored rank (A, B_k, B_v, the (head, dim) of
// each B_k row, σ, α, λ) and what the output-aware options chose (chunk maps, β, a refitted
// W_o); the rank sweep of every layer (/sweep) and the stored ranks (/ranks); the method as root
// attributes. Written through an ArtifactWriter (atomic, provenance), read with its checks.
#pragma once

#include <array>
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ekv/io/artifact.hpp"
#include "ekv/lrd/layer_factors.hpp"

namespace ekv {

inline constexpr std::int64_t kJlrdFormatVersion = 2;

// One row of the rank sweep (the CSV beside jlrd.h5 has the same columns).
struct JlrdSweepRow {
  int layer, rank;
  double cache_ratio, weight_error, data_error, logit_error, output_error, block_error;
};
inline constexpr const char* kJlrdSweepColumns =
    "layer,rank,cache_ratio,weight_error,data_error,logit_error,output_error,block_error";

// What the output-aware options chose in one layer (docs/method.md §9), for the record and for
// ekv-export (the refitted W_o).
struct JlrdLayerChoices {
  std::string chunk_map = "none";
  double floor_unrotated = NAN, floor_mapped = NAN, key_scale = 1.0;
  std::vector<std::array<double, 6>> maps;  // head, chunk, m00, m01, m10, m11 (chunk_map != none)
  const Matrix* o_proj = nullptr;           // the refitted W_o, or null when the refit was not kept
  double ridge = NAN, heldout_before = NAN, heldout_after = NAN, fit_after = NAN;
};

// The method, as root attributes ("mode", "svd", … as strings; r and the layer range as ints).
struct JlrdMethod {
  std::vector<std::pair<std::string, std::string>> settings;
  int r = 0, layer_begin = 0, layer_end = 0;
  double cache_ratio = 0;  // elements cached over the full cache, whole file
};

class JlrdWriter {
 public:
  JlrdWriter(const std::filesystem::path& path, const std::string& model_fingerprint,
             const std::vector<ArtifactInput>& inputs);
  // The factors of `layer` cut at low = f.factor(rank), and what the options chose.
  void write_layer(int layer, const LayerFactors& f, const LowRank& low, const JlrdLayerChoices& choices);
  // The sweep, the stored ranks and the method; then the file is committed.
  void finish(const std::vector<JlrdSweepRow>& sweep, const std::vector<std::int32_t>& ranks, const JlrdMethod& method);

 private:
  ArtifactWriter writer_;
};

// The factors of one layer as ekv-export uses them.
struct JlrdLayer {
  Matrix a;    // [d_kv, d]
  Matrix b_k;  // [G(d_h − 2r), d_kv]
  Matrix b_v;  // [G d_h, d_kv]
  std::optional<Matrix> o_proj;  // [d, H d_h] when --refit-output kept one
};

class JlrdFile {
 public:
  explicit JlrdFile(const std::filesystem::path& path);

  const ArtifactReader& artifact() const { return reader_; }
  const std::filesystem::path& path() const { return reader_.path(); }
  int r() const { return r_; }
  int layer_begin() const { return begin_; }
  int layer_end() const { return end_; }
  // d_kv of a layer (rows of its A), checked against the hidden size d.
  int rank(int layer, int hidden) const;
  // (KV head, dim) of each B_k row: G(d_h − 2r) of them.
  std::vector<std::pair<int, int>> key_dims(int layer, int kv_heads, int head_dim) const;
  // Shapes checked against the model: d, H, G, d_h and the file's r.
  JlrdLayer layer(int layer, int hidden, int heads, int kv_heads, int head_dim) const;

 private:
  ArtifactReader reader_;
  int r_ = 0, begin_ = 0, end_ = 0;
  std::vector<std::int32_t> ranks_;  // /ranks, checked against each layer's factor shapes
};

}  // namespace ekv
