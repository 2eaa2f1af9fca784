// llama.cpp's deepseek2 GGUF of an EliteKV model (docs/formats.md "Engine formats"): the keys and
// tensors that src/models/deepseek2.cpp of llama-cpp-python 0.3.36's llama.cpp loads, with MLA
// (key_length_mla / value_length_mla set, so the cache holds the latent and the rotary key only).
#include <cmath>

#include "ekv/core/error.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/engine/engine_export.hpp"
#include "ekv/engine/mla_model.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/io/gguf_writer.hpp"

namespace ekv {

namespace fs = std::filesystem;

namespace {
// llama.cpp's general.file_type (enum llama_ftype) of a file whose matrices are `dtype`.
std::uint32_t file_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return 0;
    case DType::f16: return 1;
    case DType::q8_0: return 7;
    case DType::bf16: return 32;
    default: fail(cat("gguf: ", dtype_name(dtype), " is not written (f32, f16, bf16, q8_0)"));
  }
}

}  // namespace

EngineExportSummary write_gguf_model(const EngineInput& input, const fs::path& output, DType dtype) {
  const ModelConfig& c = input.config;
  const std::uint32_t ftype = file_type(dtype);
  MlaModel model(input, EngineFormat::gguf);  // refuses what deepseek2 cannot hold, first
  EKV_CHECK(input.original && input.original->format() == "gguf", output.string(), ": the GGUF carries the "
            "tokenizer metadata of the original model, which must be a GGUF (", input.original->path().string(), ")");
  const GgufFile original(input.original->path());
  EKV_CHECK(original.has("tokenizer.ggml.tokens"), input.original->path().string(),
            ": has no tokenizer metadata (tokenizer.ggml.tokens) to carry over");
  const SlotPlan& plan = model.plan();
  const int H = c.heads, dh = c.head_dim, rank = plan.kv_lora_rank, rot = plan.rope_dims(), nope = plan.nope_dim;

  GgufWriter out(output);
  const std::string a = "deepseek2.";
  out.set_string("general.architecture", "deepseek2");
  const std::string& name = input.original->config().name;
  out.set_string("general.name", (name.empty() ? "model" : name) + " (EliteKV)");
  out.set_u32("general.file_type", ftype);
  out.set_u32("general.quantization_version", 2);
  out.set_u32(a + "block_count", std::uint32_t(c.layers));
  out.set_u32(a + "context_length", std::uint32_t(c.context));
  out.set_u32(a + "embedding_length", std::uint32_t(c.hidden));
  out.set_u32(a + "feed_forward_length", std::uint32_t(c.ffn));
  out.set_u32(a + "attention.head_count", std::uint32_t(H));
  out.set_u32(a + "attention.head_count_kv", 1);  // MLA runs as one shared latent head
  out.set_f32(a + "attention.layer_norm_rms_epsilon", float(c.norm_eps));
  out.set_u32(a + "attention.q_lora_rank", 0);  // a plain query projection
  out.set_u32(a + "attention.kv_lora_rank", std::uint32_t(rank));
  out.set_u32(a + "attention.key_length", std::uint32_t(rank + rot));
  out.set_u32(a + "attention.value_length", std::uint32_t(rank));
  out.set_u32(a + "attention.key_length_mla", std::uint32_t(nope + rot));
  out.set_u32(a + "attention.value_length_mla", std::uint32_t(dh));
  out.set_u32(a + "rope.dimension_count", std::uint32_t(rot));
  out.set_f32(a + "rope.freq_base", float(plan.freq_base));
  if (plan.freq_scale != 1.0) {
    out.set_string(a + "rope.scaling.type", "linear");
    out.set_f32(a + "rope.scaling.factor", float(1.0 / plan.freq_scale));
  } else {
    out.set_string(a + "rope.scaling.type", "none");
  }
  out.set_u32(a + "leading_dense_block_count", std::uint32_t(c.layers));  // no mixture of experts
  out.set_u32(a + "expert_feed_forward_length", std::uint32_t(c.ffn));
  out.set_u32(a + "expert_shared_count", 0);
  out.set_u32(a + "vocab_size", std::uint32_t(c.vocab));
  for (const std::string& key : original.metadata_order())
    if (key.rfind("tokenizer.", 0) == 0) out.set(key, *original.find(key));

  // Matrices in `dtype` where their rows are whole blocks (q8_0: 32), else f16; the latent
  // down-projection in f32 (bf16 in a bf16 file): s·A is far below f16's smallest value.
  auto matrix_type = [&](std::int64_t row) {
    return std::uint64_t(row) % dtype_info(dtype).block_elements == 0 ? dtype : DType::f16;
  };
  const DType kv_a_type = dtype == DType::bf16 ? DType::bf16 : DType::f32;
  const std::int64_t d = c.hidden;
  out.declare("token_embd.weight", matrix_type(d), {c.vocab, d});
  out.declare("output_norm.weight", DType::f32, {d});
  if (!c.tied_embeddings) out.declare("output.weight", matrix_type(d), {c.vocab, d});
  auto blk = [](int l, const char* name) { return "blk." + std::to_string(l) + "." + name + ".weight"; };
  for (int l = 0; l < c.layers; ++l) {
    out.declare(blk(l, "attn_norm"), DType::f32, {d});
    out.declare(blk(l, "attn_q"), matrix_type(d), {std::int64_t(H) * (nope + rot), d});
    out.declare(blk(l, "attn_kv_a_mqa"), kv_a_type, {rank + rot, d});
    out.declare(blk(l, "attn_kv_a_norm"), DType::f32, {rank});
    out.declare(blk(l, "attn_k_b"), matrix_type(nope), {H, rank, nope});  // per head B_kᵀ
    out.declare(blk(l, "attn_v_b"), matrix_type(rank), {H, dh, rank});    // per head B_v
    out.declare(blk(l, "attn_output"), matrix_type(std::int64_t(H) * dh), {d, std::int64_t(H) * dh});
    out.declare(blk(l, "ffn_norm"), DType::f32, {d});
    out.declare(blk(l, "ffn_gate"), matrix_type(d), {c.ffn, d});
    out.declare(blk(l, "ffn_down"), matrix_type(c.ffn), {d, c.ffn});
    out.declare(blk(l, "ffn_up"), matrix_type(d), {c.ffn, d});
  }

  Progress progress("write " + output.filename().string(), std::uint64_t(c.layers), "layers");
  out.write("token_embd.weight", model.embedding());
  out.write("output_norm.weight", model.final_norm());
  if (!c.tied_embeddings) out.write("output.weight", model.output());
  for (int l = 0; l < c.layers; ++l) {
    const MlaModel::Layer& layer = model.layer(l);
    const MlaLayer& m = layer.attention;
    // kv_b_proj's per-head blocks [B_k; B_v] split as llama.cpp's converter does: k_b transposed.
    Matrix k_b(Eigen::Index(H) * rank, nope), v_b(Eigen::Index(H) * dh, rank);
    for (int h = 0; h < H; ++h) {
      const Eigen::Index base = Eigen::Index(h) * (nope + dh);
      k_b.middleRows(Eigen::Index(h) * rank, rank) = m.kv_b.middleRows(base, nope).transpose();
      v_b.middleRows(Eigen::Index(h) * dh, dh) = m.kv_b.middleRows(base + nope, dh);
    }
    out.write(blk(l, "attn_norm"), flat_values(layer.original.attn_norm));
    out.write(blk(l, "attn_q"), flat_values(m.q));
    out.write(blk(l, "attn_kv_a_mqa"), flat_values(m.kv_a));
    out.write(blk(l, "attn_kv_a_norm"), flat_values(m.kv_norm));
    out.write(blk(l, "attn_k_b"), flat_values(k_b));
    out.write(blk(l, "attn_v_b"), flat_values(v_b));
    out.write(blk(l, "attn_output"), flat_values(m.o));
    out.write(blk(l, "ffn_norm"), flat_values(layer.original.ffn_norm));
    out.write(blk(l, "ffn_gate"), flat_values(layer.original.w_gate));
    out.write(blk(l, "ffn_down"), flat_values(layer.original.w_down));
    out.write(blk(l, "ffn_up"), flat_values(layer.original.w_up));
    progress.advance();
  }
  out.commit();
  progress.finish();
  return model.summary();
}

}  // namespace ekv
