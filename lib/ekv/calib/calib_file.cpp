#include "ekv/calib/calib_file.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "ekv/core/error.hpp"
#include "ekv/io/artifact_matrix.hpp"

namespace ekv {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {


std::vector<std::uint16_t> to_bf16(const std::vector<float>& values) {
  std::vector<std::uint16_t> out(values.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    out[i] = Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(values[i]));
  return out;
}

std::vector<float> from_bf16(const std::vector<std::uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) {
    const std::uint32_t wide = std::uint32_t(bits[i]) << 16;
    std::memcpy(&out[i], &wide, 4);
  }
  return out;
}

// Eigen matrices are column-major; artifacts are row-major.
std::vector<double> row_major(const Eigen::MatrixXd& m) {
  std::vector<double> out(std::size_t(m.size()));
  Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(out.data(), m.rows(), m.cols()) = m;
  return out;
}

Eigen::MatrixXd from_row_major(const std::vector<double>& values, Eigen::Index rows, Eigen::Index cols) {
  return Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(values.data(), rows,
                                                                                                  cols);
}

}  // namespace

CalibWriter::CalibWriter(const fs::path& path, const std::string& model_fingerprint,
                         const std::vector<ArtifactInput>& inputs)
    : writer_(path, "calib", kCalibFormatVersion, model_fingerprint, inputs) {}

void CalibWriter::write_layer(const LayerStatistics& stats, const std::string& store_dtype, int seq_len) {
  // Finite weights can still overflow the activations; a non-finite Gram or norm sum would poison
  // every later step, so it stops here, named, rather than at whichever reader meets it first.
  for (const auto& [name, m] : {std::pair<const char*, const Eigen::MatrixXd*>{"gram", &stats.gram},
                                {"q_norm_sum", &stats.q_norm_sum}, {"k_norm_sum", &stats.k_norm_sum}})
    EKV_CHECK(m->allFinite(), writer_.path().string(), ": ", layer_dataset(stats.layer, name), ": layer ", stats.layer,
              ": non-finite statistics (the model's activations overflow: huge weights?)");
  const auto d = std::uint64_t(stats.gram.rows());
  writer_.write(layer_dataset(stats.layer, "gram"), std::span<const double>(row_major(stats.gram)), {d, d});
  writer_.set_attribute(layer_dataset(stats.layer, "gram"), "count", stats.count);
  writer_.write(layer_dataset(stats.layer, "q_norm_sum"), std::span<const double>(row_major(stats.q_norm_sum)),
                {std::uint64_t(stats.q_norm_sum.rows()), std::uint64_t(stats.q_norm_sum.cols())});
  writer_.write(layer_dataset(stats.layer, "k_norm_sum"), std::span<const double>(row_major(stats.k_norm_sum)),
                {std::uint64_t(stats.k_norm_sum.rows()), std::uint64_t(stats.k_norm_sum.cols())});
  const std::vector<std::uint64_t> x_shape = {std::uint64_t(stats.kept_sequences), std::uint64_t(seq_len), d};
  // f32 activations deflate by only ~14% (measured) at ~0.3 s per layer of 8 x 512 x 576 on the
  // compute path, so they are stored plain; bf16 ones (chosen to save space) are deflated.
  if (store_dtype == "bf16")
    writer_.write(layer_dataset(stats.layer, "x"), std::span<const std::uint16_t>(to_bf16(stats.x)), x_shape, true);
  else
    writer_.write(layer_dataset(stats.layer, "x"), std::span<const float>(stats.x), x_shape, false);
}

void CalibWriter::finish(const CalibData& data) {
  const auto n = std::uint64_t(data.num_seqs), s = std::uint64_t(data.seq_len);
  writer_.write("/tokens", std::span<const std::int32_t>(data.tokens), {n, s}, true);
  writer_.write("/offsets", std::span<const std::int64_t>(data.offsets), {n});
  writer_.write("/kept_sequences", std::span<const std::int64_t>(data.kept), {std::uint64_t(data.kept.size())});
  writer_.set_attribute("/", "seq_len", std::int64_t(data.seq_len));
  writer_.set_attribute("/", "num_seqs", std::int64_t(data.num_seqs));
  writer_.set_attribute("/", "keep_seqs", std::int64_t(data.keep_seqs));
  writer_.set_attribute("/", "seeds", json(data.seeds).dump());
  writer_.set_attribute("/", "layer_begin", std::int64_t(data.layer_begin));
  writer_.set_attribute("/", "layer_end", std::int64_t(data.layer_end));
  writer_.set_attribute("/", "store_dtype", data.store_dtype);
  writer_.set_attribute("/", "hidden", std::int64_t(data.hidden));
  writer_.set_attribute("/", "heads", std::int64_t(data.heads));
  writer_.set_attribute("/", "kv_heads", std::int64_t(data.kv_heads));
  writer_.set_attribute("/", "head_dim", std::int64_t(data.head_dim));
  writer_.set_attribute("/", "sources", json(data.sources).dump());
  if (data.shard_count > 1)
    writer_.set_attribute("/", "shard", cat(data.shard_index, "/", data.shard_count));
  writer_.commit();
}

