// Pre-tokenized input for ekv-calibrate (--tokens): a safetensors file with one I32 `tokens`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace ekv::test {

void write_token_file(const std::filesystem::path& path, const std::vector<std::int32_t>& tokens);

}  // namespace ekv::test
