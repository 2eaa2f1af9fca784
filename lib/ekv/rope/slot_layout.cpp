#include "ekv/rope/slot_layout.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

#include "ekv/core/error.hpp"

namespace ekv {

RopeLayout parse_rope_layout(const std::string& name) {
  if (name == "free") return RopeLayout::free;
  if (name == "llama.cpp") return RopeLayout::llama_cpp;
  if (name == "transformers") return RopeLayout::transformers;
  fail("unknown layout " + name + " (free, llama.cpp, transformers)");
}

std::string rope_layout_name(RopeLayout layout) {
  switch (layout) {
    case RopeLayout::free: return "free";
    case RopeLayout::llama_cpp: return "llama.cpp";
    case RopeLayout::transformers: return "transformers";
  }
  return "?";
}

std::vector<int> slot_capacity(const std::vector<int>& slot_chunks, int chunks) {
  std::vector<int> capacity(std::size_t(chunks), 0);
  for (int c : slot_chunks) {
    EKV_CHECK(c >= 0 && c < chunks, "slot chunk ", c, " outside [0, ", chunks, ")");
    ++capacity[std::size_t(c)];
  }
  return capacity;
}

std::vector<std::vector<int>> chunk_progressions(int chunks, int slots) {
  std::vector<std::vector<int>> out;
  if (slots < 1 || slots > chunks) return out;
  const int max_step = slots == 1 ? 1 : (chunks - 1) / (slots - 1);
  for (int step = 1; step <= max_step; ++step)
    for (int start = 0; start + (slots - 1) * step < chunks; ++start) {
      std::vector<int> progression;
      for (int i = 0; i < slots; ++i) progression.push_back(start + i * step);
      out.push_back(std::move(progression));
    }
  return out;
}

namespace {
// One KV head's state in the constrained search.
struct HeadSearch {
  ChunkDistances::State state;
  std::vector<int> order;
  std::vector<double> distance;  // after 0, 1, ... picks
  std::vector<double> scores;    // dist(E ∪ {c}) for every chunk with capacity
};

// The distance trajectory of a pick order (element 0: the empty set).
std::vector<double> trajectory(const ChunkDistances& head, const std::vector<int>& order, Objective objective) {
  std::vector<bool> elite(std::size_t(head.chunks()), false);
  std::vector<double> distance{head.distance(elite, objective)};
  for (int c : order) {
    elite[std::size_t(c)] = true;
    distance.push_back(head.distance(elite, objective));
  }
  return distance;
}
}  // namespace

const std::vector<double>& ScoreMemo::scores(const ChunkDistances& head, int head_index, const std::vector<int>& order,
                                             const ChunkDistances::State& state, Objective objective) {
  auto [it, inserted] = scores_.try_emplace({head_index, order});
  if (inserted) it->second = head.candidate_distances(state, std::vector<bool>(std::size_t(head.chunks()), true), objective);
  return it->second;
}

LayerSelection select_in_slots(const std::vector<ChunkDistances>& heads, const std::vector<int>& capacity, int r,
                               Objective objective, int layer, ScoreMemo* memo) {
  const int G = int(heads.size());
  EKV_CHECK(G > 0, "constrained search: no KV heads");
  const int chunks = heads.front().chunks();
  EKV_CHECK(int(capacity.size()) == chunks, "constrained search: ", capacity.size(), " capacities for ", chunks,
            " chunks");
  long total = 0;
  std::vector<bool> slotted(static_cast<std::size_t>(chunks));
  for (int c = 0; c < chunks; ++c) {
    total += std::min(capacity[std::size_t(c)], G);
    slotted[std::size_t(c)] = capacity[std::size_t(c)] > 0;
  }
  EKV_CHECK(r >= 1 && r <= chunks && total >= long(r) * G, "layer ", layer, ": ", G, " KV heads of r = ", r,
            " chunks need ", long(r) * G, " slots, the layout has ", total, " usable");

  // Only slotted chunks' scores are read; with a memo every chunk is scored once per pick order.
  auto score = [&](int j, const HeadSearch& h) {
    return memo ? memo->scores(heads[std::size_t(j)], j, h.order, h.state, objective)
                : heads[std::size_t(j)].candidate_distances(h.state, slotted, objective);
  };
  std::vector<HeadSearch> search(static_cast<std::size_t>(G));
  for (int j = 0; j < G; ++j) {
    HeadSearch& h = search[std::size_t(j)];
    h.state = heads[std::size_t(j)].start(objective);
    h.distance.push_back(heads[std::size_t(j)].distance(h.state.elite, objective));
    h.scores = score(j, h);
  }
  std::vector<int> used(static_cast<std::size_t>(chunks), 0);
  for (int step = 0; step < r * G; ++step) {
    int best_head = -1, best_chunk = -1;
    double best_gain = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < G; ++j) {
      const HeadSearch& h = search[std::size_t(j)];
      if (int(h.order.size()) == r) continue;
      for (int c = 0; c < chunks; ++c) {
        if (h.state.elite[std::size_t(c)] || used[std::size_t(c)] >= capacity[std::size_t(c)]) continue;
        const double gain = h.distance.back() - h.scores[std::size_t(c)];
        if (gain > best_gain) best_gain = gain, best_head = j, best_chunk = c;  // strict: ties to the lowest
      }
    }
    if (best_head < 0) {
      // Only chunks that each unfinished head already rotates are left (possible when a chunk
      // has several slots): hand one of them to another head in exchange for a chunk of its own.
      int needy = -1;
      for (int j = 0; j < G && needy < 0; ++j)
        if (int(search[std::size_t(j)].order.size()) < r) needy = j;
      int free_chunk = -1;
      for (int c = 0; c < chunks && free_chunk < 0; ++c)
        if (used[std::size_t(c)] < capacity[std::size_t(c)]) free_chunk = c;
      HeadSearch& n = search[std::size_t(needy)];
      bool repaired = false;
      for (int j = 0; j < G && !repaired; ++j) {
        HeadSearch& other = search[std::size_t(j)];
        if (j == needy || other.state.elite[std::size_t(free_chunk)]) continue;
        for (std::size_t k = 0; k < other.order.size() && !repaired; ++k) {
          const int swapped = other.order[k];
          if (n.state.elite[std::size_t(swapped)]) continue;
          other.order[k] = free_chunk;
          other.state = heads[std::size_t(j)].start(objective);
          for (int c : other.order) heads[std::size_t(j)].add(other.state, c, objective);
          other.distance = trajectory(heads[std::size_t(j)], other.order, objective);
          other.scores = heads[std::size_t(j)].candidate_distances(other.state, slotted, objective);
          n.order.push_back(swapped);
          heads[std::size_t(needy)].add(n.state, swapped, objective);
          n.distance.push_back(heads[std::size_t(needy)].distance(n.state.elite, objective));
          n.scores = heads[std::size_t(needy)].candidate_distances(n.state, slotted, objective);
          ++used[std::size_t(free_chunk)];
          repaired = true;
        }
      }
      EKV_CHECK(repaired, "layer ", layer, ": the slots cannot give every KV head ", r, " distinct chunks");
      continue;
    }
    HeadSearch& h = search[std::size_t(best_head)];
    heads[std::size_t(best_head)].add(h.state, best_chunk, objective);
    h.order.push_back(best_chunk);
    h.distance.push_back(h.scores[std::size_t(best_chunk)]);
    h.scores = score(best_head, h);
    ++used[std::size_t(best_chunk)];
  }

