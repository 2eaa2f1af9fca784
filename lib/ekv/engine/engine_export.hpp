// An EliteKV model written in the formats that stock engines serve with a latent (MLA) cache
// (docs/method.md §11, docs/formats.md):
//   gguf         llama.cpp's deepseek2 architecture (q_lora_rank 0, every layer dense, MLA cache of
//                kv_lora_rank + n_rot elements per token and layer)
//   hf-deepseek  transformers' DeepseekV3 (config.json, model.safetensors, tokenizer.json), no
//                remote code
// Exact up to float rounding: the slots hold the elite keys (engine/slot_plan), the latent norm
// is linear (engine/latent_norm), the softmax scale and llama.cpp's RoPE-scaling factor are folded
// into the query weights.
#pragma once

#include <filesystem>

#include "ekv/engine/engine_input.hpp"
#include "ekv/engine/slot_plan.hpp"
#include "ekv/io/dtype.hpp"

namespace ekv {

struct EngineExportSummary {
  SlotPlan plan;
  double query_scale = 1;          // folded into q_proj
  double stream_scale = 1;         // the residual stream's factor (hf-deepseek: norm eps made 1e-6)
  double norm_eps = 0;             // every RMSNorm's epsilon in the written model
  double max_norm_error = 0;       // the latent norm's largest relative departure from linear, all layers
  long cache_elements = 0;         // per token, all layers, in the engine
  long elitekv_cache_elements = 0;  // per token, all layers, in the EliteKV layout
};

// `dtype`: f32, f16, bf16 or q8_0 for the matrices (q8_0 only where rows are whole blocks, else
// f16); norms stay f32, and the latent down-projection f32 (bf16 in a bf16 file): its scaled
// entries are far below f16's range. The original model must be a GGUF (its tokenizer metadata is
// carried over).
EngineExportSummary write_gguf_model(const EngineInput& input, const std::filesystem::path& output, DType dtype);

// `dtype`: f32, f16 or bf16. f16 is refused: the latent norm's weight overflows it.
EngineExportSummary write_hf_deepseek_model(const EngineInput& input, const std::filesystem::path& folder,
                                            DType dtype);

}  // namespace ekv
