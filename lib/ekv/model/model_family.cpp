#include "ekv/model/model_family.hpp"

#include <algorithm>

#include "ekv/core/error.hpp"

namespace ekv {

namespace {

const std::vector<FamilyTraits>& families() {
  // Mistral's GGUF files say llama, its HF configs mistral: the same computation.
  static const std::vector<FamilyTraits> table = {
      {Family::llama, "llama", {"llama", "mistral"}, "LlamaForCausalLM", false, true, false, true},
      {Family::qwen2, "qwen2", {"qwen2"}, "Qwen2ForCausalLM", true, false, true, false},
  };
  return table;
}

// Architectures ekv knows of and cannot compress, in GGUF and HF spellings, and why
// (docs/method.md §10 gives the reasoning).
struct Refusal {
  std::vector<std::string_view> names;
  std::string_view reason;
};

const std::vector<Refusal>& refusals() {
  static const std::vector<Refusal> table = {
      {{"gemma3", "gemma3_text", "gemma3n", "qwen3", "olmo2"},
       "its q/k normalisation (an RMSNorm of each key before RoPE) makes keys nonlinear in x, so the non-elite key "
       "rows cannot share a linear latent with the values"},
      {{"gemma2", "cohere2", "phi3"}, "it uses sliding-window attention, which ekv does not implement"},
      {{"qwen2moe", "qwen2_moe", "qwen3moe", "qwen3_moe", "mixtral", "dbrx", "olmoe"},
       "it is a mixture-of-experts model, which ekv does not implement"},
      {{"deepseek2", "deepseek_v2", "deepseek_v3", "minicpm3"},
       "its attention is already multi-head latent attention (MLA): the cache is already a latent"},
  };
  return table;
}

bool among(const std::vector<std::string_view>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

const FamilyTraits& family_traits(std::string_view name) {
  for (const auto& family : families())
    if (family.name == name) return family;
  fail(cat("model family ", name, " is not one of ", supported_families()));
}

const FamilyTraits* family_of_gguf(std::string_view general_architecture) {
  for (const auto& family : families())
    if (family.name == general_architecture) return &family;
  return nullptr;
}

const FamilyTraits* family_of_hf_model_type(std::string_view model_type) {
  for (const auto& family : families())
    if (among(family.hf_model_types, model_type)) return &family;
  return nullptr;
}

std::string family_refusal(std::string_view architecture) {
  if (family_of_gguf(architecture) || family_of_hf_model_type(architecture)) return "";
  for (const auto& refusal : refusals())
    if (among(refusal.names, architecture)) return std::string(refusal.reason);
  return "only " + supported_families() + " are supported (llama also as Mistral's GGUF files and HF configs)";
}

std::string supported_families() {
  std::string names;
  for (const auto& family : families()) names += (names.empty() ? "" : ", ") + std::string(family.name);
  return names;
}

}  // namespace ekv
