// The calibration corpus's held-out windows (ekv-check compare --held-out-from): planted samples
// whose untouched windows are known.
#include <gtest/gtest.h>

#include <numeric>

#include "ekv/check/held_out_windows.hpp"
#include "expect_error.hpp"

namespace ekv::test {
namespace {

std::vector<std::int32_t> counting_text(int tokens) {
  std::vector<std::int32_t> text(std::size_t(tokens), 0);
  std::iota(text.begin(), text.end(), 0);
  return text;
}

// 10 windows of 4 tokens and two sequences of 5: [2, 7) touches windows 0 and 1, [20, 25) windows
// 5 and 6 (a sequence that ends on a window's first token touches it).
TEST(HeldOutWindows, KeepsOnlyWindowsNoSampledSequenceTouches) {
  const auto text = counting_text(42);  // 10 full windows and a partial one that is never used
  const HeldOutWindows all = held_out_windows(text, 4, 0, {2, 20}, 5);
  EXPECT_EQ(all.total, 10);
  EXPECT_EQ(all.free, 6);
  ASSERT_EQ(all.chosen, 6);
  std::vector<std::int32_t> expected;
  for (int w : {2, 3, 4, 7, 8, 9})
    for (int t = 0; t < 4; ++t) expected.push_back(4 * w + t);
  EXPECT_EQ(all.tokens, expected);
}

TEST(HeldOutWindows, AFewAreSpreadOverTheTextNotTakenFromItsStart) {
  const auto text = counting_text(40);
  const HeldOutWindows three = held_out_windows(text, 4, 3, {2, 20}, 5);
  EXPECT_EQ(three.free, 6);
  ASSERT_EQ(three.chosen, 3);
  // Free windows 2 3 4 7 8 9: every second one.
  const std::vector<std::int32_t> firsts = {three.tokens[0], three.tokens[4], three.tokens[8]};
  EXPECT_EQ(firsts, (std::vector<std::int32_t>{8, 16, 32}));
  // Asking for more than are free gives the free ones.
  EXPECT_EQ(held_out_windows(text, 4, 50, {2, 20}, 5).chosen, 6);
}

TEST(HeldOutWindows, RefusesASampleOutsideTheTextOrOneThatLeavesNothing) {
  const auto text = counting_text(16);
  EXPECT_EKV_ERROR(held_out_windows(text, 4, 0, {14}, 5), "outside the text", "16 tokens");
  EXPECT_EKV_ERROR(held_out_windows(text, 4, 0, {0, 6, 11}, 5), "touches every one", "no held-out window");
}

}  // namespace
}  // namespace ekv::test
