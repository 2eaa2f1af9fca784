#include "ekv/model/config.hpp"

#include <cmath>
#include <limits>
#include <sstream>
#include <type_traits>

#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/model/model_family.hpp"
#include "ekv/model/rope_frequencies.hpp"

namespace ekv {

using nlohmann::json;

void ModelConfig::validate(const std::string& source) const {
  EKV_CHECK(layers > 0 && layers <= kMaxLayers, source, ": layer count ", layers, " is not plausible");
  EKV_CHECK(hidden > 0 && hidden <= (1 << 17), source, ": hidden size ", hidden, " is not plausible");
  EKV_CHECK(heads > 0 && heads <= kMaxHeads, source, ": head count ", heads, " is not plausible");
  EKV_CHECK(kv_heads > 0 && kv_heads <= heads && heads % kv_heads == 0, source, ": KV head count ", kv_heads,
            " must divide the head count ", heads);
  EKV_CHECK(head_dim > 0 && head_dim % 2 == 0 && head_dim <= kMaxHeadDim, source, ": head dim ", head_dim,
            " must be even");
  EKV_CHECK(ffn > 0 && ffn <= (1 << 20), source, ": FFN size ", ffn, " is not plausible");
  EKV_CHECK(vocab > 0 && vocab <= (1 << 24), source, ": vocabulary size ", vocab, " is not plausible");
  EKV_CHECK(std::isfinite(rope_theta) && rope_theta > 0, source, ": RoPE base ", rope_theta,
            " must be positive and finite");
  // -1: none given. Anything else must be a token of the vocabulary (found by fuzzing: -2 was kept).
  EKV_CHECK(bos_token == -1 || (bos_token >= 0 && bos_token < vocab), source, ": bos_token_id ", bos_token,
            " is not a token of the vocabulary of ", vocab);
  EKV_CHECK(eos_token == -1 || (eos_token >= 0 && eos_token < vocab), source, ": eos_token_id ", eos_token,
            " is not a token of the vocabulary of ", vocab);
  EKV_CHECK(norm_eps > 0 && norm_eps < 1, source, ": RMSNorm epsilon ", norm_eps, " is not plausible");
  EKV_CHECK(rope_scaling.kind == "none" || rope_scaling.kind == "linear" || rope_scaling.kind == "llama3" ||
                rope_scaling.kind == "factors",
            source, ": RoPE scaling ", rope_scaling.kind, " is not supported (none, linear, llama3)");
  if (rope_scaling.kind == "factors") {
    EKV_CHECK(int(rope_scaling.factors.size()) == chunks(), source, ": RoPE frequency factors: expected ", chunks(),
              " (one per chunk), found ", rope_scaling.factors.size());
    for (double f : rope_scaling.factors)
      EKV_CHECK(std::isfinite(f) && f > 0, source, ": RoPE frequency factor ", f, " must be positive");
  }
  EKV_CHECK(std::isfinite(rope_scaling.factor) && rope_scaling.factor > 0, source, ": RoPE scaling factor ",
            rope_scaling.factor, " must be positive and finite");
  if (rope_scaling.kind == "llama3")
    EKV_CHECK(std::isfinite(rope_scaling.low_freq_factor) && std::isfinite(rope_scaling.high_freq_factor) &&
                  rope_scaling.low_freq_factor > 0 && rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                  rope_scaling.original_max_position > 0,
              source, ": llama3 RoPE scaling: low/high frequency factors ", rope_scaling.low_freq_factor, "/",
              rope_scaling.high_freq_factor, " and original_max_position_embeddings ",
              rope_scaling.original_max_position, " must be positive, finite and increasing");
  if (!elitekv.enabled()) return;
  EKV_CHECK(elitekv.r >= 0 && elitekv.r <= chunks(), source, ": field elitekv_r: ", elitekv.r, " outside [0, ",
            chunks(), "]");
  EKV_CHECK(int(elitekv.kv_rank.size()) == layers && int(elitekv.elite.size()) == layers, source,
            ": fields elitekv_kv_rank and elitekv_elite_chunks: expected one entry per layer (", layers, ")");
  for (int l = 0; l < layers; ++l) {
    const int rank = elitekv.kv_rank[std::size_t(l)];
    EKV_CHECK(rank >= 0 && rank <= 2 * kv_heads * head_dim, source, ": field elitekv_kv_rank[", l, "]: ", rank,
              " outside [0, ", 2 * kv_heads * head_dim, "]");
    const auto& heads_of_layer = elitekv.elite[std::size_t(l)];
    EKV_CHECK(int(heads_of_layer.size()) == kv_heads, source, ": field elitekv_elite_chunks[", l, "]: expected ",
              kv_heads, " KV heads, found ", heads_of_layer.size());
    for (int j = 0; j < kv_heads; ++j) {
      const auto& set = heads_of_layer[std::size_t(j)];
      EKV_CHECK(int(set.size()) == elitekv.r, source, ": field elitekv_elite_chunks[", l, "][", j, "]: expected ",
                elitekv.r, " chunks, found ", set.size());
      EKV_CHECK(is_chunk_set(set, chunks()), source, ": field elitekv_elite_chunks[", l, "][", j,
                "]: chunks must ascend within [0, ", chunks(), ")");
    }
  }
}

std::vector<int> EliteKvSpec::rest_dims(int layer, int kv_head, int head_dim) const {
  const int half = head_dim / 2;
  std::vector<bool> is_elite(std::size_t(head_dim), false);
  for (int c : elite[std::size_t(layer)][std::size_t(kv_head)]) is_elite[std::size_t(c)] = is_elite[std::size_t(c + half)] = true;
  std::vector<int> rest;
  for (int dim = 0; dim < head_dim; ++dim)
    if (!is_elite[std::size_t(dim)]) rest.push_back(dim);
  return rest;
}

std::string ModelConfig::describe() const {
  std::ostringstream os;
  os << "architecture: " << architecture << "\n";
  if (!name.empty()) os << "name: " << name << "\n";
  os << "layers: " << layers << "\n"
     << "hidden: " << hidden << "\n"
     << "heads: " << heads << "\n"
     << "kv_heads: " << kv_heads << "\n"
     << "head_dim: " << head_dim << "\n"
     << "rope_chunks: " << chunks() << "\n"
     << "ffn: " << ffn << "\n"
     << "vocab: " << vocab << "\n"
     << "context: " << context << "\n"
     << "rope_theta: " << rope_theta << "\n"
     << "rope_scaling: " << rope_scaling.kind;
  if (rope_scaling.kind != "none") os << " (factor " << rope_scaling.factor << ")";
  os << "\n"
     << "norm_eps: " << norm_eps << "\n"
     << "tied_embeddings: " << (tied_embeddings ? "true" : "false") << "\n"
     << "attention_bias: " << (attention_bias ? "true" : "false") << "\n"
     << "bos_token: " << bos_token << "\n"
     << "eos_token: " << eos_token << "\n";
  if (elitekv.enabled()) {
    long long latent = 0;
    for (int rank : elitekv.kv_rank) latent += rank;
    os << "elitekv: r=" << elitekv.r << ", mean d_kv=" << double(latent) / layers << "\n";
  }
  return os.str();
}

namespace {

// A GGUF count as an int; values past INT32_MAX (2^40 layers, 2^32 - 1 heads) are refused by
// name rather than wrapped into nonsense that a later check misreports.
int gguf_count(const GgufFile& gguf, const std::string& key) {
  const std::uint64_t value = gguf.get_uint(key);
  EKV_CHECK(value <= std::uint64_t(std::numeric_limits<int>::max()), gguf.path().string(), ": metadata ", key, ": ",
            value, " is not plausible");
  return int(value);
}

// The RoPE base where the checkpoint names none: the LLaMA default, said out loud.
double default_rope_theta(const std::string& source, const std::string& field) {
  log::warn(cat(source, ": ", field, " is missing; using the LLaMA default RoPE base 10000"));
  return 10000.0;
}

// Llama 3.x GGUF files carry the llama3 rule as per-chunk divisors of ω (tensor rope_freqs).
// The divisors of the published rules are recognised, so an HF export can state the rule; any
// other set stays "factors" (ekv computes with it, config_to_hf refuses it).
void read_rope_factors(const GgufFile& gguf, const GgufTensorInfo& info, ModelConfig& config) {
  const std::string where = gguf.path().string() + ": tensor rope_freqs.weight";
  EKV_CHECK(config.head_dim > 0 && config.head_dim % 2 == 0 && config.head_dim <= kMaxHeadDim, where, ": head dim ",
            config.head_dim, " must be even");
  const int chunks = config.head_dim / 2;
  EKV_CHECK(info.elements() == std::uint64_t(chunks), where, ": expected ", chunks, " factors (head_dim / 2), found ",
            info.elements());
  std::vector<float> values(static_cast<std::size_t>(chunks));
  dequantize(info.dtype, gguf.tensor_bytes(info), values);
  config.rope_scaling = RopeScaling{};
  config.rope_scaling.kind = "factors";
  config.rope_scaling.factors.assign(values.begin(), values.end());
  for (double f : config.rope_scaling.factors)
    EKV_CHECK(std::isfinite(f) && f > 0, where, ": factor ", f, " must be positive");
  ModelConfig plain = config;
  plain.rope_scaling = RopeScaling{};
  const std::vector<double> omega = rope_frequencies(plain);
  // Llama 3.1 (factor 8) and Llama 3.2 (factor 32): low 1, high 4, original context 8192.
  for (const double factor : {8.0, 32.0, 16.0, 4.0}) {
    ModelConfig candidate = plain;
    candidate.rope_scaling.kind = "llama3";
    candidate.rope_scaling.factor = factor;
    const std::vector<double> scaled = rope_frequencies(candidate);
    bool same = true;
    for (int c = 0; c < chunks && same; ++c)
      same = std::abs(omega[std::size_t(c)] / scaled[std::size_t(c)] - config.rope_scaling.factors[std::size_t(c)]) <=
             1e-4 * config.rope_scaling.factors[std::size_t(c)];
    if (same) {
      config.rope_scaling = candidate.rope_scaling;
      return;
    }
  }
}

}  // namespace

ModelConfig config_from_gguf(const GgufFile& gguf) {
  ModelConfig config;
  const std::string file = gguf.path().string();
  const std::string arch = gguf.get_string("general.architecture");
  EKV_CHECK(family_of_gguf(arch), file, ": general.architecture: ", arch, " is not supported: ", family_refusal(arch));
  config.architecture = arch;
  if (gguf.has("general.name")) config.name = gguf.get_string("general.name");
  auto key = [&](const char* suffix) { return arch + "." + suffix; };
  config.layers = gguf_count(gguf, key("block_count"));
  config.hidden = gguf_count(gguf, key("embedding_length"));
  config.heads = gguf_count(gguf, key("attention.head_count"));
  config.kv_heads = gguf.has(key("attention.head_count_kv")) ? gguf_count(gguf, key("attention.head_count_kv"))
                                                              : config.heads;
  config.head_dim = gguf.has(key("attention.key_length")) ? gguf_count(gguf, key("attention.key_length"))
                                                           : (config.heads ? config.hidden / config.heads : 0);
  config.ffn = gguf_count(gguf, key("feed_forward_length"));
  config.context = std::int64_t(gguf.get_uint(key("context_length")));
  config.rope_theta = gguf.has(key("rope.freq_base")) ? gguf.get_float(key("rope.freq_base"))
                                                      : default_rope_theta(file, "metadata " + key("rope.freq_base"));
  config.norm_eps = gguf.get_float(key("attention.layer_norm_rms_epsilon"));
  if (gguf.has(key("rope.scaling.type"))) {
    const std::string kind = gguf.get_string(key("rope.scaling.type"));
    if (kind == "linear") {
      config.rope_scaling.kind = "linear";
      config.rope_scaling.factor = gguf.get_float(key("rope.scaling.factor"));
    } else {
      EKV_CHECK(kind == "none", file, ": metadata ", key("rope.scaling.type"), ": ", kind,
              " is not supported (none, linear; Llama 3's rule comes as the tensor rope_freqs.weight)");
    }
  }
  if (const GgufTensorInfo* freqs = gguf.find_tensor("rope_freqs.weight")) read_rope_factors(gguf, *freqs, config);
  const auto* vocab_tokens = gguf.find("tokenizer.ggml.tokens");
  config.vocab = gguf.has(key("vocab_size")) ? int(gguf.get_uint(key("vocab_size")))
                                             : int(vocab_tokens ? vocab_tokens->array_size() : 0);
  config.tied_embeddings = gguf.find_tensor("output.weight") == nullptr;
  // Mixtral's GGUF files say llama too; their experts give them away.
  EKV_CHECK(!gguf.has(key("expert_count")) || gguf.get_uint(key("expert_count")) == 0, file, ": metadata ",
            key("expert_count"), ": a mixture-of-experts model, which ekv does not implement");
  config.attention_bias = gguf.find_tensor("blk.0.attn_q.bias") != nullptr;
  EKV_CHECK(gguf.find_tensor("blk.0.attn_output.bias") == nullptr, file,
            ": tensor blk.0.attn_output.bias: an output-projection bias is not supported");
  if (gguf.has("tokenizer.ggml.bos_token_id")) config.bos_token = std::int64_t(gguf.get_uint("tokenizer.ggml.bos_token_id"));
  if (gguf.has("tokenizer.ggml.eos_token_id")) config.eos_token = std::int64_t(gguf.get_uint("tokenizer.ggml.eos_token_id"));
  config.validate(file);
  // After validate(): with a nonsense head count the expected width would be nonsense too.
  if (gguf.has(key("rope.dimension_count")))
    EKV_CHECK(gguf.get_uint(key("rope.dimension_count")) == std::uint64_t(config.head_dim), file, ": metadata ",
              key("rope.dimension_count"), ": partial RoPE is not supported (expected ", config.head_dim, ", found ",
              gguf.get_uint(key("rope.dimension_count")), ")");
  return config;
}

namespace {
template <class T>
struct is_vector : std::false_type {};
template <class U>
struct is_vector<std::vector<U>> : std::true_type {};

// An integer JSON number that T holds: get<T>() would truncate 576.5 and wrap 2^40 without a word.
template <class T>
bool integer_fits(const json& value) {
  if (!value.is_number_integer()) return false;
  return value.is_number_unsigned() ? value.get<std::uint64_t>() <= std::uint64_t(std::numeric_limits<T>::max())
                                    : value.get<std::int64_t>() >= std::int64_t(std::numeric_limits<T>::min()) &&
                                          value.get<std::int64_t>() <= std::int64_t(std::numeric_limits<T>::max());
}

// Every number in nested integer lists must be an integer that fits an int: get<int>() of
// 1.4e20 is undefined behaviour (found by fuzzing elitekv_elite_chunks).
void require_int_leaves(const json& value, const std::string& where) {
  if (value.is_array()) {
    for (std::size_t i = 0; i < value.size(); ++i) require_int_leaves(value[i], cat(where, "[", i, "]"));
    return;
  }
  EKV_CHECK(integer_fits<int>(value), where, ": expected an integer that fits 32 bits, found ", value.dump());
}

template <class T>
T field(const json& object, const char* name, const std::string& source) {
  EKV_CHECK(object.contains(name), source, ": field ", name, " is missing");
  const json& value = object.at(name);
  if constexpr (is_vector<T>::value) require_int_leaves(value, cat(source, ": field ", name));
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    EKV_CHECK(value.is_number_integer(), source, ": field ", name, ": expected an integer, found ", value.dump());
    EKV_CHECK(integer_fits<T>(value), source, ": field ", name, ": ", value.dump(), " is out of range");
  }
  try {
    return object.at(name).get<T>();
  } catch (const json::exception&) {
    fail(cat(source, ": field ", name, ": unexpected type (", object.at(name).type_name(), ")"));
  }
}

template <class T>
T field_or(const json& object, const char* name, T fallback, const std::string& source) {
  if (!object.contains(name) || object.at(name).is_null()) return fallback;
  return field<T>(object, name, source);
}

// Fields that change what a model computes and that ekv does not implement: each is refused by
// name, since computing as if it were absent gives a confident, wrong perplexity. (pretraining_tp
// is not among them: transformers splits the same products into slices and sums them, the same
// function up to the order of a sum.)
void refuse_unimplemented_fields(const json& object, const FamilyTraits& family, const std::string& source) {
  const auto given = [&](const char* name) { return object.contains(name) && !object.at(name).is_null(); };
  const std::string act = field_or<std::string>(object, "hidden_act", "silu", source);
  EKV_CHECK(act == "silu" || act == "swish", source, ": field hidden_act: ", act,
            " is not supported (ekv's MLP is SwiGLU: silu)");
  EKV_CHECK(!field_or<bool>(object, "mlp_bias", false, source), source,
            ": field mlp_bias: biases on the MLP projections are not supported");
  // Qwen2 configs name a window and switch it off with use_sliding_window; elsewhere a window is on.
  const bool sliding = field_or<bool>(object, "use_sliding_window", false, source) ||
                       (!family.window_needs_switch && given("sliding_window"));
  EKV_CHECK(!sliding, source, ": fields use_sliding_window/sliding_window: sliding-window attention is not "
            "implemented by ekv");
  if (given("layer_types"))
    for (const json& kind : object.at("layer_types"))
      EKV_CHECK(kind == "full_attention", source, ": field layer_types: ", kind.dump(),
                " layers are not supported (full_attention only)");
  const double partial = field_or<double>(object, "partial_rotary_factor", 1.0, source);
  EKV_CHECK(partial == 1.0, source, ": field partial_rotary_factor: ", partial,
            ": partial RoPE is not supported (every dimension rotates)");
  EKV_CHECK(field_or<std::int64_t>(object, "pretraining_tp", 1, source) >= 1, source,
            ": field pretraining_tp: must be at least 1");
  EKV_CHECK(!given("rope_scaling") || object.at("rope_scaling").is_object(), source, ": field rope_scaling: ",
            object.contains("rope_scaling") ? object.at("rope_scaling").dump() : "",
            " is not an object ({\"rope_type\": ..., \"factor\": ...})");
  EKV_CHECK(!given("quantization_config"), source,
            ": field quantization_config: quantized checkpoints are not supported (give the unquantized model)");
  for (const char* name : {"torch_dtype", "dtype"}) {
    const std::string dtype = field_or<std::string>(object, name, "float32", source);
    EKV_CHECK(dtype == "float32" || dtype == "float16" || dtype == "bfloat16" || dtype == "auto", source,
              ": field ", name, ": ", dtype, " is not supported (float32, float16, bfloat16)");
  }
}
}  // namespace

