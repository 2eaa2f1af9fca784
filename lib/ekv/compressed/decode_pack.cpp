#include "ekv/compressed/decode_pack.hpp"

#include <cmath>

#include "ekv/compressed/decode_reference.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/io/artifact_matrix.hpp"
#include "ekv/model/rope_frequencies.hpp"

namespace ekv {

namespace {

template <class Dense>
std::span<const float> floats(const Dense& m) { return {m.data(), std::size_t(m.size())}; }

std::vector<Matrix> unstacked(const std::vector<float>& flat, int heads, Eigen::Index rows, Eigen::Index cols) {
  std::vector<Matrix> parts;
  for (int h = 0; h < heads; ++h)
    parts.push_back(Eigen::Map<const Matrix>(flat.data() + std::size_t(h) * std::size_t(rows * cols), rows, cols));
  return parts;
}


// Checked before the writer creates its file.
std::int64_t checked_positions(const ModelConfig& c, std::int64_t positions, const std::filesystem::path& path) {
  EKV_CHECK(c.elitekv.enabled(), path.string(), ": a decode pack needs an EliteKV config");
  EKV_CHECK(positions > 0 && positions <= c.context, path.string(), ": pack positions ", positions, " outside [1, ",
            c.context, "]");
  return positions;
}

// Rotates the elite dims of one head (k_e layout) with the pack's table row of `position`.
void rotate_with_table(float* head, const PackLayer& layer, const PackHeader& h, int kv_head, std::int64_t position) {
  const int r = h.r;
  const std::size_t offset = (std::size_t(position) * std::size_t(h.kv_heads) + std::size_t(kv_head)) * std::size_t(r);
  for (int i = 0; i < r; ++i) {
    const float cs = layer.rope_cos[offset + std::size_t(i)], sn = layer.rope_sin[offset + std::size_t(i)];
    const float x1 = head[i], x2 = head[i + r];
    head[i] = x1 * cs - x2 * sn;
    head[i + r] = x2 * cs + x1 * sn;
  }
}
}  // namespace

DecodePackWriter::DecodePackWriter(const ModelConfig& config, std::int64_t positions, std::string cache_dtype,
                                   const std::filesystem::path& path, const std::vector<ArtifactInput>& inputs)
    : config_(config), positions_(checked_positions(config, positions, path)), cache_dtype_(std::move(cache_dtype)),
      rope_(rope_frequencies(config), positions),
      // The model fingerprint is set at commit: ekv-export knows it once model.safetensors is written.
      writer_(path, "decode-pack", kDecodePackFormatVersion, "", inputs), added_(std::size_t(config.layers), false) {}

void DecodePackWriter::add_layer(int l, const LayerWeights& w) {
  const ModelConfig& c = config_;
  EKV_CHECK(l >= 0 && l < c.layers && !added_[std::size_t(l)], writer_.path().string(), ": layer ", l,
            " added twice or outside [0, ", c.layers, ")");
  added_[std::size_t(l)] = true;
  const int H = c.heads, G = c.kv_heads, dh = c.head_dim, g = c.group_size(), r = c.elitekv.r, half = dh / 2;
  const int rest = dh - 2 * r;
  const auto& elite = c.elitekv.elite[std::size_t(l)];
  const auto rank = std::uint64_t(w.kv_a.rows()), d = std::uint64_t(c.hidden);
  const bool biased = w.bq.size() > 0;
  // W̃_q is H × d_kv × d: at 7B shapes about 1 GiB a layer, so it is written head by head.
  writer_.create_f32(layer_dataset(l, "wq_absorbed"), {std::uint64_t(H), rank, d});
  std::vector<float> wq_elite, bq_elite, bq_absorbed;
  for (int h = 0; h < H; ++h) {
    const int j = h / g;
    const std::vector<int> rest_dims = c.elitekv.rest_dims(l, j, dh);
    Matrix elite_rows(2 * r, c.hidden), rest_rows(rest, c.hidden);
    for (int i = 0; i < r; ++i) {
      elite_rows.row(i) = w.wq.row(h * dh + elite[std::size_t(j)][std::size_t(i)]);
      elite_rows.row(r + i) = w.wq.row(h * dh + elite[std::size_t(j)][std::size_t(i)] + half);
    }
    for (int m = 0; m < rest; ++m) rest_rows.row(m) = w.wq.row(h * dh + rest_dims[std::size_t(m)]);
    wq_elite.insert(wq_elite.end(), elite_rows.data(), elite_rows.data() + elite_rows.size());
    // Products in fp64: the pack is a reference, its rounding should be the storage's only.
    const Matrix absorbed =
        (w.k_b.middleRows(j * rest, rest).cast<double>().transpose() * rest_rows.cast<double>()).cast<float>();
    writer_.write_f32_block(layer_dataset(l, "wq_absorbed"), std::uint64_t(h), floats(absorbed));
    if (!biased) continue;
    Eigen::VectorXd elite_bias(2 * r), rest_bias(rest);
    for (int i = 0; i < r; ++i)
      for (int part = 0; part < 2; ++part)
        elite_bias[part * r + i] = w.bq[h * dh + elite[std::size_t(j)][std::size_t(i)] + part * half];
    for (int m = 0; m < rest; ++m) rest_bias[m] = w.bq[h * dh + rest_dims[std::size_t(m)]];
    const Vector elite_bias_f = elite_bias.cast<float>();
    const Vector absorbed_bias = (w.k_b.middleRows(j * rest, rest).cast<double>().transpose() * rest_bias).cast<float>();
    bq_elite.insert(bq_elite.end(), elite_bias_f.data(), elite_bias_f.data() + elite_bias_f.size());
    bq_absorbed.insert(bq_absorbed.end(), absorbed_bias.data(), absorbed_bias.data() + absorbed_bias.size());
  }
  writer_.write(layer_dataset(l, "wq_elite"), std::span<const float>(wq_elite), {std::uint64_t(H), std::uint64_t(2 * r), d});
  writer_.write(layer_dataset(l, "wk_rope"), floats(w.wk_rope), {std::uint64_t(w.wk_rope.rows()), d});
  writer_.write(layer_dataset(l, "kv_a"), floats(w.kv_a), {rank, d});
  writer_.write(layer_dataset(l, "b_v"), floats(w.v_b), {std::uint64_t(w.v_b.rows()), rank});
  writer_.write(layer_dataset(l, "wo"), floats(w.wo), {d, std::uint64_t(w.wo.cols())});
  if (biased) {
    Eigen::VectorXd value_bias(H * dh);  // each query head's share of its KV head's value bias
    for (int h = 0; h < H; ++h) value_bias.segment(h * dh, dh) = w.bv.segment((h / g) * dh, dh).cast<double>();
    const Vector bo = (w.wo.cast<double>() * value_bias).cast<float>();
    writer_.write(layer_dataset(l, "bq_elite"), std::span<const float>(bq_elite), {std::uint64_t(H), std::uint64_t(2 * r)});
    writer_.write(layer_dataset(l, "bq_absorbed"), std::span<const float>(bq_absorbed), {std::uint64_t(H), rank});
    writer_.write(layer_dataset(l, "bk_rope"), floats(w.bk_rope), {std::uint64_t(w.bk_rope.size())});
    writer_.write(layer_dataset(l, "bo"), floats(bo), {d});
  }
  std::vector<std::int32_t> chunks;
  std::vector<float> cos_table, sin_table;
  for (const auto& set : elite) chunks.insert(chunks.end(), set.begin(), set.end());
  for (std::int64_t m = 0; m < positions_; ++m)
    for (int j = 0; j < G; ++j)
      for (int ch : elite[std::size_t(j)]) {
        cos_table.push_back(rope_.cos(m)[ch]);
        sin_table.push_back(rope_.sin(m)[ch]);
      }
  writer_.write(layer_dataset(l, "elite_chunks"), std::span<const std::int32_t>(chunks), {std::uint64_t(G), std::uint64_t(r)});
  writer_.write(layer_dataset(l, "rope_cos"), std::span<const float>(cos_table), {std::uint64_t(positions_), std::uint64_t(G), std::uint64_t(r)});
  writer_.write(layer_dataset(l, "rope_sin"), std::span<const float>(sin_table), {std::uint64_t(positions_), std::uint64_t(G), std::uint64_t(r)});
}

void DecodePackWriter::commit(const std::string& model_fingerprint) {
  const ModelConfig& c = config_;
  for (int l = 0; l < c.layers; ++l)
    EKV_CHECK(added_[std::size_t(l)], writer_.path().string(), ": layer ", l, " was never added");
  for (const auto& [name, value] : std::vector<std::pair<const char*, std::int64_t>>{
           {"heads", c.heads}, {"kv_heads", c.kv_heads}, {"head_dim", c.head_dim}, {"hidden", c.hidden},
           {"r", c.elitekv.r}, {"layers", c.layers}, {"positions", positions_}})
    writer_.set_attribute("/", name, value);
  writer_.set_attribute("/", "cache_dtype", cache_dtype_);
  writer_.set_attribute("/", "softmax_scale", 1.0 / std::sqrt(double(c.head_dim)));
  writer_.set_attribute("/", "model_fingerprint", model_fingerprint);
  writer_.commit();
}

void write_decode_pack(const ModelConfig& c, const std::function<LayerWeights(int)>& layer, std::int64_t positions,
                       const std::string& cache_dtype, const std::filesystem::path& path,
                       const std::string& model_fingerprint, const std::vector<ArtifactInput>& inputs) {
  DecodePackWriter writer(c, positions, cache_dtype, path, inputs);
  Progress progress("decode pack", std::uint64_t(c.layers), "layers");
  for (int l = 0; l < c.layers; ++l) {
    writer.add_layer(l, layer(l));
    progress.advance();
  }
  writer.commit(model_fingerprint);
  progress.finish();
}

PackHeader read_pack_header(const ArtifactReader& pack) {
  PackHeader h;
  h.heads = int(pack.int_attribute("/", "heads"));
  h.kv_heads = int(pack.int_attribute("/", "kv_heads"));
  h.head_dim = int(pack.int_attribute("/", "head_dim"));
  h.hidden = int(pack.int_attribute("/", "hidden"));
  h.r = int(pack.int_attribute("/", "r"));
  h.layers = int(pack.int_attribute("/", "layers"));
  h.positions = pack.int_attribute("/", "positions");
  h.cache_dtype = pack.string_attribute("/", "cache_dtype");
  h.softmax_scale = pack.float_attribute("/", "softmax_scale");
  const std::string file = pack.path().string();
  EKV_CHECK(h.heads > 0 && h.kv_heads > 0 && h.heads % h.kv_heads == 0 && h.head_dim > 0 && h.head_dim % 2 == 0 &&
                h.r >= 0 && 2 * h.r <= h.head_dim && h.hidden > 0 && h.layers > 0 && h.positions > 0,
            file, ": root attributes heads/kv_heads/head_dim/r/hidden/layers/positions are inconsistent");
  return h;
}

PackLayer read_pack_layer(const ArtifactReader& pack, const PackHeader& h, int l) {
  EKV_CHECK(l >= 0 && l < h.layers, pack.path().string(), ": layer ", l, " outside [0, ", h.layers, ")");
  PackLayer layer;
  const std::int64_t d = h.hidden, r2 = 2 * h.r;
  const DatasetInfo a = pack.info(layer_dataset(l, "kv_a"));
  EKV_CHECK(a.shape.size() == 2, pack.path().string(), ": ", a.name, ": expected [d_kv, d]");
  layer.rank = int(a.shape[0]);
  layer.wq_elite = unstacked(pack.read_f32(layer_dataset(l, "wq_elite"), {h.heads, r2, d}), h.heads, r2, d);
  layer.wq_absorbed = unstacked(pack.read_f32(layer_dataset(l, "wq_absorbed"), {h.heads, layer.rank, d}), h.heads, layer.rank, d);
  layer.wk_rope = read_matrix(pack, layer_dataset(l, "wk_rope"), std::int64_t(h.kv_heads) * r2, d);
  layer.kv_a = read_matrix(pack, layer_dataset(l, "kv_a"), layer.rank, d);
  layer.b_v = read_matrix(pack, layer_dataset(l, "b_v"), std::int64_t(h.kv_heads) * h.head_dim, layer.rank);
  layer.wo = read_matrix(pack, layer_dataset(l, "wo"), d, std::int64_t(h.heads) * h.head_dim);
  const auto chunks = pack.read_i32(layer_dataset(l, "elite_chunks"), {h.kv_heads, h.r});
  for (int j = 0; j < h.kv_heads; ++j) {
    layer.elite.emplace_back(chunks.begin() + std::ptrdiff_t(j) * h.r, chunks.begin() + std::ptrdiff_t(j + 1) * h.r);
    EKV_CHECK(is_chunk_set(layer.elite.back(), h.head_dim / 2), pack.path().string(), ": ",
              layer_dataset(l, "elite_chunks"), "[", j, "]: chunks must ascend within [0, ", h.head_dim / 2, ")");
  }
  if (pack.has(layer_dataset(l, "bo"))) {
    const auto rows = [](const std::vector<float>& all, int count, std::int64_t width) {
      std::vector<Vector> out;
      for (int i = 0; i < count; ++i) out.push_back(Eigen::Map<const Vector>(all.data() + i * width, width));
      return out;
    };
    layer.bq_elite = rows(pack.read_f32(layer_dataset(l, "bq_elite"), {h.heads, r2}), h.heads, r2);
    layer.bq_absorbed = rows(pack.read_f32(layer_dataset(l, "bq_absorbed"), {h.heads, layer.rank}), h.heads, layer.rank);
    const auto bk = pack.read_f32(layer_dataset(l, "bk_rope"), {std::int64_t(h.kv_heads) * r2});
    layer.bk_rope = Eigen::Map<const Vector>(bk.data(), Eigen::Index(bk.size()));
    const auto bo = pack.read_f32(layer_dataset(l, "bo"), {d});
    layer.bo = Eigen::Map<const Vector>(bo.data(), Eigen::Index(bo.size()));
  }
  layer.rope_cos = pack.read_f32(layer_dataset(l, "rope_cos"), {h.positions, h.kv_heads, h.r});
  layer.rope_sin = pack.read_f32(layer_dataset(l, "rope_sin"), {h.positions, h.kv_heads, h.r});
  return layer;
}

PackAttention::PackAttention(PackHeader header, PackLayer layer, int sequences)
    : header_(std::move(header)), layer_(std::move(layer)),
      k_elite_(std::size_t(sequences)), latent_(std::size_t(sequences)) {}

Matrix PackAttention::forward(const LayerWeights&, const Matrix& x, int first_sequence, int batch, int seq_len,
                              const CaptureHook&) {
  const PackHeader& h = header_;
  const int H = h.heads, G = h.kv_heads, dh = h.head_dim, g = H / G, r = h.r, rank = layer_.rank;
  EKV_CHECK(first_sequence + batch <= int(k_elite_.size()), "pack attention: sequence ", first_sequence + batch - 1,
            " has no cache");
  Matrix out(x.rows(), h.hidden), heads_out(1, Eigen::Index(H) * dh);
  for (int b = 0; b < batch; ++b) {
    Matrix& k_elite = k_elite_[std::size_t(first_sequence + b)];
    Matrix& latent = latent_[std::size_t(first_sequence + b)];
    for (int s = 0; s < seq_len; ++s) {
      const Eigen::Index row = Eigen::Index(b) * seq_len + s;
      const std::int64_t position = k_elite.rows();
      EKV_CHECK(position < h.positions, "pack attention: position ", position, " beyond the pack's rope tables (",
                h.positions, ")");
      const Eigen::VectorXf xs = x.row(row).transpose();
      Eigen::VectorXf k_new = layer_.wk_rope * xs;
      if (layer_.bk_rope.size()) k_new += layer_.bk_rope;
      for (int j = 0; j < G; ++j) rotate_with_table(k_new.data() + j * 2 * r, layer_, h, j, position);
      k_elite.conservativeResize(position + 1, 2 * r * G);
      latent.conservativeResize(position + 1, rank);
      k_elite.row(position) = k_new.transpose();
      latent.row(position) = (layer_.kv_a * xs).transpose();
      for (int hd = 0; hd < H; ++hd) {
        const int j = hd / g;
        Eigen::VectorXf q_elite = layer_.wq_elite[std::size_t(hd)] * xs;
        Eigen::VectorXf q_absorbed = layer_.wq_absorbed[std::size_t(hd)] * xs;
        if (!layer_.bq_elite.empty()) {
          q_elite += layer_.bq_elite[std::size_t(hd)];
          q_absorbed += layer_.bq_absorbed[std::size_t(hd)];
        }
        rotate_with_table(q_elite.data(), layer_, h, j, position);
        Eigen::VectorXf o_latent(rank);
        decode_head_reference(q_elite.data(), {k_elite.data() + j * 2 * r, std::size_t(k_elite.cols()), 2 * r},
                              q_absorbed.data(), {latent.data(), std::size_t(rank), rank},
                              {latent.data(), std::size_t(rank), rank}, int(position + 1), float(h.softmax_scale),
                              o_latent.data());
        heads_out.middleCols(hd * dh, dh) = (layer_.b_v.middleRows(j * dh, dh) * o_latent).transpose();
      }
      out.row(row) = heads_out * layer_.wo.transpose();
      if (layer_.bo.size()) out.row(row) += layer_.bo.transpose();
    }
  }
  return out;
}

}  // namespace ekv
