#include "ekv/check/held_out_windows.hpp"

#include <algorithm>

#include "ekv/core/error.hpp"

namespace ekv {

HeldOutWindows held_out_windows(const std::vector<std::int32_t>& text, int window, int max_windows,
                                const std::vector<std::int64_t>& sampled_offsets, int seq_len) {
  EKV_CHECK(window >= 2, "held-out windows: window ", window, " must be at least 2");
  EKV_CHECK(seq_len >= 1, "held-out windows: sampled sequences of ", seq_len, " tokens");
  EKV_CHECK(max_windows >= 0, "held-out windows: max_windows ", max_windows, " is negative");
  HeldOutWindows result;
  result.total = int(text.size() / std::size_t(window));
  // Mark every window a sampled sequence overlaps; sequences may overlap each other.
  std::vector<bool> touched(std::size_t(result.total), false);
  for (const std::int64_t offset : sampled_offsets) {
    EKV_CHECK(offset >= 0 && offset + seq_len <= std::int64_t(text.size()), "held-out windows: a sampled sequence at ",
              offset, " (", seq_len, " tokens) lies outside the text's ", text.size(), " tokens");
    const std::int64_t first = offset / window, last = (offset + seq_len - 1) / window;
    for (std::int64_t w = first; w <= last && w < result.total; ++w) touched[std::size_t(w)] = true;
  }
  std::vector<int> free;
  for (int w = 0; w < result.total; ++w)
    if (!touched[std::size_t(w)]) free.push_back(w);
  result.free = int(free.size());
  EKV_CHECK(!free.empty(), "held-out windows: the sample touches every one of the text's ", result.total,
            " windows of ", window, " tokens: no held-out window is left");
  result.chosen = max_windows > 0 ? std::min(max_windows, result.free) : result.free;
  result.tokens.reserve(std::size_t(result.chosen) * std::size_t(window));
  for (int i = 0; i < result.chosen; ++i) {
    // Evenly spread: the i-th of `chosen` equal strides through the free windows.
    const int w = free[std::size_t(std::int64_t(i) * result.free / result.chosen)];
    const auto begin = text.begin() + std::int64_t(w) * window;
    result.tokens.insert(result.tokens.end(), begin, begin + window);
  }
  return result;
}

}  // namespace ekv
