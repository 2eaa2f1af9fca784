// The rotary slots that a latent-attention (MLA) engine can hold (docs/method.md §11), and the
// RoPElite search constrained to them.
//
// An MLA layer caches one rotary key per slot, read by every query head, and the slots'
// frequencies are the same in every layer. An EliteKV layer with r elite chunks per KV head is
// such a layer with G·r slots when no two KV heads of a layer rotate the same chunk more often
// than the slots hold it: slot i holds one head's chunk f_i and the other groups' queries read
// zero there. So a selection fits an engine when, in every layer, chunk c is rotated by at most
// capacity[c] KV heads, capacity[c] being how many slots turn at chunk c's frequency:
//   llama.cpp (deepseek2): the slots turn at an arithmetic progression c0, c0+Δ, ... (one
//     frequency base and a linear scale), so each chunk of the progression has capacity 1;
//   transformers (DeepseekV3 with longrope factors): any multiset of chunks, duplicates included.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ekv/rope/chunk_distance.hpp"
#include "ekv/rope/selection.hpp"

namespace ekv {

enum class RopeLayout { free, llama_cpp, transformers };
RopeLayout parse_rope_layout(const std::string& name);  // "free", "llama.cpp", "transformers"
std::string rope_layout_name(RopeLayout layout);

// capacity[c]: how many of `slot_chunks` are chunk c, for c in [0, chunks).
std::vector<int> slot_capacity(const std::vector<int>& slot_chunks, int chunks);

// Every progression c0, c0+Δ, ..., c0+(slots−1)Δ inside [0, chunks) with Δ >= 1, ordered by
// (Δ, c0). Empty when `slots` > chunks.
std::vector<std::vector<int>> chunk_progressions(int chunks, int slots);

// A KV head's candidate scores depend only on the chunks it picked and their order, not on the
// slots: searches of one layer under several slot sets (llama.cpp's progressions) that reach the
// same picks share one scoring of every chunk (the same bits as scoring it anew). `state` is the
// head's state after `order`.
class ScoreMemo {
 public:
  const std::vector<double>& scores(const ChunkDistances& head, int head_index, const std::vector<int>& order,
                                    const ChunkDistances::State& state, Objective objective);
  std::size_t entries() const { return scores_.size(); }  // scorings made

 private:
  std::map<std::pair<int, std::vector<int>>, std::vector<double>> scores_;
};

// The greedy search of docs/method.md §4 for all KV heads of one layer at once: every head takes
// r chunks, chunk c is taken by at most capacity[c] heads, and each step adds the (head, chunk)
// pair that lowers that head's distance most (ties: lowest head, then lowest chunk). A head's
// picks nest like the free search's, so the r' <= r sets fit too.
LayerSelection select_in_slots(const std::vector<ChunkDistances>& heads, const std::vector<int>& capacity, int r,
                               Objective objective, int layer, ScoreMemo* memo = nullptr);

// A local search after select_in_slots, for the quadratic objectives (l2, attention), whose
// distances cost an n_c × n_c product: while the summed distance of the layer falls, move a
// chunk of a head to a free slot or swap two heads' chunks. Each head's final set is then
// ordered greedily within itself, so its r' < r subsets still nest.
LayerSelection refine_in_slots(const std::vector<ChunkDistances>& heads, const std::vector<int>& capacity,
                               const LayerSelection& start, Objective objective);

// Summed distance at r of every layer's constrained search (select_in_slots) within `slots`.
double slots_total(const std::vector<std::vector<ChunkDistances>>& layers, const std::vector<int>& slots, int r,
                   Objective objective);

// A multiset of slots improved by local search over all layers (quadratic objectives; `layers`
// holds every layer's heads without their L1 rows): while the summed distance falls, change one
// slot's chunk to another. Ascending.
std::vector<int> refine_multiset(const std::vector<std::vector<ChunkDistances>>& layers, std::vector<int> slots,
                                 int r, Objective objective, int max_rounds = 8);

// transformers' slots: a multiset of `slots` chunks chosen from the free search's picks at r of
// every layer (`free[l].order`, `free[l].distance`). The k-th copy of chunk c is worth the k-th
// largest distance drop that a head of each layer got from picking c, summed over layers; the
// copies worth most are kept (each chunk's copies are worth less and less, so this greedy takes
// the best multiset for that sum). Ascending.
std::vector<int> slot_multiset(const std::vector<LayerSelection>& free, int r, int slots, int chunks);

// llama.cpp's slots are one progression for the whole model: every candidate progression is
// searched in every layer (select_in_slots), and the one whose summed distance at r over all
// layers and KV heads is lowest wins (ties: the earlier candidate).
class ProgressionSearch {
 public:
  ProgressionSearch(std::vector<std::vector<int>> candidates, int chunks, int r, Objective objective);
  void add_layer(const std::vector<ChunkDistances>& heads, int layer);

  const std::vector<std::vector<int>>& candidates() const { return candidates_; }
  const std::vector<double>& totals() const { return totals_; }  // per candidate, over the layers so far
  std::size_t best() const;
  std::vector<LayerSelection> best_layers() const { return layers_[best()]; }

 private:
  std::vector<std::vector<int>> candidates_;
  std::vector<std::vector<int>> capacities_;
  int r_;
  Objective objective_;
  std::vector<double> totals_;
  std::vector<std::vector<LayerSelection>> layers_;  // [candidate][layer]
};

// "" when the r-sets of every KV head of a layer fit the capacities; otherwise the first chunk
// that is rotated by more heads than it has slots, with the heads that rotate it.
std::string slot_overflow(const std::vector<std::vector<int>>& sets, const std::vector<int>& capacity);

}  // namespace ekv