ModelConfig config_from_hf(const json& object, const std::string& source) {
  EKV_CHECK(object.is_object(), source, ": not a JSON object");
  ModelConfig config;
  const std::string model_type = field_or<std::string>(object, "model_type", "", source);
  EKV_CHECK(!model_type.empty(), source, ": field model_type is missing");
  const bool export_config = model_type == kEliteKvModelType;
  const FamilyTraits* family = family_of_hf_model_type(model_type);
  EKV_CHECK(family || export_config, source, ": field model_type: ", model_type, " is not supported: ",
            family_refusal(model_type));
  // ekv_architecture belongs to an export's config alone: a LLaMA config that carries one is a
  // LLaMA (found by fuzzing: "qwen2" there turned it into a Qwen2 on writing back).
  if (export_config) {
    const std::string named = field_or<std::string>(object, "ekv_architecture", "llama", source);
    family = family_of_gguf(named);
    EKV_CHECK(family, source, ": field ekv_architecture: ", named, " is not one of ", supported_families());
  }
  config.architecture = std::string(family->name);
  // A family whose biases have no config field (Qwen2) has them; an EliteKV export says.
  config.attention_bias = export_config ? field_or<bool>(object, "attention_bias", false, source)
                                        : family->implied_qkv_bias;
  refuse_unimplemented_fields(object, *family, source);
  config.name = field_or<std::string>(object, "_name_or_path", "", source);
  config.layers = field<int>(object, "num_hidden_layers", source);
  config.hidden = field<int>(object, "hidden_size", source);
  config.heads = field<int>(object, "num_attention_heads", source);
  config.kv_heads = field_or<int>(object, "num_key_value_heads", config.heads, source);
  config.head_dim = field_or<int>(object, "head_dim", config.heads ? config.hidden / config.heads : 0, source);
  config.ffn = field<int>(object, "intermediate_size", source);
  config.vocab = field<int>(object, "vocab_size", source);
  config.context = field_or<std::int64_t>(object, "max_position_embeddings", 2048, source);
  // transformers >= 5 writes θ and the scaling rule as one object, rope_parameters.
  const bool has_parameters = object.contains("rope_parameters") && object.at("rope_parameters").is_object();
  const std::string parameters_source = source + ": rope_parameters";
  if (object.contains("rope_theta") && !object.at("rope_theta").is_null())
    config.rope_theta = field<double>(object, "rope_theta", source);
  else if (has_parameters && object.at("rope_parameters").contains("rope_theta"))
    config.rope_theta = field<double>(object.at("rope_parameters"), "rope_theta", parameters_source);
  else
    config.rope_theta = default_rope_theta(source, "field rope_theta");
  config.norm_eps = field_or<double>(object, "rms_norm_eps", 1e-6, source);
  config.tied_embeddings = field_or<bool>(object, "tie_word_embeddings", false, source);
  config.bos_token = object.contains("bos_token_id") && object["bos_token_id"].is_number_integer()
                         ? object["bos_token_id"].get<std::int64_t>() : -1;
  config.eos_token = object.contains("eos_token_id") && object["eos_token_id"].is_number_integer()
                         ? object["eos_token_id"].get<std::int64_t>() : -1;
  EKV_CHECK(model_type == kEliteKvModelType || !field_or<bool>(object, "attention_bias", false, source), source,
            ": field attention_bias: LLaMA's attention_bias also puts a bias on o_proj, which is not supported");
  EKV_CHECK(!object.contains("num_local_experts") && !object.contains("num_experts"), source,
            ": a mixture-of-experts model, which ekv does not implement");
  const bool has_scaling = object.contains("rope_scaling") && !object["rope_scaling"].is_null();
  if (has_scaling || has_parameters) {
    const json& scaling = has_scaling ? object["rope_scaling"] : object["rope_parameters"];
    const std::string where = has_scaling ? source + ": rope_scaling" : parameters_source;
    std::string kind = field_or<std::string>(scaling, "rope_type", "", where);
    if (kind.empty()) kind = field_or<std::string>(scaling, "type", "none", where);
    if (kind == "default") kind = "none";
    config.rope_scaling.kind = kind;
    config.rope_scaling.factor = field_or<double>(scaling, "factor", 1.0, where);
    config.rope_scaling.low_freq_factor = field_or<double>(scaling, "low_freq_factor", 1.0, where);
    config.rope_scaling.high_freq_factor = field_or<double>(scaling, "high_freq_factor", 4.0, where);
    config.rope_scaling.original_max_position =
        field_or<std::int64_t>(scaling, "original_max_position_embeddings", 8192, where);
  }
  if (model_type == kEliteKvModelType) {
    config.elitekv.r = field<int>(object, "elitekv_r", source);
    config.elitekv.elite = field<std::vector<std::vector<std::vector<int>>>>(object, "elitekv_elite_chunks", source);
    config.elitekv.kv_rank = field<std::vector<int>>(object, "elitekv_kv_rank", source);
    EKV_CHECK(config.elitekv.enabled(), source, ": field elitekv_kv_rank is empty");
  }
  config.validate(source);
  return config;
}

