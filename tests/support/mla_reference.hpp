// A naive fp64 forward pass of an MLA (DeepSeek-format) model, read from the files the way the
// engines read them (llama.cpp's deepseek2 GGUF; transformers' DeepseekV3 folder) and computed
// from their definitions: latent RMSNorm with the engine's epsilon, RoPE on consecutive pairs,
// the engine's softmax scale. The reference the engine-export tests compare ekv's logits with.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <filesystem>
#include <vector>

namespace ekv::test {

struct MlaReference {
  static MlaReference from_gguf(const std::filesystem::path& path);
  static MlaReference from_deepseek_v3(const std::filesystem::path& folder);

  Eigen::MatrixXd logits(const std::vector<std::int32_t>& tokens) const;  // [T, vocab]

  int layers = 0, heads = 0, nope = 0, rot = 0, rank = 0, v_dim = 0;
  double eps = 0, kv_norm_eps = 0, kq_scale = 0;
  std::vector<double> frequencies;  // one per rotary pair
  Eigen::MatrixXd embedding, output;  // output empty: tied
  Eigen::VectorXd final_norm;
  struct Block {
    Eigen::VectorXd attn_norm, kv_norm, ffn_norm;
    Eigen::MatrixXd q, kv_a, kv_b, o, gate, up, down;  // kv_b per head [k_nope; v], HF layout
    // The low-rank query path (q_lora_rank set; q empty then): q = q_b · RMSNorm(q_a x + q_a_bias).
    Eigen::MatrixXd q_a, q_b;
    Eigen::VectorXd q_a_bias, q_a_norm;
    Eigen::VectorXd kv_a_bias, o_bias;  // empty without attention biases
  };
  std::vector<Block> blocks;
};

}  // namespace ekv::test