  LayerSelection result;
  result.layer = layer;
  for (HeadSearch& h : search) {
    std::vector<std::vector<int>> sets;
    for (int k = 1; k <= r; ++k) {
      std::vector<int> set(h.order.begin(), h.order.begin() + k);
      std::sort(set.begin(), set.end());
      sets.push_back(std::move(set));
    }
    result.order.push_back(std::move(h.order));
    result.sets.push_back(std::move(sets));
    result.distance.push_back(std::move(h.distance));
  }
  return result;
}

LayerSelection refine_in_slots(const std::vector<ChunkDistances>& heads, const std::vector<int>& capacity,
                               const LayerSelection& start, Objective objective) {
  EKV_CHECK(ChunkDistances::quadratic_objective(objective), "refine_in_slots: for the quadratic objectives");
  const int G = int(heads.size()), chunks = heads.front().chunks();
  const int r = int(start.order.front().size());
  std::vector<std::vector<bool>> elite(std::size_t(G), std::vector<bool>(std::size_t(chunks), false));
  std::vector<int> used(static_cast<std::size_t>(chunks), 0);
  std::vector<double> dist(static_cast<std::size_t>(G));
  for (int j = 0; j < G; ++j) {
    for (int c : start.order[std::size_t(j)]) {
      elite[std::size_t(j)][std::size_t(c)] = true;
      ++used[std::size_t(c)];
    }
    dist[std::size_t(j)] = heads[std::size_t(j)].distance(elite[std::size_t(j)], objective);
  }
  auto better = [](double after, double before) { return after < before - 1e-12 * std::abs(before); };
  for (int round = 0; round < 32; ++round) {
    bool improved = false;
    for (int j = 0; j < G; ++j)
      for (int c = 0; c < chunks; ++c) {
        if (!elite[std::size_t(j)][std::size_t(c)]) continue;
        auto& mine = elite[std::size_t(j)];
        // c to a free slot's chunk f.
        for (int f = 0; f < chunks && mine[std::size_t(c)]; ++f) {
          if (mine[std::size_t(f)] || used[std::size_t(f)] >= capacity[std::size_t(f)]) continue;
          mine[std::size_t(c)] = false, mine[std::size_t(f)] = true;
          const double after = heads[std::size_t(j)].distance(mine, objective);
          if (better(after, dist[std::size_t(j)])) {
            dist[std::size_t(j)] = after, --used[std::size_t(c)], ++used[std::size_t(f)], improved = true;
            break;
          }
          mine[std::size_t(c)] = true, mine[std::size_t(f)] = false;
        }
        if (!mine[std::size_t(c)]) continue;
        // c for another head's c2.
        for (int k = 0; k < G && mine[std::size_t(c)]; ++k) {
          auto& theirs = elite[std::size_t(k)];
          if (k == j || theirs[std::size_t(c)]) continue;
          for (int c2 = 0; c2 < chunks; ++c2) {
            if (!theirs[std::size_t(c2)] || mine[std::size_t(c2)]) continue;
            mine[std::size_t(c)] = false, mine[std::size_t(c2)] = true;
            theirs[std::size_t(c2)] = false, theirs[std::size_t(c)] = true;
            const double a = heads[std::size_t(j)].distance(mine, objective), b = heads[std::size_t(k)].distance(theirs, objective);
            if (better(a + b, dist[std::size_t(j)] + dist[std::size_t(k)])) {
              dist[std::size_t(j)] = a, dist[std::size_t(k)] = b, improved = true;
              break;
            }
            mine[std::size_t(c)] = true, mine[std::size_t(c2)] = false;
            theirs[std::size_t(c2)] = true, theirs[std::size_t(c)] = false;
          }
        }
      }
    if (!improved) break;
  }
  // Each head's set, ordered by the greedy within it.
  LayerSelection result;
  result.layer = start.layer;
  for (int j = 0; j < G; ++j) {
    const ChunkDistances& head = heads[std::size_t(j)];
    std::vector<bool> chosen(std::size_t(chunks), false);
    std::vector<int> order;
    std::vector<double> distance{head.distance(chosen, objective)};
    for (int k = 0; k < r; ++k) {
      int best = -1;
      double best_distance = 0;
      for (int c = 0; c < chunks; ++c) {
        if (!elite[std::size_t(j)][std::size_t(c)] || chosen[std::size_t(c)]) continue;
        chosen[std::size_t(c)] = true;
        const double d = head.distance(chosen, objective);
        chosen[std::size_t(c)] = false;
        if (best < 0 || d < best_distance) best = c, best_distance = d;
      }
      chosen[std::size_t(best)] = true;
      order.push_back(best);
      distance.push_back(best_distance);
    }
    std::vector<std::vector<int>> sets;
    for (int k = 1; k <= r; ++k) {
      std::vector<int> set(order.begin(), order.begin() + k);
      std::sort(set.begin(), set.end());
      sets.push_back(std::move(set));
    }
    result.order.push_back(std::move(order));
    result.sets.push_back(std::move(sets));
    result.distance.push_back(std::move(distance));
  }
  return result;
}

