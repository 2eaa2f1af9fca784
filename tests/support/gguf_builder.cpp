#include "gguf_builder.hpp"

#include <unistd.h>

#include <fstream>
#include <random>

#include "ekv/model/rope_layout.hpp"

namespace ekv::test {

void put_u32(Bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(std::uint8_t(v >> (8 * i)));
}
void put_u64(Bytes& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(std::uint8_t(v >> (8 * i)));
}
void put_string(Bytes& out, const std::string& s) {
  put_u64(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void GgufBuilder::add_u32(const std::string& key, std::uint32_t value) {
  put_string(kv_, key);
  put_u32(kv_, 4);
  put_u32(kv_, value);
  ++kv_count_;
}
void GgufBuilder::add_f32(const std::string& key, float value) {
  put_string(kv_, key);
  put_u32(kv_, 6);
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  put_u32(kv_, bits);
  ++kv_count_;
}
void GgufBuilder::add_bool(const std::string& key, bool value) {
  put_string(kv_, key);
  put_u32(kv_, 7);
  kv_.push_back(value ? 1 : 0);
  ++kv_count_;
}
void GgufBuilder::add_string(const std::string& key, const std::string& value) {
  put_string(kv_, key);
  put_u32(kv_, 8);
  put_string(kv_, value);
  ++kv_count_;
}
void GgufBuilder::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  put_string(kv_, key);
  put_u32(kv_, 9);
  put_u32(kv_, 8);
  put_u64(kv_, values.size());
  for (const auto& v : values) put_string(kv_, v);
  ++kv_count_;
}
void GgufBuilder::add_raw_kv(const Bytes& bytes) {
  kv_.insert(kv_.end(), bytes.begin(), bytes.end());
  ++kv_count_;
}

void GgufBuilder::add_tensor(Tensor tensor) { tensors_.push_back(std::move(tensor)); }

void GgufBuilder::add_f32_tensor(const std::string& name, std::vector<std::uint64_t> ne,
                                 const std::vector<float>& values) {
  Tensor tensor{name, std::move(ne), 0, Bytes(values.size() * 4), std::nullopt};
  std::memcpy(tensor.data.data(), values.data(), tensor.data.size());
  add_tensor(std::move(tensor));
}

namespace {
std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}
}  // namespace

std::size_t GgufBuilder::header_bytes() const {
  std::size_t size = 4 + 4 + 8 + 8 + kv_.size();
  for (const auto& t : tensors_) size += 8 + t.name.size() + 4 + 8 * t.ne.size() + 4 + 8;
  return std::size_t(align_up(size, alignment));
}

Bytes GgufBuilder::build() const {
  Bytes out;
  put_u32(out, magic);
  put_u32(out, version);
  put_u64(out, tensor_count_override.value_or(tensors_.size()));
  put_u64(out, kv_count_override.value_or(kv_count_));
  out.insert(out.end(), kv_.begin(), kv_.end());
  std::uint64_t offset = 0;
  std::vector<std::uint64_t> offsets;
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put_u32(out, std::uint32_t(t.ne.size()));
    for (auto d : t.ne) put_u64(out, d);
    put_u32(out, t.type);
    put_u64(out, t.offset_override.value_or(offset));
    offsets.push_back(offset);
    offset = align_up(offset + t.data.size(), alignment);
  }
  out.resize(align_up(out.size(), alignment), 0);
  const std::size_t data_start = out.size();
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    out.resize(data_start + offsets[i], 0);
    out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
  }
  return out;
}

TinyModel make_tiny_model(std::uint32_t seed, bool biased) {
  TinyModel model;
  ModelConfig& c = model.config;
  c.name = "tiny";
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 8;
  c.hidden = 32;
  c.ffn = 48;
  c.vocab = 40;
  c.context = 256;
  c.rope_theta = 10000;
  c.norm_eps = 1e-5;
  c.tied_embeddings = false;
  c.bos_token = 1;
  c.eos_token = 2;
  if (biased) {
    c.name = "tiny-qwen2";
    c.architecture = "qwen2";
    c.attention_bias = true;
  }
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.2f);
  auto matrix = [&](int rows, int cols) {
    Matrix m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
    return m;
  };
  auto vector = [&](int n) {
    Vector v(n);
    for (int i = 0; i < n; ++i) v[i] = 1.0f + normal(rng);
    return v;
  };
  const int q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  for (int l = 0; l < c.layers; ++l) {
    LayerWeights w;
    w.index = l;
    w.attn_norm = vector(c.hidden);
    w.wq = matrix(q, c.hidden);
    w.wk = matrix(kv, c.hidden);
    w.wv = matrix(kv, c.hidden);
    w.wo = matrix(c.hidden, q);
    if (biased) {
      std::normal_distribution<float> unit(0.0f, 1.0f);
      for (Vector* b : {&w.bq, &w.bk, &w.bv}) {
        b->resize(b == &w.bq ? q : kv);
        for (Eigen::Index i = 0; i < b->size(); ++i) (*b)[i] = unit(rng);
      }
    }
    w.ffn_norm = vector(c.hidden);
    w.w_gate = matrix(c.ffn, c.hidden);
    w.w_up = matrix(c.ffn, c.hidden);
    w.w_down = matrix(c.hidden, c.ffn);
    model.layers.push_back(std::move(w));
  }
  model.globals.embedding = matrix(c.vocab, c.hidden);
  model.globals.final_norm = vector(c.hidden);
  model.globals.output = matrix(c.vocab, c.hidden);
  return model;
}

