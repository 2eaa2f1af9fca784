// Where an EliteKV model's rotary keys go in an MLA engine's format (docs/method.md §11).
//
// An MLA layer caches, per token, one latent of kv_lora_rank values and one rotary key of n_rot
// = 2S dims: S slots, slot i a pair of dims turning at one frequency, the same in every layer,
// read by every query head. An EliteKV layer caches per KV head j the r elite chunks E_j. It fits
// when each (head, chunk) of the layer gets a slot of its own at that chunk's frequency; a query
// head then reads its group's slots with its own elite query rows and the other slots with zeros.
// The slot plan says which slots there are and which (head, chunk) each layer puts in each.
#pragma once

#include <string>
#include <vector>

#include "ekv/model/config.hpp"

namespace ekv {

enum class EngineFormat {
  gguf,         // llama.cpp's deepseek2: slots at one progression of frequencies
  hf_deepseek,  // transformers' DeepseekV3 (longrope factors): any frequency per slot
};
EngineFormat parse_engine_format(const std::string& name);  // "gguf", "hf-deepseek"
std::string engine_format_name(EngineFormat format);

struct SlotHolder {
  int kv_head = -1;  // -1: the slot is empty in this layer (its key rows are zero)
  int index = -1;    // which of the head's elite chunks (ascending), 0 .. r-1
};

struct SlotPlan {
  std::vector<int> slot_chunks;                 // [S] the chunk whose frequency slot i turns at
  std::vector<std::vector<SlotHolder>> holder;  // [layer][S]
  int kv_lora_rank = 0;                         // the largest d_kv: smaller latents are padded
  int nope_dim = 0;                             // per query head, its group's non-elite key dims (≥ 1)
  // gguf: the slots' frequencies are freq_scale · freq_base^(−2i/n_rot) (llama.cpp's NORM rope).
  double freq_base = 0, freq_scale = 1;

  int slots() const { return int(slot_chunks.size()); }
  int rope_dims() const { return 2 * slots(); }  // n_rot
  // Elements one token caches in one layer of the engine: kv_lora_rank + n_rot.
  long cache_elements_per_layer() const { return kv_lora_rank + rope_dims(); }
};

// The plan for `config` (an EliteKV model: config.elitekv set). Fails naming the layer, the KV
// heads and the chunk that the format cannot hold, or the model feature it lacks, with what to
// do instead; a model whose latents or slots must be padded is planned, with the cost in the
// returned plan (compare cache_elements_per_layer with the EliteKV layer's 2rG + d_kv).
SlotPlan plan_slots(const ModelConfig& config, EngineFormat format);

}  // namespace ekv
