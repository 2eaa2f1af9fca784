// The forward pass of an EliteKV model: model/forward.hpp runs whatever attention each layer has
// installed, and this installs the compressed one (attending from k_e and the latent) in every
// layer of a model written by ekv-export. Every caller that may be given an export calls it.
#pragma once

#include "ekv/model/forward.hpp"

namespace ekv {

// Installs a CompressedAttention in every layer when the model is an EliteKV export; leaves an
// original model's standard attention alone. Returns whether it installed.
bool install_compressed_attention(Forward& forward);

}  // namespace ekv
