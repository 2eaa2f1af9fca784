#include "mla_reference.hpp"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ekv/core/error.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/io/safetensors.hpp"

namespace ekv::test {

namespace {
using Dense = Eigen::MatrixXd;

// A row-major [rows, cols] tensor from its stored bytes.
Dense dense(DType dtype, std::span<const std::byte> bytes, std::int64_t rows, std::int64_t cols) {
  std::vector<float> values(std::size_t(rows * cols));
  dequantize(dtype, bytes, values);
  Dense out(rows, cols);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) out(i, j) = values[std::size_t(i * cols + j)];
  return out;
}

Dense gguf_tensor(const GgufFile& f, const std::string& name) {
  const GgufTensorInfo* info = f.find_tensor(name);
  EKV_CHECK(info, f.path().string(), ": no tensor ", name);
  const auto shape = info->shape();
  const std::int64_t cols = shape.back(), rows = std::int64_t(info->elements()) / cols;
  return dense(info->dtype, f.tensor_bytes(*info), rows, cols);
}

Dense st_tensor(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsEntry* e = f.find(name);
  EKV_CHECK(e, f.path().string(), ": no tensor ", name);
  const std::int64_t cols = e->shape.back(), rows = std::int64_t(e->elements()) / cols;
  return dense(e->dtype, f.bytes(*e), rows, cols);
}

Dense rms(const Dense& x, const Eigen::VectorXd& w, double eps) {
  Dense out(x.rows(), x.cols());
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const double scale = 1.0 / std::sqrt(x.row(t).squaredNorm() / double(x.cols()) + eps);
    out.row(t) = (x.row(t).transpose().array() * scale * w.array()).transpose();
  }
  return out;
}

// Rotates the consecutive pairs (2i, 2i+1) of row `pos` of `x`, at position `pos`.
void rope_pairs(Dense& x, Eigen::Index pos, const std::vector<double>& freq) {
  for (std::size_t i = 0; i < freq.size(); ++i) {
    const double a = double(pos) * freq[i], c = std::cos(a), s = std::sin(a);
    const Eigen::Index e = Eigen::Index(2 * i);
    const double x0 = x(pos, e), x1 = x(pos, e + 1);
    x(pos, e) = x0 * c - x1 * s;
    x(pos, e + 1) = x0 * s + x1 * c;
  }
}
}  // namespace

MlaReference MlaReference::from_gguf(const std::filesystem::path& path) {
  const GgufFile f(path);
  const std::string a = "deepseek2.";
  MlaReference m;
  m.layers = int(f.get_uint(a + "block_count"));
  m.heads = int(f.get_uint(a + "attention.head_count"));
  m.rank = int(f.get_uint(a + "attention.kv_lora_rank"));
  m.rot = int(f.get_uint(a + "rope.dimension_count"));
  m.nope = int(f.get_uint(a + "attention.key_length_mla")) - m.rot;
  m.v_dim = int(f.get_uint(a + "attention.value_length_mla"));
  m.eps = m.kv_norm_eps = f.get_float(a + "attention.layer_norm_rms_epsilon");
  double freq_scale = 1.0;
  if (f.has(a + "rope.scaling.type") && f.get_string(a + "rope.scaling.type") == "linear")
    freq_scale = 1.0 / f.get_float(a + "rope.scaling.factor");
  const double base = f.get_float(a + "rope.freq_base");
  for (int i = 0; i < m.rot / 2; ++i) m.frequencies.push_back(freq_scale * std::pow(base, -2.0 * i / m.rot));
  // llama.cpp's deepseek2 with linear scaling: kq_scale = m² / sqrt(key_length_mla), m = 1 + 0.1 ln(1/scale).
  const double ms = 1.0 + 0.1 * std::log(1.0 / freq_scale);
  m.kq_scale = ms * ms / std::sqrt(double(m.nope + m.rot));
  m.embedding = gguf_tensor(f, "token_embd.weight");
  if (f.find_tensor("output.weight")) m.output = gguf_tensor(f, "output.weight");
  m.final_norm = gguf_tensor(f, "output_norm.weight").row(0).transpose();
  for (int l = 0; l < m.layers; ++l) {
    auto t = [&](const char* name) { return gguf_tensor(f, "blk." + std::to_string(l) + "." + name + ".weight"); };
    Block b;
    b.attn_norm = t("attn_norm").row(0).transpose();
    b.kv_norm = t("attn_kv_a_norm").row(0).transpose();
    b.ffn_norm = t("ffn_norm").row(0).transpose();
    b.q = t("attn_q");
    b.kv_a = t("attn_kv_a_mqa");
    const Dense k_b = t("attn_k_b"), v_b = t("attn_v_b");  // [H·rank, nope], [H·v, rank]
    b.kv_b.resize(Eigen::Index(m.heads) * (m.nope + m.v_dim), m.rank);
    for (int h = 0; h < m.heads; ++h) {
      b.kv_b.middleRows(Eigen::Index(h) * (m.nope + m.v_dim), m.nope) =
          k_b.middleRows(Eigen::Index(h) * m.rank, m.rank).transpose();
      b.kv_b.middleRows(Eigen::Index(h) * (m.nope + m.v_dim) + m.nope, m.v_dim) =
          v_b.middleRows(Eigen::Index(h) * m.v_dim, m.v_dim);
    }
    b.o = t("attn_output");
    b.gate = t("ffn_gate");
    b.up = t("ffn_up");
    b.down = t("ffn_down");
    m.blocks.push_back(std::move(b));
  }
  return m;
}

