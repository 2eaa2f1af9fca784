#include "ekv/check/fidelity.hpp"

#include <algorithm>
#include <cmath>

#include "ekv/compressed/compressed_attention.hpp"
#include "ekv/compressed/compressed_forward.hpp"
#include "ekv/core/error.hpp"
#include "ekv/core/progress.hpp"

namespace ekv {

double softmax_kl(const float* p_logits, const float* q_logits, int vocab) {
  const double p_peak = *std::max_element(p_logits, p_logits + vocab);
  const double q_peak = *std::max_element(q_logits, q_logits + vocab);
  double p_total = 0, q_total = 0;
  for (int i = 0; i < vocab; ++i) {
    p_total += std::exp(p_logits[i] - p_peak);
    q_total += std::exp(q_logits[i] - q_peak);
  }
  const double p_log_norm = p_peak + std::log(p_total), q_log_norm = q_peak + std::log(q_total);
  double kl = 0;
  for (int i = 0; i < vocab; ++i) {
    const double log_p = p_logits[i] - p_log_norm, log_q = q_logits[i] - q_log_norm;
    kl += std::exp(log_p) * (log_p - log_q);
  }
  return std::max(kl, 0.0);
}

namespace {
// Runs the original attention and, on the same input, the compressed layer's; accumulates the
// difference of their block outputs and passes the original's on.
class ComparingAttention final : public AttentionImpl {
 public:
  ComparingAttention(std::shared_ptr<AttentionImpl> original, std::shared_ptr<AttentionImpl> compressed,
                     LayerWeights compressed_weights)
      : original_(std::move(original)), compressed_(std::move(compressed)), weights_(std::move(compressed_weights)) {}

  Matrix forward(const LayerWeights& w, const Matrix& x, int first_sequence, int batch, int seq_len,
                 const CaptureHook& capture) override {
    Matrix out = original_->forward(w, x, first_sequence, batch, seq_len, capture);
    const Matrix other = compressed_->forward(weights_, x, first_sequence, batch, seq_len, capture);
    diff2 += (other - out).cast<double>().squaredNorm();
    norm2 += out.cast<double>().squaredNorm();
    return out;
  }
  double diff2 = 0, norm2 = 0;

 private:
  std::shared_ptr<AttentionImpl> original_, compressed_;
  LayerWeights weights_;  // attention weights only
};
}  // namespace

FidelityResult compare_models(const ModelSource& original_model, const ModelSource& compressed_model,
                              const std::vector<std::int32_t>& tokens, const PerplexityOptions& options) {
  const ModelConfig& c = original_model.config();
  const ModelConfig& cc = compressed_model.config();
  EKV_CHECK(cc.elitekv.enabled(), compressed_model.path().string(), ": not an EliteKV model (no elitekv_kv_rank)");
  EKV_CHECK(c.layers == cc.layers && c.hidden == cc.hidden && c.heads == cc.heads && c.kv_heads == cc.kv_heads &&
                c.head_dim == cc.head_dim && c.vocab == cc.vocab,
            compressed_model.path().string(), ": shapes differ from ", original_model.path().string());
  EKV_CHECK(options.window >= 2 && options.window <= c.context, "compare: window ", options.window,
            " outside [2, ", c.context, "]");
  Forward original(original_model), compressed(compressed_model);
  install_compressed_attention(compressed);
  original.set_keep_weights(true);
  compressed.set_keep_weights(true);
  std::vector<std::shared_ptr<ComparingAttention>> probes;
  for (int l = 0; l < c.layers; ++l) {
    LayerWeights w = compressed_model.layer(l);
    w.w_gate.resize(0, 0);  // the probe needs the attention weights only
    w.w_up.resize(0, 0);
    w.w_down.resize(0, 0);
    probes.push_back(std::make_shared<ComparingAttention>(original.attention(l), compressed.attention(l), std::move(w)));
    original.set_attention(l, probes.back());
  }

  FidelityResult result;
  result.original.window = result.compressed.window = options.window;
  result.original.text_tokens = result.compressed.text_tokens = std::int64_t(tokens.size());
  int windows = int(tokens.size() / std::size_t(options.window));
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  EKV_CHECK(windows > 0, "compare: the text has ", tokens.size(), " tokens, fewer than one window of ", options.window);
  const int vocab = c.vocab, n = options.window;
  Progress progress("compare", std::uint64_t(windows) * std::uint64_t(n), "tokens");
  for (int first = 0; first < windows; first += options.batch) {
    const int batch = std::min(options.batch, windows - first);
    const std::span<const std::int32_t> chunk(tokens.data() + std::size_t(first) * std::size_t(n),
                                              std::size_t(batch) * std::size_t(n));
    const Matrix hidden_original = original.hidden_states(chunk, batch, n);
    const Matrix hidden_compressed = compressed.hidden_states(chunk, batch, n);
    for (int b = 0; b < batch; ++b) {
      const Eigen::Index row0 = Eigen::Index(b) * n;
      const Matrix p = original.logits(hidden_original, row0, n - 1);  // [N-1, vocab]
      const Matrix q = compressed.logits(hidden_compressed, row0, n - 1);
      double nll_p = 0, nll_q = 0, kl = 0;
      std::int64_t agree = 0;
#pragma omp parallel for reduction(+ : nll_p, nll_q, kl, agree) schedule(static)
      for (Eigen::Index t = 0; t < p.rows(); ++t) {
        const int target = chunk[std::size_t(row0 + t + 1)];
        nll_p += token_nll(p.row(t).data(), vocab, target);
        nll_q += token_nll(q.row(t).data(), vocab, target);
        kl += softmax_kl(p.row(t).data(), q.row(t).data(), vocab);
        Eigen::Index best_p, best_q;
        p.row(t).maxCoeff(&best_p);
        q.row(t).maxCoeff(&best_q);
        agree += best_p == best_q;
      }
      EKV_CHECK(std::isfinite(nll_p) && std::isfinite(nll_q) && std::isfinite(kl), "compare: window ", first + b,
                " has a non-finite loss (original ", nll_p, ", compressed ", nll_q, ", KL ", kl,
                "): a model's activations overflow (huge or non-finite weights)");
      result.original.nll_sum += nll_p;
      result.compressed.nll_sum += nll_q;
      result.kl_sum += kl;
      result.top1_agree += agree;
      result.original.scored += n - 1;
      result.compressed.scored += n - 1;
    }
    result.original.windows += batch;
    result.compressed.windows += batch;
    progress.advance(std::uint64_t(batch) * std::uint64_t(n));
  }
  progress.finish();
  for (const auto& probe : probes) result.layer_error.push_back(std::sqrt(probe->diff2 / probe->norm2));
  return result;
}

}  // namespace ekv
