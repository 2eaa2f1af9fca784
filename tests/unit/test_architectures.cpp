// Which model families ekv reads (docs/method.md §10): every architecture the method does not
// cover is refused with its name and the reason, from a GGUF and from an HF config; Llama 3's
// RoPE rule in a GGUF (rope_freqs.weight) is recognised and the search sees the scaled
// frequencies; Mistral's HF config is read as LLaMA unless it asks for a sliding window.
#include <gtest/gtest.h>

#include <limits>
#include <tuple>

#include <functional>
#include <nlohmann/json.hpp>

#include "ekv/io/gguf.hpp"
#include "ekv/model/config.hpp"
#include "ekv/model/model_family.hpp"
#include "ekv/model/rope_frequencies.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"

namespace ekv {
namespace {

namespace fs = std::filesystem;

class Architectures : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::temp_dir("architectures"); }
  void TearDown() override { fs::remove_all(dir_); }
  // The tiny model's GGUF under another architecture name, with `edit` applied to the builder.
  std::string gguf_as(const std::string& arch, const std::function<void(test::GgufBuilder&)>& edit = {}) {
    test::TinyModel model = tiny_;
    model.config.architecture = arch;
    test::GgufBuilder builder = test::tiny_model_gguf(model);
    if (edit) edit(builder);
    const fs::path path = dir_ / (arch + ".gguf");
    test::write_file(path, builder.build());
    return path.string();
  }
  ModelConfig read(const std::string& path) { return config_from_gguf(GgufFile(path)); }

  fs::path dir_;
  test::TinyModel tiny_ = test::make_tiny_model(3);
};

TEST_F(Architectures, GgufRefusalsNameTheArchitectureAndTheReason) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"gemma3", "q/k normalisation"},    {"qwen3", "q/k normalisation"},    {"olmo2", "q/k normalisation"},
      {"gemma2", "sliding-window"},       {"cohere2", "sliding-window"},     {"qwen2moe", "mixture-of-experts"},
      {"qwen3moe", "mixture-of-experts"}, {"deepseek2", "latent attention"}, {"mamba", "only llama"},
  };
  for (const auto& [arch, reason] : refused) {
    const std::string path = gguf_as(arch);
    EXPECT_EKV_ERROR(read(path), path, "general.architecture", arch, "not supported", reason);
  }
  // Mixtral's files say llama; their expert count gives them away.
  const std::string mixtral = gguf_as("llama", [](test::GgufBuilder& b) { b.add_u32("llama.expert_count", 8); });
  EXPECT_EKV_ERROR(read(mixtral), mixtral, "llama.expert_count", "mixture-of-experts");
  // An output-projection bias has nowhere to go.
  const std::string biased_o = gguf_as("qwen2", [](test::GgufBuilder& b) {
    b.add_f32_tensor("blk.0.attn_output.bias", {32}, std::vector<float>(32, 0.5f));
  });
  EXPECT_EKV_ERROR(read(biased_o), biased_o, "blk.0.attn_output.bias", "not supported");
  EXPECT_EQ(read(gguf_as("qwen2")).architecture, "qwen2");
}

