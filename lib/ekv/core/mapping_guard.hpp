// A mapped file that shrinks under the tool (another process truncates or rewrites it) raises
// SIGBUS on the next touch of a page past its new end, and the process dies as "Bus error" with no
// word of which file. MappedFile registers each mapping here; the handler looks the faulting
// address up and exits with status 1 and a line naming the file.
#pragma once

#include <cstddef>
#include <filesystem>

namespace ekv {

// Registers [begin, begin + size) as the mapping of `path` (installing the handler on first use)
// and returns a slot for unguard_mapping, or -1 when all slots are taken (the mapping then
// dies unnamed, as before).
int guard_mapping(const void* begin, std::size_t size, const std::filesystem::path& path);
void unguard_mapping(int slot);

}  // namespace ekv