void write_calib(const CalibData& data, const fs::path& path, const std::string& model_fingerprint,
                 const std::vector<ArtifactInput>& inputs) {
  CalibWriter writer(path, model_fingerprint, inputs);
  for (const auto& stats : data.layers) writer.write_layer(stats, data.store_dtype, data.seq_len);
  writer.finish(data);
}

CalibData read_calib_header(const ArtifactReader& reader) {
  const std::string file = reader.path().string();
  CalibData data;
  auto positive = [&](const char* name, int& out) { out = reader.int_attribute_in("/", name, 0, INT32_MAX); };
  positive("seq_len", data.seq_len);
  positive("num_seqs", data.num_seqs);
  positive("keep_seqs", data.keep_seqs);
  positive("layer_begin", data.layer_begin);
  positive("layer_end", data.layer_end);
  positive("hidden", data.hidden);
  positive("heads", data.heads);
  positive("kv_heads", data.kv_heads);
  positive("head_dim", data.head_dim);
  EKV_CHECK(data.layer_begin < data.layer_end, file, ": attributes layer_begin/layer_end: empty range [",
            data.layer_begin, ", ", data.layer_end, ")");
  EKV_CHECK(data.keep_seqs <= data.num_seqs, file, ": attribute keep_seqs ", data.keep_seqs, " exceeds num_seqs ",
            data.num_seqs);
  EKV_CHECK(data.kv_heads > 0 && data.head_dim % 2 == 0, file, ": attributes kv_heads/head_dim are invalid");
  data.store_dtype = reader.string_attribute("/", "store_dtype");
  EKV_CHECK(data.store_dtype == "f32" || data.store_dtype == "bf16", file, ": attribute store_dtype: expected f32 "
            "or bf16, found ", data.store_dtype);
  try {
    data.seeds = json::parse(reader.string_attribute("/", "seeds")).get<std::vector<std::uint64_t>>();
    data.sources = json::parse(reader.string_attribute("/", "sources")).get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    fail(cat(file, ": attribute seeds/sources: not a JSON list: ", e.what()));
  }
  if (reader.has_attribute("/", "shard")) {
    const std::string shard = reader.string_attribute("/", "shard");
    EKV_CHECK(parse_shard(shard, data.shard_index, data.shard_count), file, ": attribute shard: expected I/N with ",
              "0 <= I < N, found ", shard);
  }
  const std::int64_t n = data.num_seqs, s = data.seq_len;
  data.tokens = reader.read_i32("/tokens", {n, s});
  data.offsets = reader.read_i64("/offsets", {n});
  data.kept = reader.read_i64("/kept_sequences", {data.keep_seqs});
  for (std::size_t i = 0; i < data.kept.size(); ++i) {
    EKV_CHECK(data.kept[i] >= 0 && data.kept[i] < n, file, ":/kept_sequences: index ", data.kept[i], " outside [0, ",
              n, ")");
    // The rows of every layer's X follow this list: a repeated or reordered entry mislabels them.
    EKV_CHECK(i == 0 || data.kept[i] > data.kept[i - 1], file, ":/kept_sequences: entry ", i, " (", data.kept[i],
              ") does not increase (repeated or reordered sequences)");
  }
  for (std::size_t i = 0; i < data.offsets.size(); ++i)
    EKV_CHECK(data.offsets[i] >= 0, file, ":/offsets: sequence ", i, " starts at ", data.offsets[i],
              ", before the token stream");
  for (std::size_t i = 0; i < data.tokens.size(); ++i)
    EKV_CHECK(data.tokens[i] >= 0, file, ":/tokens: element ", i, " is ", data.tokens[i], ", not a token id");
  return data;
}

