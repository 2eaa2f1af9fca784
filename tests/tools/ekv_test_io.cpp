// Test helper for the Python peer tests (not a user tool):
//   ekv_test_io dequant-gguf IN.gguf OUT.safetensors [NAME...]   every tensor (or the named
//                                                      ones) dequantized to F32, in the file's
//                                                      own (GGUF) layout and shape
//   ekv_test_io copy-safetensors IN OUT                 read with our reader, write with our
//                                                      writer: same names, dtypes, bytes, metadata
//   ekv_test_io tokenize MODEL TEXT OUT [RULE]          token ids of a text file as I32 "tokens"
//                                                      (RULE: force gpt2, smollm, qwen2 or llama3)
//   ekv_test_io logits MODEL TOKENS OUT                 logits F32 [W*N, vocab] of the I32 [W, N]
//                                                      "tokens" tensor of a safetensors file
//   ekv_test_io tiny-pipeline DIR                       the tiny planted model through the whole
//                                                      chain; its inputs, artifacts and export
//                                                      folder copied to DIR (fuzz seeds, kill tests)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ekv/compressed/compressed_forward.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/io/gguf.hpp"
#include "tiny_pipeline.hpp"
#include "ekv/io/safetensors.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tokenizer.hpp"

namespace {

void dequant_gguf(const std::string& in, const std::string& out, const std::vector<std::string>& names) {
  const ekv::GgufFile gguf(in);
  std::vector<const ekv::GgufTensorInfo*> chosen;
  for (const auto& info : gguf.tensors())
    if (names.empty() || std::find(names.begin(), names.end(), info.name) != names.end()) chosen.push_back(&info);
  if (chosen.size() != (names.empty() ? gguf.tensors().size() : names.size()))
    throw ekv::Error(in + ": not every named tensor is in the file");
  ekv::SafetensorsWriter writer(out, {{"format", "pt"}});
  for (const auto* info : chosen) writer.declare(info->name, ekv::DType::f32, info->shape());
  for (const auto* chosen_info : chosen) {
    const auto& info = *chosen_info;
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

void tokenize(const std::string& model, const std::string& text_path, const std::string& out, const std::string& rule) {
  ekv::Tokenizer tokenizer = ekv::Tokenizer::for_model(model);
  if (rule == "gpt2") tokenizer.set_pre_tokenizer(ekv::PreTokenizer::gpt2);
  else if (rule == "smollm") tokenizer.set_pre_tokenizer(ekv::PreTokenizer::smollm);
  else if (rule == "qwen2") tokenizer.set_pre_tokenizer(ekv::PreTokenizer::qwen2);
  else if (rule == "llama3") tokenizer.set_pre_tokenizer(ekv::PreTokenizer::llama3);
  else if (!rule.empty()) throw ekv::Error("tokenize: unknown rule " + rule);
  const std::vector<std::int32_t> ids = tokenizer.encode(ekv::read_file(text_path));
  ekv::SafetensorsWriter writer(out);
  writer.declare("tokens", ekv::DType::i32, {std::int64_t(ids.size())});
  writer.write("tokens", std::as_bytes(std::span(ids)));
  writer.commit();
}

void logits(const std::string& model_path, const std::string& tokens_path, const std::string& out) {
  const ekv::SafetensorsFile file(tokens_path);
  const ekv::SafetensorsEntry* entry = file.find("tokens");
  if (!entry || entry->dtype != ekv::DType::i32 || entry->shape.size() != 2)
    throw ekv::Error(tokens_path + ": expected an I32 [windows, length] tensor named tokens");
  std::vector<std::int32_t> tokens(entry->elements());
  std::memcpy(tokens.data(), file.bytes(*entry).data(), tokens.size() * 4);
  const auto model = ekv::ModelSource::open(model_path);
  ekv::Forward forward(*model);
  ekv::install_compressed_attention(forward);
  const int windows = int(entry->shape[0]), length = int(entry->shape[1]);
  const ekv::Matrix hidden = forward.hidden_states(tokens, windows, length);
  const ekv::Matrix all = forward.logits(hidden, 0, hidden.rows());
  ekv::SafetensorsWriter writer(out);
  writer.declare("logits", ekv::DType::f32, {all.rows(), all.cols()});
  writer.write_floats("logits", std::span<const float>(all.data(), std::size_t(all.size())));
  writer.commit();
}

void tiny_pipeline(const std::string& out_dir) {
  namespace fs = std::filesystem;
  const ekv::test::TinyPipeline tiny("tiny-pipeline-seeds", 31);
  const fs::path exported = tiny.make_export("export", 2, {12});
  fs::create_directories(out_dir);
  for (const char* name : {"tiny.gguf", "tokens.safetensors", "calib.h5", "rope.h5", "export.h5"})
    fs::copy_file(tiny.dir / name, fs::path(out_dir) / name, fs::copy_options::overwrite_existing);
  fs::copy(exported, fs::path(out_dir) / "export", fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: ekv_test_io dequant-gguf|copy-safetensors|tokenize|logits|tiny-pipeline ...\n");
    return 2;
  }
  try {
    const std::string command = argv[1];
    if (command == "dequant-gguf") dequant_gguf(argv[2], argv[3], std::vector<std::string>(argv + 4, argv + argc));
    else if (command == "copy-safetensors") copy_safetensors(argv[2], argv[3]);
    else if (command == "tokenize" && argc >= 5) tokenize(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : "");
    else if (command == "logits" && argc == 5) logits(argv[2], argv[3], argv[4]);
    else if (command == "tiny-pipeline") tiny_pipeline(argv[2]);
    else throw ekv::Error("unknown command " + command);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
