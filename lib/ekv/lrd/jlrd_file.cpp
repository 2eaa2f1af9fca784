#include "ekv/lrd/jlrd_file.hpp"

#include "ekv/core/error.hpp"
#include "ekv/io/artifact_matrix.hpp"
#include "ekv/model/config.hpp"

namespace ekv {

namespace {
std::vector<float> as_floats(const MatrixD& m) {
  std::vector<float> out(std::size_t(m.size()));
  for (Eigen::Index i = 0; i < m.size(); ++i) out[std::size_t(i)] = float(m.data()[i]);
  return out;
}
}  // namespace

JlrdWriter::JlrdWriter(const std::filesystem::path& path, const std::string& model_fingerprint,
                       const std::vector<ArtifactInput>& inputs)
    : writer_(path, "jlrd", kJlrdFormatVersion, model_fingerprint, inputs) {}

void JlrdWriter::write_layer(int layer, const LayerFactors& f, const LowRank& low, const JlrdLayerChoices& choices) {
  const auto rank = std::uint64_t(low.a.rows()), hidden = std::uint64_t(low.a.cols());
  const int keys = f.layout().key_rows;
  const auto values = std::uint64_t(low.b.rows() - keys);
  const std::string a = layer_dataset(layer, "a");
  writer_.write(a, std::span<const float>(as_floats(low.a)), {rank, hidden});
  writer_.write(layer_dataset(layer, "b_k"), std::span<const float>(as_floats(low.b.topRows(keys))),
                {std::uint64_t(keys), rank});
  writer_.write(layer_dataset(layer, "b_v"), std::span<const float>(as_floats(low.b.bottomRows(Eigen::Index(values)))),
                {values, rank});
  std::vector<std::int32_t> key_dims;
  for (int k = 0; k < keys; ++k) {
    key_dims.push_back(f.layout().rows[std::size_t(k)].head);
    key_dims.push_back(f.layout().rows[std::size_t(k)].dim);
  }
  writer_.write(layer_dataset(layer, "key_dims"), std::span<const std::int32_t>(key_dims), {std::uint64_t(keys), 2});
  const Eigen::VectorXd sigma = f.singular_values();
  writer_.write(layer_dataset(layer, "sigma"), std::span<const double>(sigma.data(), std::size_t(sigma.size())),
                {std::uint64_t(sigma.size())});
  writer_.set_attribute(a, "alpha", f.alpha());
  writer_.set_attribute(a, "lambda", f.lambda());
  writer_.set_attribute(a, "chunk_map", choices.chunk_map);
  writer_.set_attribute(a, "floor_unrotated", choices.floor_unrotated);
  writer_.set_attribute(a, "floor_mapped", choices.floor_mapped);
  writer_.set_attribute(a, "key_scale", choices.key_scale);
  if (!choices.maps.empty()) {
    std::vector<double> maps;
    for (const auto& map : choices.maps) maps.insert(maps.end(), map.begin(), map.end());
    const std::string name = layer_dataset(layer, "chunk_maps");
    writer_.write(name, std::span<const double>(maps), {choices.maps.size(), 6});
    writer_.set_attribute(name, "columns", std::string("head,chunk,m00,m01,m10,m11"));
  }
  if (choices.o_proj) {
    const Matrix& wo = *choices.o_proj;
    const std::string name = layer_dataset(layer, "o_proj");
    writer_.write(name, std::span<const float>(wo.data(), std::size_t(wo.size())),
                  {std::uint64_t(wo.rows()), std::uint64_t(wo.cols())});
    writer_.set_attribute(name, "ridge", choices.ridge);
    writer_.set_attribute(name, "heldout_before", choices.heldout_before);
    writer_.set_attribute(name, "heldout_after", choices.heldout_after);
    writer_.set_attribute(name, "fit_after", choices.fit_after);
  }
}

void JlrdWriter::finish(const std::vector<JlrdSweepRow>& sweep, const std::vector<std::int32_t>& ranks,
                        const JlrdMethod& method) {
  std::vector<double> flat;
  for (const auto& row : sweep)
    flat.insert(flat.end(), {double(row.layer), double(row.rank), row.cache_ratio, row.weight_error, row.data_error,
                             row.logit_error, row.output_error, row.block_error});
  writer_.write("/sweep", std::span<const double>(flat), {sweep.size(), 8});
  writer_.set_attribute("/sweep", "columns", std::string(kJlrdSweepColumns));
  writer_.write("/ranks", std::span<const std::int32_t>(ranks), {ranks.size()});
  for (const auto& [name, value] : method.settings) writer_.set_attribute("/", name, value);
  writer_.set_attribute("/", "r", std::int64_t(method.r));
  writer_.set_attribute("/", "layer_begin", std::int64_t(method.layer_begin));
  writer_.set_attribute("/", "layer_end", std::int64_t(method.layer_end));
  writer_.set_attribute("/", "cache_ratio", method.cache_ratio);
  writer_.commit();
}

JlrdFile::JlrdFile(const std::filesystem::path& path) : reader_(path, "jlrd", kJlrdFormatVersion) {
  r_ = reader_.int_attribute_in("/", "r", 0, kMaxHeadDim / 2);
  begin_ = reader_.int_attribute_in("/", "layer_begin", 0, kMaxLayers - 1);
  end_ = reader_.int_attribute_in("/", "layer_end", 1, kMaxLayers);
  EKV_CHECK(begin_ < end_, path.string(), ": root attributes layers ", begin_, ":", end_, " are not a J-LRD result");
  if (reader_.has("/ranks")) {
    ranks_ = reader_.read_i32("/ranks", {end_ - begin_});
    for (int rank : ranks_) EKV_CHECK(rank >= 0, path.string(), ":/ranks: a negative rank ", rank);
  }
}

int JlrdFile::rank(int layer, int hidden) const {
  const DatasetInfo a = reader_.info(layer_dataset(layer, "a"));
  EKV_CHECK(a.shape.size() == 2 && a.shape[1] == std::uint64_t(hidden), path().string(), ": ",
            layer_dataset(layer, "a"), ": expected [d_kv, ", hidden, "]");
  const int rank = int(a.shape[0]);
  if (!ranks_.empty() && layer >= begin_ && layer < end_)
    EKV_CHECK(ranks_[std::size_t(layer - begin_)] == rank, path().string(), ":/ranks: layer ", layer, " says ",
              ranks_[std::size_t(layer - begin_)], " but ", layer_dataset(layer, "a"), " holds ", rank, " rows");
  return rank;
}

std::vector<std::pair<int, int>> JlrdFile::key_dims(int l, int kv_heads, int head_dim) const {
  const int rows = kv_heads * (head_dim - 2 * r_);
  const auto dims = reader_.read_i32(layer_dataset(l, "key_dims"), {rows, 2});
  std::vector<std::pair<int, int>> out;
  for (int row = 0; row < rows; ++row) {
    const int head = dims[std::size_t(2 * row)], dim = dims[std::size_t(2 * row + 1)];
    EKV_CHECK(head >= 0 && head < kv_heads && dim >= 0 && dim < head_dim, path().string(), ":",
              layer_dataset(l, "key_dims"), ": row ", row, ": (head ", head, ", dim ", dim, ") outside ", kv_heads,
              " KV heads × head dim ", head_dim);
    out.emplace_back(head, dim);
  }
  return out;
}

JlrdLayer JlrdFile::layer(int l, int hidden, int heads, int kv_heads, int head_dim) const {
  EKV_CHECK(l >= begin_ && l < end_, path().string(), ": layer ", l, " is outside its layers ", begin_, ":", end_);
  const int rank = this->rank(l, hidden), rest_rows = kv_heads * (head_dim - 2 * r_);
  JlrdLayer out;
  out.a = read_matrix(reader_, layer_dataset(l, "a"), rank, hidden);
  out.b_k = read_matrix(reader_, layer_dataset(l, "b_k"), rest_rows, rank);
  out.b_v = read_matrix(reader_, layer_dataset(l, "b_v"), std::int64_t(kv_heads) * head_dim, rank);
  // Singular values: non-negative, non-increasing (the rank-r factor keeps the r largest).
  const std::string sigma_name = layer_dataset(l, "sigma");
  if (reader_.has(sigma_name)) {
    const auto sigma = reader_.read_f64(sigma_name, {-1});
    for (std::size_t i = 0; i < sigma.size(); ++i)
      EKV_CHECK(sigma[i] >= 0 && (i == 0 || sigma[i] <= sigma[i - 1] * (1 + 1e-12)), path().string(), ":", sigma_name,
                ": element ", i, " (", sigma[i], ") breaks the order of singular values (non-negative, non-increasing)");
  }
  if (reader_.has(layer_dataset(l, "o_proj")))  // refitted by ekv-jlrd --refit-output
    out.o_proj = read_matrix(reader_, layer_dataset(l, "o_proj"), hidden, std::int64_t(heads) * head_dim);
  return out;
}

}  // namespace ekv
