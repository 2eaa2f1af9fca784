#include "ekv/tools/info.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "ekv/core/error.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/io/artifact.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/io/safetensors.hpp"
#include "ekv/model/model_source.hpp"

namespace ekv {

namespace fs = std::filesystem;

void InfoOptions::register_with(CLI::App& app) {
  app.add_option("file", path, "A .gguf file, an HF model folder, a .safetensors file or an ekv .h5 artifact")
      ->required();
  app.add_flag("--all-metadata", all_metadata, "Print long GGUF arrays (vocabulary, merges) in full");
}

void InfoOptions::check() const { EKV_CHECK(!path.empty(), "ekv-info: no file given"); }

namespace {

enum class Kind { gguf, hf_folder, safetensors, artifact };

Kind detect(const fs::path& path) {
  require_file_or_folder(path);
  if (fs::is_directory(path)) return Kind::hf_folder;
  std::ifstream in(path, std::ios::binary);
  char head[9] = {};
  in.read(head, 9);
  if (in.gcount() >= 4 && std::memcmp(head, "GGUF", 4) == 0) return Kind::gguf;
  if (in.gcount() >= 8 && std::memcmp(head, "\x89HDF\r\n\x1a\n", 8) == 0) return Kind::artifact;
  if (in.gcount() == 9 && head[8] == '{') return Kind::safetensors;
  fail(cat(path.string(), ": unrecognised file type (expected GGUF, HDF5 artifact, safetensors or an HF folder)"));
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text;
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? "×" : "") + std::to_string(shape[i]);
  return text.empty() ? "scalar" : text;
}

void print_model(const ModelSource& model, std::ostream& out) {
  out << "== model\n"
      << "fingerprint: " << model.fingerprint() << "\n"
      << model.config().describe();
}

void print_gguf(const fs::path& path, const InfoOptions& options, std::ostream& out) {
  const GgufFile gguf(path);
  out << "file: " << path.string() << "\n"
      << "format: GGUF v" << gguf.version() << ", alignment " << gguf.alignment() << ", "
      << gguf.metadata().size() << " metadata keys, " << gguf.tensors().size() << " tensors\n";
  out << "== metadata\n";
  for (const auto& key : gguf.metadata_order()) {
    const GgufValue& value = gguf.metadata().at(key);
    out << key << " = " << value.summary(options.all_metadata ? SIZE_MAX : 8) << "\n";
  }
  out << "== tensors (GGUF name, type, row-major shape, offset)\n";
  for (const auto& info : gguf.tensors())
    out << info.name << "  " << dtype_name(info.dtype) << "  " << shape_text(info.shape()) << "  @" << info.offset
        << "\n";
  try {
    print_model(*ModelSource::open(path), out);
  } catch (const Error& e) {
    out << "== model\nnot loadable as an ekv model: " << e.what() << "\n";
  }
}

void print_hf(const fs::path& path, std::ostream& out) {
  const auto model = ModelSource::open(path);
  out << "file: " << path.string() << "\nformat: HF checkpoint folder\n";
  out << "== tensors (name, dtype, shape, file)\n";
  for (const auto& record : model->tensors())
    out << record.name << "  " << dtype_name(record.dtype) << "  " << shape_text(record.shape) << "  "
        << fs::path(record.file).filename().string() << "\n";
  print_model(*model, out);
}

void print_safetensors(const fs::path& path, std::ostream& out) {
  const SafetensorsFile file(path);
  out << "file: " << path.string() << "\nformat: safetensors, " << file.entries().size() << " tensors\n";
  out << "== metadata\n";
  for (const auto& [key, value] : file.metadata()) out << key << " = " << value << "\n";
  out << "== tensors (name, dtype, shape, bytes)\n";
  for (const auto& entry : file.entries())
    out << entry.name << "  " << dtype_name(entry.dtype) << "  " << shape_text(entry.shape) << "  "
        << entry.end - entry.begin << "\n";
}

void print_artifact(const fs::path& path, std::ostream& out) {
  const ArtifactReader reader(path, "", INT64_MAX);
  const Provenance& p = reader.provenance();
  out << "file: " << path.string() << "\n"
      << "format: ekv artifact, type " << p.type << ", format version " << p.format_version << "\n"
      << "producer: " << p.producer << "\n"
      << "created_utc: " << p.created_utc << "\n"
      << "command_line: " << p.command_line << "\n"
      << "model_fingerprint: " << p.model_fingerprint << "\n";
  out << "== inputs\n";
  for (const auto& input : p.inputs) out << input.type << "  " << input.path << "  " << input.digest << "\n";
  out << "== attributes\n";
  for (const auto& name : reader.attribute_names("/")) {
    static const std::vector<std::string> shown = {"ekv.type", "ekv.format_version", "producer", "created_utc",
                                                   "command_line", "model_fingerprint", "inputs"};
    if (std::find(shown.begin(), shown.end(), name) == shown.end())
      out << name << " = " << reader.attribute_text("/", name) << "\n";
  }
  out << "== datasets (name, dtype, shape)\n";
  for (const auto& info : reader.datasets()) {
    std::vector<std::int64_t> shape(info.shape.begin(), info.shape.end());
    out << info.name << "  " << element_kind_name(info.kind) << "  " << shape_text(shape) << "\n";
  }
}

}  // namespace

void run_info(const InfoOptions& options, std::ostream& out) {
  options.check();
  const fs::path path(options.path);
  switch (detect(path)) {
    case Kind::gguf: print_gguf(path, options, out); break;
    case Kind::hf_folder: print_hf(path, out); break;
    case Kind::safetensors: print_safetensors(path, out); break;
    case Kind::artifact: print_artifact(path, out); break;
  }
}

}  // namespace ekv