double slots_total(const std::vector<std::vector<ChunkDistances>>& layers, const std::vector<int>& slots, int r,
                   Objective objective) {
  const std::vector<int> capacity = slot_capacity(slots, layers.front().front().chunks());
  double total = 0;
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (const auto& distance : select_in_slots(layers[l], capacity, r, objective, int(l)).distance)
      total += distance.back();
  return total;
}

std::vector<int> refine_multiset(const std::vector<std::vector<ChunkDistances>>& layers, std::vector<int> slots,
                                 int r, Objective objective, int max_rounds) {
  const int chunks = layers.front().front().chunks(), G = int(layers.front().size());
  double best = slots_total(layers, slots, r, objective);
  for (int round = 0; round < max_rounds; ++round) {
    bool improved = false;
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const int was = slots[i];
      int chosen = was;
      for (int c = 0; c < chunks; ++c) {
        if (c == was || std::count(slots.begin(), slots.end(), c) >= G) continue;  // a chunk needs at most G slots
        slots[i] = c;
        double total = 0;
        try {
          total = slots_total(layers, slots, r, objective);
        } catch (const Error&) {
          continue;  // slots that cannot give every head r distinct chunks
        }
        if (total < best - 1e-12 * best) best = total, chosen = c;
      }
      slots[i] = chosen;
      improved = improved || chosen != was;
    }
    if (!improved) break;
  }
  std::sort(slots.begin(), slots.end());
  return slots;
}

