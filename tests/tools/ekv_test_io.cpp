// Test helper for the Python peer tests (not a user tool):
//   ekv_test_io dequant-gguf IN.gguf OUT.safetensors   every tensor dequantized to F32, in
//                                                      the file's own (GGUF) layout and shape
//   ekv_test_io copy-safetensors IN OUT                 read with our reader, write with our
//                                                      writer: same names, dtypes, bytes, metadata
#include <cstdio>
#include <string>
#include <vector>

#include "ekv/core/error.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/io/safetensors.hpp"

namespace {

void dequant_gguf(const std::string& in, const std::string& out) {
  const ekv::GgufFile gguf(in);
  ekv::SafetensorsWriter writer(out, {{"format", "pt"}});
  for (const auto& info : gguf.tensors()) writer.declare(info.name, ekv::DType::f32, info.shape());
  for (const auto& info : gguf.tensors()) {
    std::vector<float> values(info.elements());
    ekv::dequantize(info.dtype, gguf.tensor_bytes(info), values);
    writer.write_floats(info.name, values);
  }
  writer.commit();
}

void copy_safetensors(const std::string& in, const std::string& out) {
  const ekv::SafetensorsFile file(in);
  ekv::SafetensorsWriter writer(out, file.metadata());
  for (const auto& entry : file.entries()) writer.declare(entry.name, entry.dtype, entry.shape);
  for (const auto& entry : file.entries()) writer.write(entry.name, file.bytes(entry));
  writer.commit();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: ekv_test_io dequant-gguf|copy-safetensors IN OUT\n");
    return 2;
  }
  try {
    const std::string command = argv[1];
    if (command == "dequant-gguf") dequant_gguf(argv[2], argv[3]);
    else if (command == "copy-safetensors") copy_safetensors(argv[2], argv[3]);
    else throw ekv::Error("unknown command " + command);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