TEST_F(Architectures, HfRefusalsNameTheFieldAndTheReason) {
  const nlohmann::json base = config_to_hf(tiny_.config);
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"gemma3_text", "q/k normalisation"}, {"qwen3", "q/k normalisation"},        {"olmo2", "q/k normalisation"},
      {"gemma2", "sliding-window"},         {"mixtral", "mixture-of-experts"},    {"qwen2_moe", "mixture-of-experts"},
      {"deepseek_v3", "latent attention"},  {"gpt_neox", "only llama"},
  };
  for (const auto& [type, reason] : refused) {
    nlohmann::json config = base;
    config["model_type"] = type;
    EXPECT_EKV_ERROR(config_from_hf(config, "m/config.json"), "m/config.json", "model_type", type, reason);
  }
  nlohmann::json mistral = base;
  mistral["model_type"] = "mistral";
  mistral["sliding_window"] = nullptr;
  EXPECT_EQ(config_from_hf(mistral, "m/config.json").architecture, "llama");
  mistral["sliding_window"] = 4096;
  EXPECT_EKV_ERROR(config_from_hf(mistral, "m/config.json"), "m/config.json", "sliding_window", "not implemented");
  nlohmann::json qwen = base;
  qwen["model_type"] = "qwen2";
  const ModelConfig read_back = config_from_hf(qwen, "q/config.json");
  EXPECT_TRUE(read_back.attention_bias);  // implied by Qwen2's model type
  EXPECT_EQ(config_to_hf(read_back)["architectures"][0], "Qwen2ForCausalLM");
  qwen["use_sliding_window"] = true;
  EXPECT_EKV_ERROR(config_from_hf(qwen, "q/config.json"), "q/config.json", "sliding");
  nlohmann::json llama_bias = base;
  llama_bias["attention_bias"] = true;
  EXPECT_EKV_ERROR(config_from_hf(llama_bias, "l/config.json"), "l/config.json", "attention_bias", "o_proj");
  nlohmann::json moe = base;
  moe["num_local_experts"] = 8;
  EXPECT_EKV_ERROR(config_from_hf(moe, "l/config.json"), "l/config.json", "mixture-of-experts");
  nlohmann::json yarn = base;
  yarn["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_EKV_ERROR(config_from_hf(yarn, "y/config.json"), "y/config.json", "yarn", "not supported");
}

// Issue 30: the families live in one table; every name a family has reads back as that family,
// and what config.json leaves implied follows the table.
TEST_F(Architectures, TheFamilyTableIsTheOneSourceOfFamilyFacts) {
  EXPECT_EQ(supported_families(), "llama, qwen2");
  for (const std::string name : {"llama", "qwen2"}) {
    const FamilyTraits& family = family_traits(name);
    EXPECT_EQ(family_of_gguf(name), &family);
    EXPECT_EQ(family_refusal(name), "");
    ModelConfig config = tiny_.config;
    config.architecture = name;
    const nlohmann::json written = config_to_hf(config);
    EXPECT_EQ(written["model_type"], std::string(family.hf_model_types.front()));
    EXPECT_EQ(written["architectures"][0], std::string(family.hf_class));
    EXPECT_EQ(written.contains("head_dim"), family.writes_head_dim);
    for (std::string_view type : family.hf_model_types) {
      EXPECT_EQ(family_of_hf_model_type(type), &family);
      nlohmann::json spelled = written;
      spelled["model_type"] = std::string(type);
      const ModelConfig read = config_from_hf(spelled, "m/config.json");
      EXPECT_EQ(read.architecture, name) << type;
      EXPECT_EQ(read.attention_bias, family.implied_qkv_bias) << type;
    }
  }
  EXPECT_EQ(family_of_hf_model_type("mistral"), &family_traits("llama"));
  EXPECT_EQ(family_of_gguf("mistral"), nullptr);  // Mistral's GGUF files say llama
  EXPECT_NE(family_refusal("qwen3").find("q/k normalisation"), std::string::npos);
  EXPECT_NE(family_refusal("gpt_neox").find("only llama, qwen2"), std::string::npos);
  EXPECT_EKV_ERROR(family_traits("gpt2"), "gpt2", "not one of llama, qwen2");
}