MlaReference MlaReference::from_deepseek_v3(const std::filesystem::path& folder) {
  std::ifstream in(folder / "config.json");
  const nlohmann::json config = nlohmann::json::parse(in);
  EKV_CHECK(config.at("model_type") == "deepseek_v3", folder.string(), ": not a DeepseekV3 config");
  const SafetensorsFile f(folder / "model.safetensors");
  MlaReference m;
  m.layers = config.at("num_hidden_layers");
  m.heads = config.at("num_attention_heads");
  m.rank = config.at("kv_lora_rank");
  m.rot = config.at("qk_rope_head_dim");
  m.nope = config.at("qk_nope_head_dim");
  m.v_dim = config.at("v_head_dim");
  m.eps = config.at("rms_norm_eps");
  m.kv_norm_eps = 1e-6;  // DeepseekV3RMSNorm(kv_lora_rank): its default epsilon
  m.kq_scale = 1.0 / std::sqrt(double(m.nope + m.rot));
  const double theta = config.at("rope_theta");
  const nlohmann::json& scaling = config.at("rope_scaling");
  for (int i = 0; i < m.rot / 2; ++i) {
    double inv = std::pow(theta, -2.0 * i / m.rot);
    if (!scaling.is_null() && scaling.at("rope_type") == "linear") inv /= scaling.at("factor").get<double>();
    if (!scaling.is_null() && scaling.at("rope_type") == "longrope") inv /= scaling.at("short_factor")[std::size_t(i)].get<double>();
    m.frequencies.push_back(inv);
  }
  m.embedding = st_tensor(f, "model.embed_tokens.weight");
  if (!config.at("tie_word_embeddings").get<bool>()) m.output = st_tensor(f, "lm_head.weight");
  m.final_norm = st_tensor(f, "model.norm.weight").row(0).transpose();
  const bool q_lora = !config.at("q_lora_rank").is_null(), biased = config.at("attention_bias").get<bool>();
  for (int l = 0; l < m.layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    auto t = [&](const std::string& name) { return st_tensor(f, prefix + name + ".weight"); };
    auto bias = [&](const std::string& name) { return Eigen::VectorXd(st_tensor(f, prefix + name + ".bias").row(0).transpose()); };
    Block b;
    b.attn_norm = t("input_layernorm").row(0).transpose();
    b.kv_norm = t("self_attn.kv_a_layernorm").row(0).transpose();
    b.ffn_norm = t("post_attention_layernorm").row(0).transpose();
    if (q_lora) {
      b.q_a = t("self_attn.q_a_proj");
      b.q_a_norm = t("self_attn.q_a_layernorm").row(0).transpose();
      b.q_b = t("self_attn.q_b_proj");
      b.q_a_bias = biased ? bias("self_attn.q_a_proj") : Eigen::VectorXd::Zero(b.q_a.rows());
    } else {
      b.q = t("self_attn.q_proj");
    }
    if (biased) {
      b.kv_a_bias = bias("self_attn.kv_a_proj_with_mqa");
      b.o_bias = bias("self_attn.o_proj");
    }
    b.kv_a = t("self_attn.kv_a_proj_with_mqa");
    b.kv_b = t("self_attn.kv_b_proj");
    b.o = t("self_attn.o_proj");
    b.gate = t("mlp.gate_proj");
    b.up = t("mlp.up_proj");
    b.down = t("mlp.down_proj");
    m.blocks.push_back(std::move(b));
  }
  return m;
}

