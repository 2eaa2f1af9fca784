#include "ekv/compressed/compressed_forward.hpp"

#include <memory>

#include "ekv/compressed/compressed_attention.hpp"

namespace ekv {

bool install_compressed_attention(Forward& forward) {
  const ModelConfig& config = forward.config();
  if (!config.elitekv.enabled()) return false;
  for (int l = 0; l < config.layers; ++l)
    forward.set_attention(l, std::make_shared<CompressedAttention>(config, forward.rope(), l));
  return true;
}

}  // namespace ekv
