#include "ekv/check/decode_check.hpp"

#include <cmath>

#include "ekv/check/fidelity.hpp"
#include "ekv/compressed/compressed_attention.hpp"
#include "ekv/compressed/compressed_forward.hpp"
#include "ekv/compressed/decode_pack.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/model/forward.hpp"

namespace ekv {

namespace {
// Prompt into the cache, then one token per step; returns the logits of positions
// prompt .. prompt+steps-1 ([steps, vocab]), each from the call that fed that position.
Matrix decode_logits(Forward& forward, const std::vector<std::int32_t>& tokens, const DecodeCheckOptions& o,
                     const char* label) {
  Matrix logits(o.steps, forward.config().vocab);
  Progress progress(std::string("decode ") + label, std::uint64_t(o.steps), "tokens");
  forward.hidden_states(std::span<const std::int32_t>(tokens.data(), std::size_t(o.prompt)), 1, o.prompt);
  for (int k = 0; k < o.steps; ++k) {
    const Matrix hidden =
        forward.hidden_states(std::span<const std::int32_t>(tokens.data() + o.prompt + k, 1), 1, 1);
    logits.row(k) = forward.logits(hidden, 0, 1);
    progress.advance();
  }
  progress.finish();
  return logits;
}

PathAgreement agreement(const char* path, const Matrix& decoded, const Matrix& prefill) {
  PathAgreement a{path, 0, 0};
  a.max_relative_diff = double((decoded - prefill).cwiseAbs().maxCoeff()) / double(prefill.cwiseAbs().maxCoeff());
  for (Eigen::Index k = 0; k < decoded.rows(); ++k) {
    Eigen::Index x, y;
    decoded.row(k).maxCoeff(&x);
    prefill.row(k).maxCoeff(&y);
    a.top1_agree += x == y;
  }
  return a;
}
}  // namespace

DecodeCheckResult check_decode(const ModelSource& model, const ModelSource* original, const ArtifactReader* pack,
                               const std::vector<std::int32_t>& tokens, const DecodeCheckOptions& o) {
  const ModelConfig& c = model.config();
  EKV_CHECK(c.elitekv.enabled(), model.path().string(), ": not an EliteKV model (no elitekv_kv_rank)");
  EKV_CHECK(o.prompt >= 1 && o.steps >= 1, "decode: prompt and steps must be positive");
  const int length = o.prompt + o.steps;
  EKV_CHECK(tokens.size() >= std::size_t(length), "decode: ", length, " tokens needed, the text has ", tokens.size());
  EKV_CHECK(length <= c.context, "decode: ", length, " positions exceed the model context ", c.context);
  const std::span<const std::int32_t> sequence(tokens.data(), std::size_t(length));

  Forward forward(model);
  install_compressed_attention(forward);
  forward.set_keep_weights(true);
  // Prefill of the compressed model: no cache, the whole sequence at once.
  const Matrix prefill = forward.logits(forward.hidden_states(sequence, 1, length), o.prompt, o.steps);

  DecodeCheckResult result;
  result.steps = o.steps;
  std::vector<std::shared_ptr<AttentionImpl>> layers;
  for (int l = 0; l < c.layers; ++l) layers.push_back(forward.attention(l));
  Matrix absorbed;
  for (const auto& [path, label] : {std::pair{AttentionPath::absorbed, "absorbed"}, {AttentionPath::reconstruct, "reconstruct"}}) {
    for (auto& layer : layers) {
      auto& attention = dynamic_cast<CompressedAttention&>(*layer);
      attention.set_path(path);
      attention.start_cache(1);
    }
    const Matrix decoded = decode_logits(forward, tokens, o, label);
    result.paths.push_back(agreement(label, decoded, prefill));
    if (path == AttentionPath::absorbed) {
      absorbed = decoded;
      result.cache_elements = 0;
      for (auto& layer : layers) {
        auto& attention = dynamic_cast<CompressedAttention&>(*layer);
        result.cache_elements += attention.cached_tokens(0) * attention.cache_width();
      }
    }
    for (auto& layer : layers) dynamic_cast<CompressedAttention&>(*layer).stop_cache();
  }
  if (pack) {
    const PackHeader header = read_pack_header(*pack);
    EKV_CHECK(header.layers == c.layers && header.heads == c.heads && header.kv_heads == c.kv_heads &&
                  header.head_dim == c.head_dim && header.r == c.elitekv.r && header.hidden == c.hidden,
              pack->path().string(), ": shapes differ from ", model.path().string());
    EKV_CHECK(header.positions >= length, pack->path().string(), ": RoPE tables cover ", header.positions,
              " positions, ", length, " needed");
    for (int l = 0; l < c.layers; ++l) {
      PackLayer layer = read_pack_layer(*pack, header, l);
      // The pack's RoPE tables and query split follow its own chunk lists: an edited list would
      // decode a different model than config.json describes.
      EKV_CHECK(layer.elite == c.elitekv.elite[std::size_t(l)], pack->path().string(), ": layer ", l,
                ": elite_chunks differ from the elitekv_elite_chunks of ", model.path().string(), "/config.json");
      forward.set_attention(l, std::make_shared<PackAttention>(header, std::move(layer), 1));
    }
    result.paths.push_back(agreement("pack", decode_logits(forward, tokens, o, "pack"), prefill));
    for (int l = 0; l < c.layers; ++l) forward.set_attention(l, layers[std::size_t(l)]);
  }
  if (original) {
    Forward reference(*original);
    const Matrix p = reference.logits(reference.hidden_states(sequence, 1, length), o.prompt, o.steps);
    double kl = 0;
    int agree = 0;
    for (int k = 0; k < o.steps; ++k) {
      kl += softmax_kl(p.row(k).data(), absorbed.row(k).data(), c.vocab);
      Eigen::Index x, y;
      p.row(k).maxCoeff(&x);
      absorbed.row(k).maxCoeff(&y);
      agree += x == y;
    }
    result.kl_vs_original = kl / o.steps;
    result.top1_vs_original = double(agree) / o.steps;
  }
  return result;
}

}  // namespace ekv
