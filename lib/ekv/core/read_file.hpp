// A whole file as bytes (texts are tokenized from bytes; invalid UTF-8 is the tokenizer's job).
#pragma once

#include <filesystem>
#include <string>

namespace ekv {

std::string read_file(const std::filesystem::path& path);  // fails naming the file

// Fails unless `path` is (a link to) a regular file, naming what it is instead: a FIFO would block
// its reader forever and a device (/dev/zero) never end, so inputs are files and folders only.
void require_regular_file(const std::filesystem::path& path);
void require_file_or_folder(const std::filesystem::path& path);

// Writes `text` to `path` (replacing it); fails naming the file and the OS reason (disk full?).
void write_text_file(const std::filesystem::path& path, const std::string& text);

// Fails unless `path` is a non-empty regular file without NUL bytes: an empty corpus or a binary
// file (a .gz, a model) given as text would otherwise tokenize into garbage without a word.
void require_text_corpus(const std::filesystem::path& path);

}  // namespace ekv
