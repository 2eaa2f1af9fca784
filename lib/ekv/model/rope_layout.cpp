#include "ekv/model/rope_layout.hpp"

#include <algorithm>
#include <vector>

#include "ekv/core/error.hpp"

namespace ekv {

namespace {
// Within a head: interleaved row 2i+s  <->  rotate_half row s*half + i.
void permute_rows(std::span<float> weights, int n_heads, int head_dim, int cols, bool to_hf) {
  EKV_CHECK(head_dim % 2 == 0 && weights.size() == std::size_t(n_heads) * head_dim * cols,
            "RoPE row layout: ", weights.size(), " values do not form ", n_heads, " heads of ", head_dim, "×", cols);
  const int half = head_dim / 2;
  std::vector<float> head(std::size_t(head_dim) * cols);
  for (int h = 0; h < n_heads; ++h) {
    float* base = weights.data() + std::size_t(h) * head_dim * cols;
    std::copy(base, base + head.size(), head.begin());
    for (int i = 0; i < half; ++i)
      for (int s = 0; s < 2; ++s) {
        const int interleaved = 2 * i + s, rotate_half = s * half + i;
        const int from = to_hf ? interleaved : rotate_half;
        const int to = to_hf ? rotate_half : interleaved;
        std::copy_n(head.data() + std::size_t(from) * cols, cols, base + std::size_t(to) * cols);
      }
  }
}
}  // namespace

void gguf_to_hf_rope_rows(std::span<float> weights, int n_heads, int head_dim, int cols) {
  permute_rows(weights, n_heads, head_dim, cols, true);
}

void hf_to_gguf_rope_rows(std::span<float> weights, int n_heads, int head_dim, int cols) {
  permute_rows(weights, n_heads, head_dim, cols, false);
}

}  // namespace ekv
