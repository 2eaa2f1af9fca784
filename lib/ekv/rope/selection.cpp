#include "ekv/rope/selection.hpp"

#include <algorithm>
#include <numeric>

#include "ekv/core/error.hpp"
#include "ekv/model/linear.hpp"
#include "ekv/model/rope_frequencies.hpp"

namespace ekv {

SelectMethod parse_select_method(const std::string& name) {
  if (name == "elite") return SelectMethod::elite;
  if (name == "uniform") return SelectMethod::uniform;
  if (name == "high") return SelectMethod::high;
  if (name == "low") return SelectMethod::low;
  if (name == "norm") return SelectMethod::norm;
  fail("unknown method " + name + " (elite, uniform, high, low, norm)");
}

std::string select_method_name(SelectMethod method) {
  switch (method) {
    case SelectMethod::elite: return "elite";
    case SelectMethod::uniform: return "uniform";
    case SelectMethod::high: return "high";
    case SelectMethod::low: return "low";
    case SelectMethod::norm: return "norm";
  }
  return "?";
}

Objective parse_objective(const std::string& name) {
  if (name == "l1") return Objective::l1;
  if (name == "l2") return Objective::l2;
  if (name == "attention") return Objective::attention;
  fail("unknown objective " + name + " (l1, l2, attention)");
}

std::string objective_name(Objective objective) {
  switch (objective) {
    case Objective::l1: return "l1";
    case Objective::l2: return "l2";
    case Objective::attention: return "attention";
  }
  return "?";
}

std::vector<int> uniform_chunks(int chunks, int r) {
  std::vector<int> out;
  for (int i = 0; i < r; ++i) out.push_back(int((2 * i + 1) * chunks / (2 * r)));  // centres of r equal bins
  return out;
}

std::vector<ChunkDistances> layer_chunk_distances(const LayerWeights& w, const LayerStatistics& stats,
                                                  const ModelConfig& c, int seq_len, const SelectOptions& options) {
  const int d = c.hidden, dh = c.head_dim, g = c.group_size();
  EKV_CHECK(stats.kept_sequences > 0, "layer ", stats.layer, ": the calibration file keeps no inputs X "
            "(run ekv-calibrate with --keep-seqs > 0)");
  std::vector<ChunkDistances> heads;
  for (int j = 0; j < c.kv_heads; ++j)
    heads.emplace_back(rope_frequencies(c), dh, options.pairs_per_seq, options.pair_seed,
                       options.objective == Objective::attention);
  for (int s = 0; s < stats.kept_sequences; ++s) {
    const Matrix x = Eigen::Map<const Matrix>(stats.x.data() + std::size_t(s) * seq_len * d, seq_len, d);
    Matrix q, k;
    linear(x, w.wq, w.bq, q);  // [S, H*d_h]
    linear(x, w.wk, w.bk, k);  // [S, G*d_h]
#pragma omp parallel for schedule(dynamic)
    for (int j = 0; j < c.kv_heads; ++j) {
      ChunkDistanceInput input;
      for (int h = j * g; h < (j + 1) * g; ++h) input.queries.push_back(q.middleCols(h * dh, dh));
      input.keys = k.middleCols(j * dh, dh);
      heads[std::size_t(j)].add_sequence(input, std::uint64_t(s));
    }
  }
  return heads;
}

LayerSelection select_layer(const LayerWeights& w, const LayerStatistics& stats, const ModelConfig& c, int seq_len,
                            const SelectOptions& options) {
  const int chunks = c.chunks();
  EKV_CHECK(options.r_max >= 1 && options.r_max <= chunks, "--r-max ", options.r_max, ": must be in [1, ", chunks,
            "]");
  const std::vector<ChunkDistances> heads = layer_chunk_distances(w, stats, c, seq_len, options);
  LayerSelection result;
  result.layer = stats.layer;
  for (int j = 0; j < c.kv_heads; ++j) {
    const ChunkDistances& head = heads[std::size_t(j)];
    std::vector<int> order;
    std::vector<std::vector<int>> sets;
    std::vector<double> distance;
    if (options.method == SelectMethod::elite) {
      auto search = head.greedy(options.r_max, options.objective);
      order = std::move(search.order);
      distance = std::move(search.distance);
    } else if (options.method == SelectMethod::high) {
      for (int r = 0; r < options.r_max; ++r) order.push_back(r);
    } else if (options.method == SelectMethod::low) {
      for (int r = 0; r < options.r_max; ++r) order.push_back(chunks - 1 - r);
    } else if (options.method == SelectMethod::norm) {
      // MHA2MLA 2-norm: mean ‖q_c‖ summed over the group's query heads, times mean ‖k_c‖.
      std::vector<double> score(static_cast<std::size_t>(chunks));
      for (int ch = 0; ch < chunks; ++ch) {
        double q = 0;
        for (int h = j * c.group_size(); h < (j + 1) * c.group_size(); ++h) q += stats.q_norm_sum(h, ch);
        score[std::size_t(ch)] = q / double(stats.count) * (stats.k_norm_sum(j, ch) / double(stats.count));
      }
      std::vector<int> ranked(static_cast<std::size_t>(chunks));
      std::iota(ranked.begin(), ranked.end(), 0);
      std::stable_sort(ranked.begin(), ranked.end(),
                       [&](int a, int b) { return score[std::size_t(a)] > score[std::size_t(b)]; });
      order.assign(ranked.begin(), ranked.begin() + options.r_max);
    }
    for (int r = 1; r <= options.r_max; ++r) {
      std::vector<int> set = options.method == SelectMethod::uniform ? uniform_chunks(chunks, r)
                                                                     : std::vector<int>(order.begin(), order.begin() + r);
      std::sort(set.begin(), set.end());
      sets.push_back(std::move(set));
    }
    if (distance.empty()) {  // baselines: score each r-set with the same objective
      std::vector<bool> elite(std::size_t(chunks), false);
      distance.push_back(head.distance(elite, options.objective));
      for (const auto& set : sets) {
        std::vector<bool> flags(std::size_t(chunks), false);
        for (int ch : set) flags[std::size_t(ch)] = true;
        distance.push_back(head.distance(flags, options.objective));
      }
    }
    if (options.method == SelectMethod::uniform) order.assign(std::size_t(options.r_max), -1);
    result.order.push_back(std::move(order));
    result.sets.push_back(std::move(sets));
    result.distance.push_back(std::move(distance));
  }
  return result;
}

}  // namespace ekv
