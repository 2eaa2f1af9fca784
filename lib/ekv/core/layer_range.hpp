// The `--layers a:b` option of the tools: a half-open range of decoder layers.
#pragma once

#include <string>
#include <utility>

namespace ekv {

// Parses "a:b" (b exclusive) inside [lowest, highest); empty text gives the whole range.
// `where` names what bounds the range in the error ("the model", "calib.h5").
std::pair<int, int> parse_layer_range(const std::string& text, int lowest, int highest, const std::string& where);

}  // namespace ekv
