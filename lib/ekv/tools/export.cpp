#include "ekv/tools/export.hpp"

#include <cstdio>
#include <filesystem>
#include <optional>

#include "ekv/compressed/compression_plan.hpp"
#include "ekv/compressed/decode_pack.hpp"
#include "ekv/compressed/python_sources.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/model/hf_writer.hpp"
#include "ekv/model/tensor_names.hpp"

namespace ekv {

namespace fs = std::filesystem;

namespace {
// The decode pack's settings, which ekv-export and ekv-export pack both take.
void add_pack_options(CLI::App& app, std::string& cache_dtype, std::int64_t& pack_positions) {
  app.add_option("--cache-dtype", cache_dtype, "Cache dtype a decode kernel should use (recorded in the pack)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  app.add_option("--pack-positions", pack_positions, "Positions covered by the pack's RoPE tables")
      ->capture_default_str();
}

void require_pack_positions(std::int64_t pack_positions, std::int64_t context) {
  EKV_CHECK(pack_positions <= context, "--pack-positions ", pack_positions, " exceeds the model context ", context);
}
}  // namespace

void ExportOptions::register_with(CLI::App& app) {
  // Not ->required(): the `pack` subcommand runs without them (check() requires them otherwise).
  app.add_option("--model,-m", model, "The original model (.gguf file or HF folder)");
  app.add_option("--rope", rope, "rope.h5 from ekv-select-rope: the one ekv-jlrd used");
  app.add_option("--jlrd", jlrd, "jlrd.h5 from ekv-jlrd: the factors of every layer");
  app.add_option("--dtype", dtype, "Weight dtype of model.safetensors")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  add_pack_options(app, cache_dtype, pack_positions);
  app.add_option("--output,-o", output, "Output folder (replaced atomically if it exists)");
}

void ExportOptions::check() const {
  EKV_CHECK(!model.empty() && !rope.empty() && !jlrd.empty() && !output.empty(),
            "--model, --rope, --jlrd and --output are required");
  EKV_CHECK(pack_positions >= 1, "--pack-positions ", pack_positions, ": must be positive");
  require_output_path(output, {model, rope, jlrd});
}

namespace {
// The values of one layer tensor of the compressed model, by its HF suffix.
std::vector<float> layer_tensor(const LayerWeights& w, const std::string& suffix) {
  auto values = [](const auto& m) { return std::vector<float>(m.data(), m.data() + m.size()); };
  if (suffix == "input_layernorm") return values(w.attn_norm);
  if (suffix == "post_attention_layernorm") return values(w.ffn_norm);
  if (suffix == "self_attn.q_proj") return values(w.wq);
  if (suffix == "self_attn.o_proj") return values(w.wo);
  if (suffix == "self_attn.k_rope_proj") return values(w.wk_rope);
  if (suffix == "self_attn.kv_a_proj") return values(w.kv_a);
  if (suffix == "self_attn.k_b_proj") return values(w.k_b);
  if (suffix == "self_attn.v_b_proj") return values(w.v_b);
  if (suffix == "mlp.gate_proj") return values(w.w_gate);
  if (suffix == "mlp.up_proj") return values(w.w_up);
  if (suffix == "mlp.down_proj") return values(w.w_down);
  fail(cat("export: no compressed tensor ", suffix));
}

std::vector<float> layer_bias(const LayerWeights& w, const std::string& suffix) {
  auto values = [](const Vector& v) { return std::vector<float>(v.data(), v.data() + v.size()); };
  if (suffix == "self_attn.q_proj") return values(w.bq);
  if (suffix == "self_attn.k_rope_proj") return values(w.bk_rope);
  if (suffix == "self_attn.v_b_proj") return values(w.bv);
  fail(cat("export: no compressed bias ", suffix));
}
}  // namespace

void run_export(const ExportOptions& options) {
  options.check();
  const auto model = ModelSource::open(options.model);
  const CompressionPlan plan(*model, options.rope, options.jlrd);
  const ModelConfig& c = plan.config();
  require_pack_positions(options.pack_positions, c.context);
  const DType dtype = options.dtype == "f16" ? DType::f16 : options.dtype == "bf16" ? DType::bf16 : DType::f32;

  // Tensors are written in file order, layer after layer: one compressed layer is resident, and
  // each is built once, for model.safetensors and the decode pack together.
  std::optional<DecodePackWriter> pack;
  int cached_layer = -1;
  LayerWeights cached;
  const std::string prefix = "model.layers.";
  CheckpointContents contents;
  contents.config = config_to_hf(c);
  // What the export was made from, with digests: a reader can tell which rope/jlrd/calib files.
  contents.config["ekv_inputs"] = nlohmann::json::array();
  for (const ArtifactInput& input : plan.inputs())
    contents.config["ekv_inputs"].push_back({{"path", input.path}, {"type", input.type}, {"digest", input.digest}});
  contents.tensors = expected_tensors(c);
  contents.load = [&](const ExpectedTensor& tensor) {
    if (tensor.name.rfind(prefix, 0) != 0) return model->load(tensor.name);
    const std::size_t dot = tensor.name.find('.', prefix.size());
    const int layer = std::stoi(tensor.name.substr(prefix.size(), dot - prefix.size()));
    if (layer != cached_layer) {
      cached = LayerWeights{};  // freed first: at 7B shapes a layer is 0.8 GB in f32
      cached = plan.layer(layer);
      cached_layer = layer;
      pack->add_layer(layer, cached);
    }
    const bool bias = tensor.name.ends_with(".bias");
    const std::size_t tail = std::string(bias ? ".bias" : ".weight").size();
    const std::string suffix = tensor.name.substr(dot + 1, tensor.name.size() - dot - 1 - tail);
    return bias ? layer_bias(cached, suffix) : layer_tensor(cached, suffix);
  };
  contents.extra_files = elitekv_python_sources();
  contents.start = [&](const fs::path& folder) {
    pack.emplace(c, options.pack_positions, options.cache_dtype, folder / "decode-pack.h5", plan.inputs());
  };
  // The pack names the compressed model it belongs to, known once model.safetensors is written.
  contents.finish = [&](const fs::path& folder) { pack->commit(open_hf_model(folder)->fingerprint()); };
  write_checkpoint_folder(*model, options.output, dtype, contents);

  long long latent = 0;
  for (int rank : c.elitekv.kv_rank) latent += rank;
  std::printf("final: export=%s r=%d mean_d_kv=%.1f cache_ratio=%.4f dtype=%s layers=%d\n", options.output.c_str(),
              c.elitekv.r, double(latent) / c.layers, plan.cache_ratio(), options.dtype.c_str(), c.layers);
  std::fflush(stdout);
}

void RepackOptions::register_with(CLI::App& command) {
  command.add_option("--compressed,-c", compressed, "The export folder whose decode-pack.h5 is rewritten")
      ->required();
  command.add_flag("--staging", staging,
                   "The folder is ekv-uptrain's unfinished output (NAME.partial), which every reader refuses; "
                   "ekv-uptrain passes this while it assembles the folder");
  add_pack_options(command, cache_dtype, pack_positions);
}

void run_repack(const RepackOptions& options) {
  EKV_CHECK(options.pack_positions >= 1, "--pack-positions ", options.pack_positions, ": must be positive");
  EKV_CHECK(!options.staging || fs::path(options.compressed).extension() == ".partial", options.compressed,
            ": --staging is for ekv-uptrain's NAME.partial folders");
  const auto model = options.staging ? open_hf_model(options.compressed) : ModelSource::open(options.compressed);
  const ModelConfig& c = model->config();
  EKV_CHECK(c.elitekv.enabled(), options.compressed, ": config.json: not an EliteKV model; make one with ekv-export");
  require_pack_positions(options.pack_positions, c.context);
  const fs::path pack = fs::path(options.compressed) / "decode-pack.h5";
  write_decode_pack(c, [&](int l) { return model->layer(l); }, options.pack_positions, options.cache_dtype, pack,
                    model->fingerprint(), {{options.compressed, "hf", "fingerprint:" + model->fingerprint()}});
  std::printf("final: pack=%s layers=%d positions=%lld cache_dtype=%s\n", pack.c_str(), c.layers,
              static_cast<long long>(options.pack_positions), options.cache_dtype.c_str());
  std::fflush(stdout);
}

}  // namespace ekv
