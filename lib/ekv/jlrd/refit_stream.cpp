#include "ekv/jlrd/refit_stream.hpp"

#include <algorithm>
#include <optional>
#include <span>

#include "ekv/core/error.hpp"
#include "ekv/core/progress.hpp"
#include "ekv/lrd/attention_error.hpp"
#include "ekv/model/forward.hpp"

namespace ekv {

double refit_moment_bytes(const ModelConfig& config) {
  const double width = double(config.heads) * config.head_dim, hidden = config.hidden;
  return 2 * 8.0 * (width * width + hidden * width);
}

std::vector<OutputRefit> stream_output_refits(const ModelSource& model, const CalibData& header,
                                              const std::vector<StreamedLayer>& layers, int heldout,
                                              const RopeTable& rope, int sequences_per_pass) {
  const ModelConfig& c = model.config();
  const int n = header.num_seqs, S = header.seq_len;
  EKV_CHECK(heldout >= 1 && heldout < n, "--refit-heldout ", heldout, ": calib.h5 holds ", n,
            " sequences; at least one must remain to fit on");
  EKV_CHECK(!layers.empty(), "refit stream: no layers");
  const int width = c.heads * c.head_dim;
  struct Sums {
    RefitMoments fit, heldout;
  };
  std::vector<std::optional<Sums>> sums(layers.size(), Sums{RefitMoments(width, c.hidden), RefitMoments(width, c.hidden)});
  std::vector<OutputRefit> refits(layers.size());
  std::vector<int> slot(std::size_t(c.layers), -1);  // model layer → index in `layers`
  for (std::size_t i = 0; i < layers.size(); ++i) slot[std::size_t(layers[i].layer)] = int(i);

  Forward forward(model);
  int first = 0;  // the pass's first sequence in calib.h5
  Progress progress("jlrd refit stream", std::uint64_t(n) * std::uint64_t(layers.size()), "sequence-layers");
  forward.set_capture([&](const LayerActivations& a) {
    const int index = slot[std::size_t(a.layer)];
    if (index < 0) return;
    const StreamedLayer& layer = layers[std::size_t(index)];
    Sums& m = *sums[std::size_t(index)];
    const MatrixD wo = a.weights.wo.cast<double>();
    const std::size_t step = std::size_t(S) * std::size_t(c.hidden);
    for (int b = 0; b < a.batch; ++b) {
      const float* xs = a.x.data() + std::size_t(b) * step;
      // The forward pass's own q, k, v of this sequence; no logit sums (the refit needs outputs only).
      const Eigen::Index row = Eigen::Index(b) * S;
      OriginalProjections projections{a.q.middleRows(row, S), a.k.middleRows(row, S), a.v.middleRows(row, S)};
      const SequenceOutputs o = attention_outputs(a.weights, c, layer.elite, layer.layout, layer.factor, xs, xs,
                                                  std::move(projections), S, rope, false);
      const int sequence = first + a.first_sequence + b;
      (sequence < n - heldout ? m.fit : m.heldout).add(wo, o.original, o.compressed);
      progress.advance();
    }
    if (first + a.first_sequence + a.batch == n) {  // the layer's last sequence is in
      refits[std::size_t(index)] = refit_from_moments(a.weights.wo, m.fit, m.heldout);
      sums[std::size_t(index)].reset();
    }
  });
  const int last_layer = layers.back().layer;
  for (; first < n; first += sequences_per_pass) {
    const int batch = std::min(sequences_per_pass, n - first);
    const std::span<const std::int32_t> tokens(header.tokens.data() + std::size_t(first) * std::size_t(S),
                                               std::size_t(batch) * std::size_t(S));
    forward.hidden_states(tokens, batch, S, last_layer);
  }
  progress.finish();
  return refits;
}

}  // namespace ekv