json config_to_hf(const ModelConfig& config) {
  const FamilyTraits& family = family_traits(config.architecture);
  json object = {
      {"architectures", {std::string(family.hf_class)}},
      {"model_type", std::string(family.hf_model_types.front())},
      {"hidden_size", config.hidden},
      {"intermediate_size", config.ffn},
      {"num_hidden_layers", config.layers},
      {"num_attention_heads", config.heads},
      {"num_key_value_heads", config.kv_heads},
      {"head_dim", config.head_dim},
      {"vocab_size", config.vocab},
      {"max_position_embeddings", config.context},
      {"rope_theta", config.rope_theta},
      {"rms_norm_eps", config.norm_eps},
      {"tie_word_embeddings", config.tied_embeddings},
      {"hidden_act", "silu"},
      {"attention_bias", config.attention_bias},
      {"mlp_bias", false},
      {"torch_dtype", "float32"},
  };
  if (family.window_needs_switch) object["use_sliding_window"] = false;
  if (family.implied_qkv_bias) object.erase("attention_bias");  // implied by the model type
  if (!family.writes_head_dim) object.erase("head_dim");         // derived from hidden_size / heads
  if (config.elitekv.enabled()) {
    object["architectures"] = {"EliteKVForCausalLM"};
    object["ekv_architecture"] = config.architecture;
    object["attention_bias"] = config.attention_bias;
    object["model_type"] = kEliteKvModelType;
    object["auto_map"] = {{"AutoConfig", "configuration_elitekv.EliteKVConfig"},
                          {"AutoModelForCausalLM", "modeling_elitekv.EliteKVForCausalLM"}};
    object["elitekv_r"] = config.elitekv.r;
    object["elitekv_elite_chunks"] = config.elitekv.elite;
    object["elitekv_kv_rank"] = config.elitekv.kv_rank;
  }
  if (config.bos_token >= 0) object["bos_token_id"] = config.bos_token;
  if (config.eos_token >= 0) object["eos_token_id"] = config.eos_token;
  EKV_CHECK(config.rope_scaling.kind != "factors", "config.json: the model's RoPE frequency factors (GGUF "
            "rope_freqs.weight) match no Llama 3 rule, and an HF config has no field for per-chunk factors");
  if (config.rope_scaling.kind == "none") {
    object["rope_scaling"] = nullptr;
  } else if (config.rope_scaling.kind == "linear") {
    object["rope_scaling"] = {{"rope_type", "linear"}, {"type", "linear"}, {"factor", config.rope_scaling.factor}};
  } else {
    object["rope_scaling"] = {{"rope_type", "llama3"},
                              {"factor", config.rope_scaling.factor},
                              {"low_freq_factor", config.rope_scaling.low_freq_factor},
                              {"high_freq_factor", config.rope_scaling.high_freq_factor},
                              {"original_max_position_embeddings", config.rope_scaling.original_max_position}};
  }
  return object;
}

}  // namespace ekv