std::vector<int> slot_multiset(const std::vector<LayerSelection>& free, int r, int slots, int chunks) {
  // value[c][k]: the worth of the (k+1)-th copy of chunk c.
  std::vector<std::vector<double>> value(static_cast<std::size_t>(chunks));
  for (const LayerSelection& layer : free) {
    std::vector<std::vector<double>> gains(static_cast<std::size_t>(chunks));
    for (std::size_t j = 0; j < layer.order.size(); ++j) {
      EKV_CHECK(int(layer.order[j].size()) >= r, "slot multiset: layer ", layer.layer, " has ",
                layer.order[j].size(), " picks, r = ", r);
      for (int k = 0; k < r; ++k) {
        const int c = layer.order[j][std::size_t(k)];
        gains[std::size_t(c)].push_back(layer.distance[j][std::size_t(k)] - layer.distance[j][std::size_t(k) + 1]);
      }
    }
    for (int c = 0; c < chunks; ++c) {
      auto& g = gains[std::size_t(c)];
      std::sort(g.begin(), g.end(), std::greater<>());
      auto& v = value[std::size_t(c)];
      if (v.size() < g.size()) v.resize(g.size(), 0.0);
      for (std::size_t k = 0; k < g.size(); ++k) v[k] += g[k];
    }
  }
  const int heads = free.empty() ? 0 : int(free.front().order.size());
  std::vector<std::tuple<double, int, int>> copies;  // (−worth, copy, chunk): the best sort first
  for (int c = 0; c < chunks; ++c)
    for (int k = 0; k < heads; ++k) {
      const auto& v = value[std::size_t(c)];
      copies.emplace_back(k < int(v.size()) ? -v[std::size_t(k)] : 0.0, k, c);
    }
  std::sort(copies.begin(), copies.end());
  EKV_CHECK(int(copies.size()) >= slots, "slot multiset: ", slots, " slots but only ", copies.size(),
            " (chunk, KV head) copies");
  std::vector<int> multiset;
  for (int i = 0; i < slots; ++i) multiset.push_back(std::get<2>(copies[std::size_t(i)]));
  std::sort(multiset.begin(), multiset.end());
  return multiset;
}

ProgressionSearch::ProgressionSearch(std::vector<std::vector<int>> candidates, int chunks, int r, Objective objective)
    : candidates_(std::move(candidates)), r_(r), objective_(objective) {
  EKV_CHECK(!candidates_.empty(), "progression search: no candidate progression");
  for (const auto& slots : candidates_) capacities_.push_back(slot_capacity(slots, chunks));
  totals_.assign(candidates_.size(), 0.0);
  layers_.resize(candidates_.size());
}

void ProgressionSearch::add_layer(const std::vector<ChunkDistances>& heads, int layer) {
  ScoreMemo memo;  // the progressions overlap, so their searches often reach the same picks
  for (std::size_t i = 0; i < candidates_.size(); ++i) {
    LayerSelection selection = select_in_slots(heads, capacities_[i], r_, objective_, layer, &memo);
    for (const auto& distance : selection.distance) totals_[i] += distance.back();
    layers_[i].push_back(std::move(selection));
  }
}

std::size_t ProgressionSearch::best() const {
  return std::size_t(std::min_element(totals_.begin(), totals_.end()) - totals_.begin());
}

std::string slot_overflow(const std::vector<std::vector<int>>& sets, const std::vector<int>& capacity) {
  std::vector<std::vector<int>> holders(capacity.size());
  for (std::size_t j = 0; j < sets.size(); ++j)
    for (int c : sets[j]) {
      if (c < 0 || c >= int(capacity.size())) return cat("KV head ", j, " rotates chunk ", c, ", outside the model");
      holders[std::size_t(c)].push_back(int(j));
    }
  for (std::size_t c = 0; c < capacity.size(); ++c)
    if (int(holders[c].size()) > capacity[c]) {
      std::string heads;
      for (int j : holders[c]) heads += (heads.empty() ? "" : ", ") + std::to_string(j);
      return cat("chunk ", c, " is rotated by KV heads ", heads, " but the layout has ", capacity[c],
                 " slot(s) at its frequency");
    }
  return "";
}

}  // namespace ekv
