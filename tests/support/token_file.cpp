#include "token_file.hpp"

#include <span>

#include "ekv/io/safetensors.hpp"

namespace ekv::test {

void write_token_file(const std::filesystem::path& path, const std::vector<std::int32_t>& tokens) {
  SafetensorsWriter writer(path);
  writer.declare("tokens", DType::i32, {std::int64_t(tokens.size())});
  writer.write("tokens", std::as_bytes(std::span(tokens)));
  writer.commit();
}

}  // namespace ekv::test
