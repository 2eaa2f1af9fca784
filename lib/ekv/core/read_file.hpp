// A whole file as bytes (texts are tokenized from bytes; invalid UTF-8 is the tokenizer's job).
#pragma once

#include <filesystem>
#include <string>

namespace ekv {

std::string read_file(const std::filesystem::path& path);  // fails naming the file

// Writes `text` to `path` (replacing it); fails naming the file and the OS reason (disk full?).
void write_text_file(const std::filesystem::path& path, const std::string& text);

// Fails unless `path` is a non-empty regular file without NUL bytes: an empty corpus or a binary
// file (a .gz, a model) given as text would otherwise tokenize into garbage without a word.
void require_text_corpus(const std::filesystem::path& path);

}  // namespace ekv
