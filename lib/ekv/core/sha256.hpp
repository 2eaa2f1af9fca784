// SHA-256 (OpenSSL) for input digests and model fingerprints.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace ekv {

std::string sha256_hex(std::string_view bytes);
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace ekv
