// A whole file as bytes (texts are tokenized from bytes; invalid UTF-8 is the tokenizer's job).
#pragma once

#include <filesystem>
#include <string>

namespace ekv {

std::string read_file(const std::filesystem::path& path);  // fails naming the file

}  // namespace ekv