namespace {
// A Gram of n real inputs (Σ x xᵀ over tokens) is symmetric, has a non-negative diagonal, obeys
// |G_ij| ≤ √(G_ii G_jj) (Cauchy–Schwarz), and its diagonal is at most n × (1e6)²: ekv refuses
// weights past 1e6 (model_source.cpp), and an RMSNorm's output is its weight times a unit vector.
void require_gram(const Eigen::MatrixXd& gram, std::int64_t count, const std::string& where, int layer) {
  const Eigen::Index d = gram.rows();
  const double largest = std::max(gram.diagonal().maxCoeff(), 0.0);
  EKV_CHECK(gram.diagonal().minCoeff() >= 0, where, ": layer ", layer, ": a negative diagonal entry ",
            gram.diagonal().minCoeff(), " (a Gram's diagonal is a sum of squares)");
  EKV_CHECK(largest <= double(count) * 1e12, where, ": layer ", layer, ": diagonal entry ", largest, " is past ",
            double(count) * 1e12, " (count × (1e6)²: what the largest plausible weights can produce)");
  const double tolerance = 1e-9 * largest;
  for (Eigen::Index i = 0; i < d; ++i)
    for (Eigen::Index j = 0; j < i; ++j) {
      EKV_CHECK(std::abs(gram(i, j) - gram(j, i)) <= tolerance, where, ": layer ", layer, ": not symmetric at (", i,
                ", ", j, "): ", gram(i, j), " vs ", gram(j, i));
      const double bound = std::sqrt(gram(i, i)) * std::sqrt(gram(j, j));  // no underflow of the product
      EKV_CHECK(std::abs(gram(i, j)) <= bound * (1 + 1e-9) + tolerance, where, ": layer ", layer, ": entry (", i, ", ",
                j, ") ", gram(i, j), " exceeds √(G_ii G_jj) ", bound, " (no set of inputs gives that)");
    }
}
}  // namespace

LayerStatistics read_calib_layer(const ArtifactReader& reader, const CalibData& header, int l, bool with_x) {
  const std::string file = reader.path().string();
  EKV_CHECK(l >= header.layer_begin && l < header.layer_end, file, ": layer ", l, " is not in this file (layers ",
            header.layer_begin, ":", header.layer_end, ")");
  const std::int64_t n = header.num_seqs, s = header.seq_len, d = header.hidden, chunks = header.head_dim / 2;
  LayerStatistics stats;
  stats.layer = l;
  stats.gram = from_row_major(reader.read_f64(layer_dataset(l, "gram"), {d, d}), d, d);
  stats.count = reader.int_attribute(layer_dataset(l, "gram"), "count");
  EKV_CHECK(stats.count == n * s, file, ":", layer_dataset(l, "gram"), " attribute count: expected ", n * s,
            " tokens, found ", stats.count);
  require_gram(stats.gram, stats.count, file + ":" + layer_dataset(l, "gram"), l);
  stats.q_norm_sum =
      from_row_major(reader.read_f64(layer_dataset(l, "q_norm_sum"), {header.heads, chunks}), header.heads, chunks);
  stats.k_norm_sum = from_row_major(reader.read_f64(layer_dataset(l, "k_norm_sum"), {header.kv_heads, chunks}),
                                    header.kv_heads, chunks);
  for (const auto& [name, sums] : {std::pair{"q_norm_sum", &stats.q_norm_sum}, std::pair{"k_norm_sum", &stats.k_norm_sum}})
    EKV_CHECK(sums->minCoeff() >= 0, file, ":", layer_dataset(l, name), ": layer ", l, ": a sum of norms is ",
              sums->minCoeff(), " (sums of norms are never negative)");
  const std::vector<std::int64_t> x_shape = {header.keep_seqs, s, d};
  stats.kept_sequences = header.keep_seqs;
  if (with_x)
    stats.x = header.store_dtype == "bf16" ? from_bf16(reader.read_u16(layer_dataset(l, "x"), x_shape))
                                           : reader.read_f32(layer_dataset(l, "x"), x_shape);
  else
    reader.info(layer_dataset(l, "x"));  // present, even when not read
  return stats;
}

CalibData read_calib(const fs::path& path, bool with_x, Provenance* provenance) {
  const ArtifactReader reader(path, "calib", kCalibFormatVersion);
  if (provenance) *provenance = reader.provenance();
  CalibData data = read_calib_header(reader);
  for (int l = data.layer_begin; l < data.layer_end; ++l) data.layers.push_back(read_calib_layer(reader, data, l, with_x));
  return data;
}

bool parse_shard(const std::string& text, int& index, int& count) {
  const auto slash = text.find('/');
  if (slash == std::string::npos) return false;
  try {
    std::size_t used_index = 0, used_count = 0;
    index = std::stoi(text.substr(0, slash), &used_index);
    count = std::stoi(text.substr(slash + 1), &used_count);
    if (used_index != slash || used_count != text.size() - slash - 1) return false;
  } catch (const std::exception&) {
    return false;
  }
  return count >= 1 && index >= 0 && index < count && text[0] != '+' && text[slash + 1] != '+';
}

