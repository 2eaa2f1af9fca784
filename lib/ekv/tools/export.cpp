#include "ekv/tools/export.hpp"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "ekv/compressed/compression_plan.hpp"
#include "ekv/compressed/decode_pack.hpp"
#include "ekv/compressed/python_sources.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/engine/engine_export.hpp"
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
  app.add_option("--compressed,-c", compressed,
                 "An export folder (ekv-export or ekv-uptrain) to write in an engine --format, instead of "
                 "--rope and --jlrd");
  app.add_option("--format", format,
                 "elitekv: an HF folder with EliteKV modeling code and the decode pack; gguf: llama.cpp's deepseek2 "
                 "(one file); hf-deepseek: transformers' DeepseekV3 folder, no remote code. The engine formats hold "
                 "a selection made with ekv-select-rope --layout (anything else is refused, naming the layer)")
      ->check(CLI::IsMember({"elitekv", "gguf", "hf-deepseek"}))
      ->capture_default_str();
  app.add_option("--dtype", dtype, "Weight dtype (gguf: also q8_0)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}))
      ->capture_default_str();
  add_pack_options(app, cache_dtype, pack_positions);
  app.add_option("--output,-o", output, "Output folder (replaced atomically if it exists)");
}

void ExportOptions::check() const {
  EKV_CHECK(!model.empty() && !output.empty(), "--model and --output are required");
  if (format == "elitekv") {
    EKV_CHECK(!rope.empty() && !jlrd.empty() && compressed.empty(),
              "--rope and --jlrd are required (--compressed belongs to an engine --format)");
    EKV_CHECK(dtype != "q8_0", "--dtype q8_0: only --format gguf writes q8_0");
  } else {
    EKV_CHECK(compressed.empty() != (rope.empty() && jlrd.empty()) && (compressed.empty() || rope.empty()) &&
                  rope.empty() == jlrd.empty(),
              "--format ", format, ": give either --rope and --jlrd, or --compressed (an export folder)");
    EKV_CHECK(format == "gguf" || dtype == "f32" || dtype == "bf16", "--format ", format, " --dtype ", dtype,
              ": hf-deepseek is written in f32 or bf16");
  }
  EKV_CHECK(pack_positions >= 1, "--pack-positions ", pack_positions, ": must be positive");
  std::vector<fs::path> inputs{model};
  for (const std::string& input : {rope, jlrd, compressed})
    if (!input.empty()) inputs.push_back(input);
  require_output_path(output, inputs);
  if (format != "gguf") require_replaceable_folder(output);
}

namespace {
// The values of one layer tensor of the compressed model, by its HF suffix.
std::vector<float> layer_tensor(const LayerWeights& w, const std::string& suffix) {
  if (suffix == "input_layernorm") return flat_values(w.attn_norm);
  if (suffix == "post_attention_layernorm") return flat_values(w.ffn_norm);
  if (suffix == "self_attn.q_proj") return flat_values(w.wq);
  if (suffix == "self_attn.o_proj") return flat_values(w.wo);
  if (suffix == "self_attn.k_rope_proj") return flat_values(w.wk_rope);
  if (suffix == "self_attn.kv_a_proj") return flat_values(w.kv_a);
  if (suffix == "self_attn.k_b_proj") return flat_values(w.k_b);
  if (suffix == "self_attn.v_b_proj") return flat_values(w.v_b);
  if (suffix == "mlp.gate_proj") return flat_values(w.w_gate);
  if (suffix == "mlp.up_proj") return flat_values(w.w_up);
  if (suffix == "mlp.down_proj") return flat_values(w.w_down);
  fail(cat("export: no compressed tensor ", suffix));
}

std::vector<float> layer_bias(const LayerWeights& w, const std::string& suffix) {
  if (suffix == "self_attn.q_proj") return flat_values(w.bq);
  if (suffix == "self_attn.k_rope_proj") return flat_values(w.bk_rope);
  if (suffix == "self_attn.v_b_proj") return flat_values(w.bv);
  fail(cat("export: no compressed bias ", suffix));
}
}  // namespace

namespace {
DType parse_weight_dtype(const std::string& name) {
  if (name == "f16") return DType::f16;
  if (name == "bf16") return DType::bf16;
  if (name == "q8_0") return DType::q8_0;
  return DType::f32;
}

// --format gguf | hf-deepseek: the model in a stock engine's MLA format.
void run_engine_export(const ExportOptions& options) {
  const auto model = ModelSource::open(options.model);
  require_original_attention(*model, "ekv-export --model");
  std::unique_ptr<ModelSource> compressed;
  std::optional<CompressionPlan> plan;
  EngineInput input;
  if (!options.compressed.empty()) {
    compressed = ModelSource::open(options.compressed);
    input = engine_input(*compressed, *model);
  } else {
    plan.emplace(*model, options.rope, options.jlrd);
    input.config = plan->config();
    input.layer = [&](int l) { return plan->layer(l); };
    input.load = [&](const std::string& name) { return model->load(name); };
    input.original = model.get();
  }
  const DType dtype = parse_weight_dtype(options.dtype);
  const EngineExportSummary summary = options.format == "gguf"
                                          ? write_gguf_model(input, options.output, dtype)
                                          : write_hf_deepseek_model(input, options.output, dtype);
  const SlotPlan& p = summary.plan;
  std::string slots;
  for (int c : p.slot_chunks) slots += (slots.empty() ? "" : ",") + std::to_string(c);
  if (summary.cache_elements > summary.elitekv_cache_elements)
    log::warn(cat(options.output, ": the engine caches ", summary.cache_elements, " elements per token, the EliteKV "
                  "layout ", summary.elitekv_cache_elements, ": latents padded to ", p.kv_lora_rank,
                  " or empty slots (uniform ranks and ekv-select-rope --layout avoid both)"));
  std::printf("final: export=%s format=%s dtype=%s slots=%s kv_lora_rank=%d nope=%d cache_elements_per_token=%ld "
              "elitekv_cache_elements_per_token=%ld norm_error=%.2e query_scale=%.6f\n",
              options.output.c_str(), options.format.c_str(), options.dtype.c_str(), slots.c_str(), p.kv_lora_rank,
              p.nope_dim, summary.cache_elements, summary.elitekv_cache_elements, summary.max_norm_error,
              summary.query_scale);
  std::fflush(stdout);
}
}  // namespace

namespace {
void round_layer_to(DType dtype, LayerWeights& w) {
  for (Matrix* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.wk_rope, &w.kv_a, &w.k_b, &w.v_b, &w.w_gate, &w.w_up, &w.w_down})
    round_to_dtype(dtype, {m->data(), std::size_t(m->size())});
  for (Vector* v : {&w.attn_norm, &w.bq, &w.bk, &w.bv, &w.bk_rope, &w.ffn_norm})
    round_to_dtype(dtype, {v->data(), std::size_t(v->size())});
}
}  // namespace

void run_export(const ExportOptions& options) {
  options.check();
  if (options.format != "elitekv") {
    run_engine_export(options);
    return;
  }
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
      // The pack must compute what model.safetensors holds: a bf16 export's weights, rounded.
      round_layer_to(dtype, cached);
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
