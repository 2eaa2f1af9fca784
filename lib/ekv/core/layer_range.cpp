#include "ekv/core/layer_range.hpp"

#include <sstream>

#include "ekv/core/error.hpp"

namespace ekv {

std::pair<int, int> parse_layer_range(const std::string& text, int lowest, int highest, const std::string& where) {
  if (text.empty()) return {lowest, highest};
  int begin = -1, end = -1;
  char colon = 0;
  std::istringstream in(text);
  in >> begin >> colon >> end;
  EKV_CHECK(in && !in.rdbuf()->in_avail() && colon == ':' && begin >= lowest && begin < end && end <= highest,
            "--layers ", text, ": expected a:b with ", lowest, " <= a < b <= ", highest, " (the layers of ", where, ")");
  return {begin, end};
}

}  // namespace ekv
