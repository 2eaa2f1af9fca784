// Tokenizer throughput against text size: tokenization must take linear time, so MB/s and
// tokens/s stay flat from 1 to 16 MB, on real text and on the same text with its digits
// removed (which reaches the pre-tokenizer's regex as long spans).
//
//   bench_tokenize MODEL TEXT [--sizes 1,4,16] [--write-texts DIR]
//
// Prints one line per (text, size): seconds, MB/s, tokens/s. --write-texts also writes each
// text and the model's tokenizer.json into DIR, for bench/tokenize_vs_hf.py to time the
// `tokenizers` package on exactly the same bytes.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/model/tokenizer.hpp"

namespace {

// `base` repeated (whole copies plus a prefix) to exactly `bytes` bytes, cut at a line end.
std::string grow(const std::string& base, std::size_t bytes) {
  std::string text;
  text.reserve(bytes + base.size());
  while (text.size() < bytes) text += base;
  const std::size_t cut = text.rfind('\n', bytes);
  text.resize(cut == std::string::npos ? bytes : cut + 1);
  return text;
}

std::string without_digits(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text)
    if (c < '0' || c > '9') out += c;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: bench_tokenize MODEL TEXT [--sizes 1,4,16] [--write-texts DIR]\n");
    return 2;
  }
  std::vector<int> sizes = {1, 4, 16};
  std::string write_dir;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--sizes") == 0) {
      sizes.clear();
      for (const char* p = argv[i + 1]; *p;) {
        char* end;
        sizes.push_back(int(std::strtol(p, &end, 10)));
        p = *end == ',' ? end + 1 : end;
      }
    } else if (std::strcmp(argv[i], "--write-texts") == 0) {
      write_dir = argv[i + 1];
    }
  }
  const ekv::Tokenizer tokenizer = ekv::Tokenizer::for_model(argv[1]);
  const std::string real = ekv::read_file(argv[2]);
  if (!write_dir.empty()) {
    std::filesystem::create_directories(write_dir);
    std::ofstream(std::filesystem::path(write_dir) / "tokenizer.json") << tokenizer.to_hf_json().dump();
  }
  std::printf("%-10s %6s %9s %8s %11s\n", "text", "MB", "seconds", "MB/s", "tokens/s");
  for (const auto& [name, base] : {std::pair<std::string, std::string>{"real", real},
                                   {"no-digits", without_digits(real)}}) {
    for (int mb : sizes) {
      const std::string text = grow(base, std::size_t(mb) << 20);
      if (!write_dir.empty())
        std::ofstream(std::filesystem::path(write_dir) / (name + "-" + std::to_string(mb) + "MB.txt"),
                      std::ios::binary)
            << text;
      // A fresh tokenizer per run: the piece cache would otherwise favour later sizes.
      const ekv::Tokenizer fresh = ekv::Tokenizer::for_model(argv[1]);
      const double start = ekv::bench::now_seconds();
      const auto ids = fresh.encode(text);
      const double seconds = ekv::bench::now_seconds() - start;
      std::printf("%-10s %6d %9.3f %8.2f %11.0f\n", name.c_str(), mb, seconds, double(text.size()) / 1e6 / seconds,
                  double(ids.size()) / seconds);
      std::fflush(stdout);
    }
  }
  return 0;
}