Eigen::MatrixXd MlaReference::logits(const std::vector<std::int32_t>& tokens) const {
  const Eigen::Index T = Eigen::Index(tokens.size());
  Dense h(T, embedding.cols());
  for (Eigen::Index t = 0; t < T; ++t) h.row(t) = embedding.row(tokens[std::size_t(t)]);
  const int qk = nope + rot;
  for (const Block& b : blocks) {
    const Dense x = rms(h, b.attn_norm, eps);
    Dense q;                                     // [T, H·(nope+rot)]
    if (b.q_b.size()) {
      // DeepseekV3RMSNorm(q_lora_rank): its default epsilon, as the latent's.
      const Dense q_a = (x * b.q_a.transpose()).rowwise() + b.q_a_bias.transpose();
      q = rms(q_a, b.q_a_norm, 1e-6) * b.q_b.transpose();
    } else {
      q = x * b.q.transpose();
    }
    Dense kv = x * b.kv_a.transpose();           // [T, rank + rot]
    if (b.kv_a_bias.size()) kv.rowwise() += b.kv_a_bias.transpose();
    const Dense c = rms(kv.leftCols(rank), b.kv_norm, kv_norm_eps);
    Dense k_pe = kv.rightCols(rot);
    for (Eigen::Index t = 0; t < T; ++t) rope_pairs(k_pe, t, frequencies);
    const Dense up = c * b.kv_b.transpose();     // [T, H·(nope+v)]
    Dense attn(T, Eigen::Index(heads) * v_dim);
    for (int hd = 0; hd < heads; ++hd) {
      Dense q_pe = q.middleCols(Eigen::Index(hd) * qk + nope, rot);
      for (Eigen::Index t = 0; t < T; ++t) rope_pairs(q_pe, t, frequencies);
      const Dense q_nope = q.middleCols(Eigen::Index(hd) * qk, nope);
      const Dense k_nope = up.middleCols(Eigen::Index(hd) * (nope + v_dim), nope);
      const Dense v = up.middleCols(Eigen::Index(hd) * (nope + v_dim) + nope, v_dim);
      for (Eigen::Index t = 0; t < T; ++t) {
        Eigen::VectorXd score(t + 1);
        for (Eigen::Index n = 0; n <= t; ++n)
          score[n] = kq_scale * (q_nope.row(t).dot(k_nope.row(n)) + q_pe.row(t).dot(k_pe.row(n)));
        const Eigen::VectorXd p = (score.array() - score.maxCoeff()).exp();
        attn.block(t, Eigen::Index(hd) * v_dim, 1, v_dim) = (p.transpose() * v.topRows(t + 1)) / p.sum();
      }
    }
    h += attn * b.o.transpose();
    if (b.o_bias.size()) h.rowwise() += b.o_bias.transpose();
    const Dense y = rms(h, b.ffn_norm, eps);
    const Dense gate = y * b.gate.transpose(), upm = y * b.up.transpose();
    const Dense act = (gate.array() / (1.0 + (-gate.array()).exp())) * upm.array();
    h += act * b.down.transpose();
  }
  const Dense y = rms(h, final_norm, eps);
  return y * (output.size() ? output : embedding).transpose();
}

}  // namespace ekv::test