// Issue 33: each of these gave a perplexity computed as if the field were absent.
TEST_F(Architectures, HfFieldsThatChangeTheComputationAreRefusedByName) {
  const nlohmann::json base = config_to_hf(tiny_.config);
  const std::vector<std::tuple<std::string, nlohmann::json, std::string>> refused = {
      {"hidden_act", "gelu", "SwiGLU"},
      {"mlp_bias", true, "MLP"},
      {"use_sliding_window", true, "sliding-window"},
      {"layer_types", {"full_attention", "sliding_attention"}, "sliding_attention"},
      {"partial_rotary_factor", 0.5, "partial RoPE"},
      {"pretraining_tp", 0, "at least 1"},
      {"rope_scaling", "linear", "not an object"},
      {"torch_dtype", "int8", "float32, float16, bfloat16"},
      {"dtype", "int4", "float32, float16, bfloat16"},
      {"quantization_config", {{"quant_method", "gptq"}}, "quantized"},
  };
  for (const std::string type : {"llama", "qwen2"}) {
    for (const auto& [name, value, reason] : refused) {
      nlohmann::json config = base;
      config["model_type"] = type;
      config[name] = value;
      EXPECT_EKV_ERROR(config_from_hf(config, "m/config.json"), "m/config.json", name, reason);
    }
  }
  nlohmann::json accepted = base;
  accepted["hidden_act"] = "silu";
  accepted["pretraining_tp"] = 2;  // the same products in slices
  accepted["torch_dtype"] = "bfloat16";
  accepted["layer_types"] = {"full_attention", "full_attention"};
  EXPECT_NO_THROW(config_from_hf(accepted, "m/config.json"));
  nlohmann::json infinite = base;
  infinite["rope_theta"] = std::numeric_limits<double>::infinity();  // what a parser makes of 1e309
  EXPECT_EKV_ERROR(config_from_hf(infinite, "m/config.json"), "m/config.json", "RoPE base", "finite");
  // transformers >= 5 keeps θ and the scaling rule in rope_parameters.
  nlohmann::json five = base;
  five.erase("rope_theta");
  five.erase("rope_scaling");
  five["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 500000.0}, {"factor", 2.0}};
  const ModelConfig read = config_from_hf(five, "m/config.json");
  EXPECT_EQ(read.rope_theta, 500000.0);
  EXPECT_EQ(read.rope_scaling.kind, "linear");
  EXPECT_EQ(read.rope_scaling.factor, 2.0);
}

// Llama 3.1's rule (factor 8, low 1, high 4, original context 8192) baked into rope_freqs.weight.
// θ = 500000 puts the tiny model's four chunks in every band: kept, interpolated, slowed.
TEST_F(Architectures, Llama3RopeFactorsAreRecognisedAndUsed) {
  tiny_.config.rope_theta = 500000;
  ModelConfig llama3 = tiny_.config;
  llama3.rope_scaling.kind = "llama3";
  llama3.rope_scaling.factor = 8;
  const std::vector<double> plain = rope_frequencies(tiny_.config), scaled = rope_frequencies(llama3);
  std::vector<float> factors;
  for (std::size_t c = 0; c < plain.size(); ++c) factors.push_back(float(plain[c] / scaled[c]));
  ASSERT_EQ(factors.front(), 1.0f);     // a fast chunk is kept
  ASSERT_NEAR(factors.back(), 8.0, 1e-6);  // a slow one is slowed by the factor
  const auto with_factors = [&](const std::vector<float>& values) {
    return gguf_as("llama", [&](test::GgufBuilder& b) {
      b.add_f32_tensor("rope_freqs.weight", {std::uint64_t(values.size())}, values);
    });
  };
  const ModelConfig recognised = read(with_factors(factors));
  EXPECT_EQ(recognised.rope_scaling.kind, "llama3");
  EXPECT_EQ(recognised.rope_scaling.factor, 8);
  EXPECT_EQ(config_to_hf(recognised)["rope_scaling"]["rope_type"], "llama3");
  // Factors of no known rule: ekv computes with them, an HF config cannot state them.
  const ModelConfig custom = read(with_factors({1.0f, 2.0f, 3.0f, 4.0f}));
  EXPECT_EQ(custom.rope_scaling.kind, "factors");
  const std::vector<double> omega = rope_frequencies(custom);
  for (std::size_t c = 0; c < omega.size(); ++c) EXPECT_NEAR(omega[c], plain[c] / double(c + 1), 1e-12 * plain[c]);
  EXPECT_EKV_ERROR(config_to_hf(custom), "rope_freqs", "per-chunk factors");
  const std::string wrong = with_factors({1.0f, 2.0f});
  EXPECT_EKV_ERROR(read(wrong), wrong, "rope_freqs.weight", "expected 4 factors");
  const std::string negative = with_factors({1.0f, -2.0f, 1.0f, 1.0f});
  EXPECT_EKV_ERROR(read(negative), negative, "rope_freqs.weight", "must be positive");
}

}  // namespace
}  // namespace ekv
