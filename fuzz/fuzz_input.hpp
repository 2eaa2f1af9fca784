// Shared plumbing of the fuzz targets: the readers under test take paths (they mmap or open
// files), so each input is written to one reusable file in a private directory on tmpfs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>

#include "ekv/io/dtype.hpp"

namespace ekv::fuzz {

// Writes data to `<private dir>/<name>` (replacing it) and returns that path.
std::filesystem::path write_input(const std::uint8_t* data, std::size_t size, const std::string& name);

// Runs a parse; an ekv::Error (a clear, named refusal) is the expected outcome of a bad input.
// Any other exception escaping is a finding: the reader let an unchecked failure reach the user
// (a bare "stoi" or "vector::_M_range_check"), so the target aborts with its message.
void expect_clear_errors(const std::function<void()>& parse);

// A broken promise of the code under test: prints what and aborts (libFuzzer saves the input).
[[noreturn]] void finding(const char* what);

// A tensor as a reader hands it out: its span must hold exactly `elements` of `dtype` (mmap'd
// bytes are not ASan-guarded, so an overrun would go unseen without this check), and its leading
// blocks are dequantized (enough to reach every decoder, bounded per input).
void check_and_dequantize(DType dtype, std::span<const std::byte> bytes, std::uint64_t elements);

}  // namespace ekv::fuzz
