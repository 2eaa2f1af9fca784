// How much memory a run may still take, so a size that cannot fit is refused up front with
// the numbers instead of growing until the kernel kills the process.
#pragma once

#include <cstdint>
#include <optional>

namespace ekv {

// MemAvailable of /proc/meminfo in bytes (what can be allocated without swapping); nullopt
// where the kernel does not report it.
std::optional<std::uint64_t> available_memory_bytes();

}  // namespace ekv
