// Inputs ekv could compute with but refuses by default, because they usually mean a broken or
// mislabelled file; tool_main gives each a flag that says otherwise.
#pragma once

namespace ekv {

struct Leniency {
  // Tensors ekv does not use: a GGUF whose block_count is one short runs one layer fewer, and a
  // checkpoint of another architecture leaves its extra weights unread.
  bool unused_tensors = false;
};

Leniency& leniency();  // the process's settings

}  // namespace ekv