namespace {
std::vector<float> values_of(const Matrix& m) { return std::vector<float>(m.data(), m.data() + m.size()); }
std::vector<float> values_of(const Vector& v) { return std::vector<float>(v.data(), v.data() + v.size()); }
std::vector<std::uint64_t> ne_of(const Matrix& m) { return {std::uint64_t(m.cols()), std::uint64_t(m.rows())}; }
}  // namespace

GgufBuilder tiny_model_gguf(const TinyModel& model, bool tokenizer) {
  const ModelConfig& c = model.config;
  GgufBuilder b;
  const std::string& a = c.architecture;
  b.add_string("general.architecture", a);
  b.add_string("general.name", c.name);
  b.add_u32(a + ".block_count", c.layers);
  b.add_u32(a + ".context_length", std::uint32_t(c.context));
  b.add_u32(a + ".embedding_length", c.hidden);
  b.add_u32(a + ".feed_forward_length", c.ffn);
  b.add_u32(a + ".attention.head_count", c.heads);
  b.add_u32(a + ".attention.head_count_kv", c.kv_heads);
  b.add_f32(a + ".rope.freq_base", float(c.rope_theta));
  b.add_f32(a + ".attention.layer_norm_rms_epsilon", float(c.norm_eps));
  b.add_u32(a + ".rope.dimension_count", c.head_dim);
  b.add_u32(a + ".vocab_size", c.vocab);
  b.add_u32("tokenizer.ggml.bos_token_id", std::uint32_t(c.bos_token));
  b.add_u32("tokenizer.ggml.eos_token_id", std::uint32_t(c.eos_token));
  if (tokenizer) {
    std::vector<std::string> tokens, merges;  // "A0" is the merge of "A" and "0"
    for (int i = 0; i < c.vocab; ++i) {
      const std::string letter(1, char('A' + i % 26)), digits = std::to_string(i / 26);
      tokens.push_back(letter + digits);
      merges.push_back(letter + " " + digits);
    }
    b.add_string("tokenizer.ggml.model", "gpt2");
    b.add_string_array("tokenizer.ggml.tokens", tokens);
    b.add_string_array("tokenizer.ggml.merges", merges);
  }
  b.add_f32_tensor("token_embd.weight", ne_of(model.globals.embedding), values_of(model.globals.embedding));
  b.add_f32_tensor("output_norm.weight", {std::uint64_t(c.hidden)}, values_of(model.globals.final_norm));
  b.add_f32_tensor("output.weight", ne_of(model.globals.output), values_of(model.globals.output));
  for (const auto& w : model.layers) {
    const std::string p = "blk." + std::to_string(w.index) + ".";
    std::vector<float> q = values_of(w.wq), k = values_of(w.wk);
    if (a == "llama") {  // llama.cpp interleaves llama's RoPE pairs; qwen2 keeps rotate_half
      hf_to_gguf_rope_rows(q, c.heads, c.head_dim, c.hidden);
      hf_to_gguf_rope_rows(k, c.kv_heads, c.head_dim, c.hidden);
    }
    if (w.bq.size()) {
      b.add_f32_tensor(p + "attn_q.bias", {std::uint64_t(w.bq.size())}, values_of(w.bq));
      b.add_f32_tensor(p + "attn_k.bias", {std::uint64_t(w.bk.size())}, values_of(w.bk));
      b.add_f32_tensor(p + "attn_v.bias", {std::uint64_t(w.bv.size())}, values_of(w.bv));
    }
    b.add_f32_tensor(p + "attn_norm.weight", {std::uint64_t(c.hidden)}, values_of(w.attn_norm));
    b.add_f32_tensor(p + "attn_q.weight", ne_of(w.wq), q);
    b.add_f32_tensor(p + "attn_k.weight", ne_of(w.wk), k);
    b.add_f32_tensor(p + "attn_v.weight", ne_of(w.wv), values_of(w.wv));
    b.add_f32_tensor(p + "attn_output.weight", ne_of(w.wo), values_of(w.wo));
    b.add_f32_tensor(p + "ffn_norm.weight", {std::uint64_t(c.hidden)}, values_of(w.ffn_norm));
    b.add_f32_tensor(p + "ffn_gate.weight", ne_of(w.w_gate), values_of(w.w_gate));
    b.add_f32_tensor(p + "ffn_up.weight", ne_of(w.w_up), values_of(w.w_up));
    b.add_f32_tensor(p + "ffn_down.weight", ne_of(w.w_down), values_of(w.w_down));
  }
  return b;
}

void write_file(const std::filesystem::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::filesystem::path temp_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("ekv-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace ekv::test
