// The windows of a text that a calibration sample never read: the calibration corpus's own
// held-out windows. `make fit` chooses a cache ratio by the KL on these, so the choice never
// looks at the evaluation corpus and never scores a token the compression was fitted on.
#pragma once

#include <cstdint>
#include <vector>

namespace ekv {

struct HeldOutWindows {
  std::vector<std::int32_t> tokens;  // the chosen windows, back to back (window after window)
  int chosen = 0;                    // windows in `tokens`
  int free = 0;                      // windows of the text that no sampled sequence touches
  int total = 0;                     // full windows of the text
};

// Splits `text` into non-overlapping windows of `window` tokens (as perplexity() does) and keeps
// those that share no token with any sampled sequence [offset, offset + seq_len). At most
// `max_windows` (0: all) are chosen, spread evenly over the text rather than its first pages.
HeldOutWindows held_out_windows(const std::vector<std::int32_t>& text, int window, int max_windows,
                                const std::vector<std::int64_t>& sampled_offsets, int seq_len);

}  // namespace ekv
