// The names of an enum's values, as options, presets, artifacts and messages spell them: one
// table per enum (found by argument-dependent lookup: `name_table(E)` beside the enum), from
// which the command line's choices, the recorded setting and every message derive. The string
// is read once, at the boundary; the library passes the enum.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ekv {

template <class E>
using NameTable = std::vector<std::pair<std::string, E>>;

template <class E>
const std::string& name_of(E value) {
  for (const auto& [name, entry] : name_table(value))
    if (entry == value) return name;
  throw std::logic_error("an enum value missing from its name table");
}

template <class E>
std::vector<std::string> names_of() {
  std::vector<std::string> names;
  for (const auto& entry : name_table(E{})) names.push_back(entry.first);
  return names;
}

}  // namespace ekv