namespace {

// Slices of a --shard run are parts of one sample: merged in any other way (some missing,
// out of order, mixed with another run) they would not be that sample.
void require_whole_split(const std::vector<fs::path>& shards, const std::vector<CalibData>& headers) {
  const CalibData& first = headers.front();
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const CalibData& h = headers[i];
    if (first.shard_count == 1 && h.shard_count == 1) continue;
    EKV_CHECK(h.shard_count == int(shards.size()) && h.shard_index == int(i) && h.seeds == first.seeds, shards[i].string(),
              ": shard ", h.shard_index, "/", h.shard_count, " (seed ", json(h.seeds).dump(), "): slices of one --shard ",
              "run merge all together and in order (expected ", i, "/", shards.size(), ", seed ",
              json(first.seeds).dump(), ")");
  }
}

}  // namespace

CalibData merge_calib(const std::vector<fs::path>& shards, const fs::path& output) {
  EKV_CHECK(shards.size() >= 2, "calibration merge: give at least two shards");
  std::vector<std::unique_ptr<ArtifactReader>> readers;
  std::vector<CalibData> headers;
  for (const auto& shard : shards) {
    readers.push_back(std::make_unique<ArtifactReader>(shard, "calib", kCalibFormatVersion));
    headers.push_back(read_calib_header(*readers.back()));
  }
  const Provenance& first = readers.front()->provenance();
  require_whole_split(shards, headers);
  CalibData merged = headers.front();
  for (std::size_t i = 1; i < shards.size(); ++i) {
    const CalibData& shard = headers[i];
    const std::string file = shards[i].string();
    const std::string& fingerprint = readers[i]->provenance().model_fingerprint;
    EKV_CHECK(fingerprint == first.model_fingerprint, file, ": model_fingerprint: made from a different model than ",
              shards.front().string(), " (expected ", first.model_fingerprint, ", found ", fingerprint, ")");
    EKV_CHECK(shard.seq_len == merged.seq_len, file, ": seq_len: expected ", merged.seq_len, ", found ", shard.seq_len);
    EKV_CHECK(shard.layer_begin == merged.layer_begin && shard.layer_end == merged.layer_end, file,
              ": layers: expected ", merged.layer_begin, ":", merged.layer_end, ", found ", shard.layer_begin, ":",
              shard.layer_end);
    EKV_CHECK(shard.hidden == merged.hidden && shard.heads == merged.heads && shard.kv_heads == merged.kv_heads &&
                  shard.head_dim == merged.head_dim,
              file, ": model shape differs from ", shards.front().string());
    EKV_CHECK(shard.store_dtype == merged.store_dtype, file, ": store_dtype: expected ", merged.store_dtype,
              ", found ", shard.store_dtype);
    // The same shard twice (or two runs with one seed on one text) would count its statistics twice.
    for (std::size_t j = 0; j < i; ++j)
      EKV_CHECK(shard.tokens != headers[j].tokens, file, ": tokens: the same sampled sequences as ",
                shards[j].string(), " (seeds ", json(shard.seeds).dump(), "): each shard needs its own --seed");
    merged.tokens.insert(merged.tokens.end(), shard.tokens.begin(), shard.tokens.end());
    merged.offsets.insert(merged.offsets.end(), shard.offsets.begin(), shard.offsets.end());
    for (auto index : shard.kept) merged.kept.push_back(index + merged.num_seqs);
    merged.num_seqs += shard.num_seqs;
    merged.keep_seqs += shard.keep_seqs;
    merged.seeds.insert(merged.seeds.end(), shard.seeds.begin(), shard.seeds.end());
    for (const auto& source : shard.sources)
      if (std::find(merged.sources.begin(), merged.sources.end(), source) == merged.sources.end())
        merged.sources.push_back(source);
  }
  if (merged.shard_count > 1) {  // the slices of one sample: the unsharded run's header
    merged.seeds = headers.front().seeds;
    merged.shard_index = 0;
    merged.shard_count = 1;
  }
  std::vector<ArtifactInput> inputs;
  for (const auto& shard : shards) inputs.push_back(file_input(shard, "calib"));
  CalibWriter writer(output, first.model_fingerprint, inputs);
  for (int l = merged.layer_begin; l < merged.layer_end; ++l) {  // one layer of every shard in memory
    LayerStatistics sum = read_calib_layer(*readers.front(), headers.front(), l, true);
    for (std::size_t i = 1; i < shards.size(); ++i) sum.merge(read_calib_layer(*readers[i], headers[i], l, true));
    writer.write_layer(sum, merged.store_dtype, merged.seq_len);
  }
  writer.finish(merged);
  return merged;
}

}  // namespace ekv
