// A GGUF file as a ModelSource: GGUF names map to canonical names, shapes are reversed into
// row-major order, and llama's Q/K rows are permuted back into the rotate_half layout.
#include <memory>

#include "ekv/core/error.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/model/model_family.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/rope_layout.hpp"
#include "ekv/model/tensor_names.hpp"

namespace ekv {

namespace {

class GgufModel final : public ModelSource {
 public:
  explicit GgufModel(const std::filesystem::path& path) : ModelSource(path), gguf_(path) {
    config_ = config_from_gguf(gguf_);
    for (const auto& info : gguf_.tensors()) {
      const auto canonical = canonical_from_gguf(info.name);
      TensorRecord record;
      record.name = canonical.value_or("gguf:" + info.name);
      record.source_name = info.name;
      record.file = path.string();
      record.dtype = info.dtype;
      record.shape = info.shape();
      tensors_.push_back(std::move(record));
    }
    finish_open();
  }

  std::string format() const override { return "gguf"; }

 protected:
  std::span<const std::byte> raw_bytes(const TensorRecord& record) const override {
    return gguf_.tensor_bytes(*gguf_.find_tensor(record.source_name));
  }

  void to_hf_layout(const TensorRecord& record, std::span<float> values) const override {
    const auto ends_with = [&](const char* suffix) {
      const std::string s = suffix;
      return record.name.size() >= s.size() && record.name.compare(record.name.size() - s.size(), s.size(), s) == 0;
    };
    // llama.cpp interleaves the RoPE pairs of llama's Q/K rows only; qwen2 files keep the
    // rotate_half (NEOX) order. A bias is a one-column matrix of the same rows.
    if (!family_traits(config_.architecture).gguf_interleaved_rope) return;
    const int cols = record.shape.size() == 1 ? 1 : int(record.shape.back());
    if (ends_with("self_attn.q_proj.weight") || ends_with("self_attn.q_proj.bias"))
      gguf_to_hf_rope_rows(values, config_.heads, config_.head_dim, cols);
    else if (ends_with("self_attn.k_proj.weight") || ends_with("self_attn.k_proj.bias"))
      gguf_to_hf_rope_rows(values, config_.kv_heads, config_.head_dim, cols);
  }

 private:
  GgufFile gguf_;
};

}  // namespace

std::unique_ptr<ModelSource> open_gguf_model(const std::filesystem::path& path) {
  return std::make_unique<GgufModel>(path);
}

}  // namespace ekv
