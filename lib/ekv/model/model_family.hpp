// The model families ekv compresses, and the ones it knows and refuses, in one table: the names a
// family has in GGUF and in config.json, what its config leaves implied, how llama.cpp stores its
// rows, and why each refused architecture cannot be compressed. Adding a family starts here
// (docs/model-families.md walks the rest).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ekv {

enum class Family { llama, qwen2 };

struct FamilyTraits {
  Family family;
  std::string_view name;                        // ModelConfig::architecture, GGUF general.architecture
  std::vector<std::string_view> hf_model_types;  // config.json model_type spellings read as this family
  std::string_view hf_class;                    // config.json "architectures" ekv writes
  bool implied_qkv_bias;       // q/k/v biases with no config field for them (Qwen2)
  bool writes_head_dim;        // config.json carries head_dim (Qwen2 derives it from the sizes)
  bool window_needs_switch;    // a sliding_window field is only on with use_sliding_window (Qwen2)
  bool gguf_interleaved_rope;  // llama.cpp stores the Q/K rows with RoPE pairs interleaved (llama)
};

// The family of ModelConfig::architecture; fails for a name that is none (a bug or an edited file).
const FamilyTraits& family_traits(std::string_view name);
// The family a GGUF general.architecture or a config.json model_type names; nullptr when none
// (family_refusal says why).
const FamilyTraits* family_of_gguf(std::string_view general_architecture);
const FamilyTraits* family_of_hf_model_type(std::string_view model_type);
// Why the method does not apply to `architecture` (any spelling); "" for a supported family.
std::string family_refusal(std::string_view architecture);
// "llama, qwen2", for messages.
std::string supported_families();

}  // namespace ekv
