// The RoPElite search within an engine's slots (rope/slot_layout): capacities respected, the free
// search recovered when capacities do not bind, planted conflicts resolved the way the summed
// distance prefers (checked against every assignment), llama.cpp's progressions and
// transformers' multiset, and the tool's layout files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "ekv/rope/rope_file.hpp"
#include "ekv/rope/slot_layout.hpp"
#include "ekv/tools/select_rope.hpp"
#include "expect_error.hpp"
#include "tiny_pipeline.hpp"

namespace ekv::test {
namespace {

Matrix random_matrix(int rows, int cols, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

// G KV heads of `chunks` chunks; head j's keys live only on `planted[j]` (its other dims zero),
// so its logits depend on those chunks alone.
std::vector<ChunkDistances> planted_heads(int chunks, const std::vector<std::vector<int>>& planted, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<double> omega;
  for (int c = 0; c < chunks; ++c) omega.push_back(std::pow(10000.0, -2.0 * c / (2 * chunks)));
  std::vector<ChunkDistances> heads;
  for (const auto& keep : planted) {
    ChunkDistances d(omega, 2 * chunks, 0, 3);
    for (int s = 0; s < 2; ++s) {
      ChunkDistanceInput input;
      for (int h = 0; h < 2; ++h) input.queries.push_back(random_matrix(12, 2 * chunks, rng));
      input.keys = random_matrix(12, 2 * chunks, rng);
      for (int c = 0; c < chunks; ++c)
        if (std::find(keep.begin(), keep.end(), c) == keep.end()) {
          input.keys.col(c).setZero();
          input.keys.col(c + chunks).setZero();
        }
      d.add_sequence(input, std::uint64_t(s));
    }
    heads.push_back(std::move(d));
  }
  return heads;
}

double summed_distance(const std::vector<ChunkDistances>& heads, const std::vector<std::vector<int>>& sets) {
  double total = 0;
  for (std::size_t j = 0; j < heads.size(); ++j) {
    std::vector<bool> elite(std::size_t(heads[j].chunks()), false);
    for (int c : sets[j]) elite[std::size_t(c)] = true;
    total += heads[j].distance(elite, Objective::l1);
  }
  return total;
}

TEST(SlotLayout, WithoutBindingCapacityEveryHeadGetsItsFreeSearch) {
  const auto heads = planted_heads(6, {{0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}}, 1);
  const LayerSelection layer = select_in_slots(heads, std::vector<int>(6, 3), 3, Objective::l1, 0);
  for (std::size_t j = 0; j < heads.size(); ++j) {
    const auto free = heads[j].greedy(3, Objective::l1);
    EXPECT_EQ(layer.order[j], free.order) << "head " << j;
    EXPECT_EQ(layer.distance[j], free.distance) << "head " << j;
  }
}

TEST(SlotLayout, OneSlotPerChunkGivesDisjointSetsThatTheSumPrefers) {
  // Heads 0 and 1 both depend on chunk 2; chunks 1 and 3 are their second choices.
  const auto heads = planted_heads(5, {{1, 2}, {2, 3}}, 2);
  const std::vector<int> capacity{1, 1, 1, 1, 1};
  const LayerSelection layer = select_in_slots(heads, capacity, 2, Objective::l1, 0);
  std::vector<std::vector<int>> sets{layer.sets[0][1], layer.sets[1][1]};
  EXPECT_EQ(slot_overflow(sets, capacity), "");
  // Against every assignment of 2 distinct chunks per head with no chunk shared.
  double best = std::numeric_limits<double>::infinity();
  for (int a = 0; a < 5; ++a)
    for (int b = a + 1; b < 5; ++b)
      for (int c = 0; c < 5; ++c)
        for (int e = c + 1; e < 5; ++e) {
          if (c == a || c == b || e == a || e == b) continue;
          best = std::min(best, summed_distance(heads, {{a, b}, {c, e}}));
        }
  EXPECT_NEAR(summed_distance(heads, sets), best, 1e-9 * best);
  // Nested: each head's r = 1 set is its first pick.
  for (std::size_t j = 0; j < 2; ++j) EXPECT_EQ(layer.sets[j][0], std::vector<int>{layer.order[j][0]});
}

TEST(SlotLayout, RefinementNeverLosesAndFindsThePlantedOptimum) {
  // Three heads over 6 chunks with one slot each at r = 2, the quadratic objective: every
  // assignment is checked.
  const auto heads = planted_heads(6, {{0, 1, 2}, {1, 2, 3}, {2, 3, 4}}, 5);
  const std::vector<int> capacity(6, 1);
  const LayerSelection greedy = select_in_slots(heads, capacity, 2, Objective::l2, 0);
  const LayerSelection refined = refine_in_slots(heads, capacity, greedy, Objective::l2);
  auto total = [&](const LayerSelection& s) {
    double sum = 0;
    for (std::size_t j = 0; j < heads.size(); ++j) {
      std::vector<bool> e(6, false);
      for (int c : s.sets[j].back()) e[std::size_t(c)] = true;
      sum += heads[j].distance(e, Objective::l2);
    }
    return sum;
  };
  std::vector<std::vector<int>> sets;
  for (const auto& head : refined.sets) sets.push_back(head.back());
  EXPECT_EQ(slot_overflow(sets, capacity), "");
  EXPECT_LE(total(refined), total(greedy) + 1e-12);
  double best = std::numeric_limits<double>::infinity();
  // Every way to give heads 0, 1 and 2 two distinct chunks each, no chunk twice.
  std::vector<int> perm{0, 1, 2, 3, 4, 5};
  do {
    if (perm[0] > perm[1] || perm[2] > perm[3] || perm[4] > perm[5]) continue;
    double sum = 0;
    for (int j = 0; j < 3; ++j) {
      std::vector<bool> e(6, false);
      e[std::size_t(perm[std::size_t(2 * j)])] = e[std::size_t(perm[std::size_t(2 * j + 1)])] = true;
      sum += heads[std::size_t(j)].distance(e, Objective::l2);
    }
    best = std::min(best, sum);
  } while (std::next_permutation(perm.begin(), perm.end()));
  EXPECT_NEAR(total(refined), best, 1e-9 * best);
  // The refined sets still nest: each r = 1 set is the head's first pick, inside its r = 2 set.
  for (const auto& head : refined.sets)
    EXPECT_TRUE(std::find(head[1].begin(), head[1].end(), head[0][0]) != head[1].end());
}

TEST(SlotLayout, MultisetSearchNeverLosesOverAllLayers) {
  std::vector<std::vector<ChunkDistances>> layers;
  layers.push_back(planted_heads(6, {{0, 1}, {0, 2}}, 6));
  layers.push_back(planted_heads(6, {{3, 4}, {3, 5}}, 7));
  const std::vector<int> start{1, 2, 4, 5};
  const std::vector<int> refined = refine_multiset(layers, start, 2, Objective::l2);
  EXPECT_EQ(refined.size(), start.size());
  EXPECT_LE(slots_total(layers, refined, 2, Objective::l2), slots_total(layers, start, 2, Objective::l2));
  for (int c = 0; c < 6; ++c) EXPECT_LE(std::count(refined.begin(), refined.end(), c), 2);
}

TEST(SlotLayout, SharedScoresGiveTheSameSearchUnderEverySlotSet) {
  // llama.cpp's progressions searched one after another with one ScoreMemo: every search equals
  // the one that scores anew, bit for bit, and overlapping progressions reuse the scores.
  const auto heads = planted_heads(9, {{0, 1, 2, 5}, {1, 2, 3, 6}, {2, 4, 7, 8}}, 5);
  ScoreMemo memo;
  for (const auto& slots : chunk_progressions(9, 6)) {
    const std::vector<int> capacity = slot_capacity(slots, 9);
    const LayerSelection fresh = select_in_slots(heads, capacity, 2, Objective::l1, 0);
    const LayerSelection shared = select_in_slots(heads, capacity, 2, Objective::l1, 0, &memo);
    EXPECT_EQ(shared.order, fresh.order);
    EXPECT_EQ(shared.distance, fresh.distance);
  }
  // 4 progressions × 3 heads × (1 + r) scorings; the empty start alone is shared by all four.
  EXPECT_LE(memo.entries(), 3 + 4 * 3 * 2);
}

TEST(SlotLayout, RepeatedChunksGoToDistinctHeads) {
  // Every head wants chunk 1 most; two slots turn at chunk 1, one at each of 0, 2, 3, 4.
  const auto heads = planted_heads(5, {{1, 0}, {1, 2}, {1, 3}}, 3);
  const std::vector<int> capacity = slot_capacity({0, 1, 1, 2, 3, 4}, 5);
  const LayerSelection layer = select_in_slots(heads, capacity, 2, Objective::l1, 4);
  std::vector<std::vector<int>> sets;
  for (const auto& head : layer.sets) sets.push_back(head.back());
  EXPECT_EQ(slot_overflow(sets, capacity), "");
  int holders = 0;
  for (const auto& set : sets) holders += std::count(set.begin(), set.end(), 1);
  EXPECT_EQ(holders, 2);
  EXPECT_EKV_ERROR(select_in_slots(heads, slot_capacity({0, 1, 2, 3}, 5), 2, Objective::l1, 4), "layer 4",
                   "need 6 slots");
}

TEST(SlotLayout, OverflowNamesTheChunkAndTheHeads) {
  const std::string overflow = slot_overflow({{0, 3}, {3, 5}}, slot_capacity({0, 3, 5}, 6));
  EXPECT_NE(overflow.find("chunk 3"), std::string::npos) << overflow;
  EXPECT_NE(overflow.find("KV heads 0, 1"), std::string::npos) << overflow;
}

TEST(SlotLayout, ProgressionsAreEveryStartAndStepThatFits) {
  const auto all = chunk_progressions(8, 3);
  // Δ = 1: starts 0..5; Δ = 2: 0..3; Δ = 3: 0..1.
  EXPECT_EQ(all.size(), 6u + 4u + 2u);
  for (const auto& p : all) {
    ASSERT_EQ(p.size(), 3u);
    EXPECT_GT(p[1], p[0]);
    EXPECT_EQ(p[2] - p[1], p[1] - p[0]);
    EXPECT_LT(p[2], 8);
  }
  EXPECT_TRUE(chunk_progressions(4, 5).empty());
  EXPECT_EQ(chunk_progressions(4, 1).size(), 4u);
}

TEST(SlotLayout, MultisetKeepsTheCopiesWorthMost) {
  // Two layers of two heads at r = 1: chunk 2 is both heads' pick in layer 0, chunk 5 one head's
  // in both layers, chunk 0 one head's in layer 1 only.
  auto layer = [](std::vector<int> picks, std::vector<double> gains) {
    LayerSelection s;
    for (std::size_t j = 0; j < picks.size(); ++j) {
      s.order.push_back({picks[j]});
      s.distance.push_back({10.0, 10.0 - gains[j]});
    }
    return s;
  };
  const std::vector<LayerSelection> free{layer({2, 2}, {3.0, 1.0}), layer({5, 0}, {2.5, 0.5})};
  // Worth: chunk 2 first copy 3.0, second 1.0; chunk 5 2.5; chunk 0 0.5.
  EXPECT_EQ(slot_multiset(free, 1, 2, 6), (std::vector<int>{2, 5}));
  EXPECT_EQ(slot_multiset(free, 1, 3, 6), (std::vector<int>{2, 2, 5}));
  EXPECT_EQ(slot_multiset(free, 1, 4, 6), (std::vector<int>{0, 2, 2, 5}));
}

// The tool on the tiny planted model: layout files hold sets that fit their slots, the
// llama.cpp slots are a progression chosen over all layers, and a file whose sets do not fit
// its slots is refused on read.
TEST(SlotLayout, ToolWritesLayoutsThatFit) {
  TinyPipeline pipeline("slot-layout");
  for (const std::string layout : {"llama.cpp", "transformers"}) {
    SelectRopeOptions options;
    options.model = pipeline.path("tiny.gguf");
    options.calib = pipeline.path("calib.h5");
    options.r_max = 1;
    options.layout = layout;
    options.output = pipeline.path(layout + ".h5");
    run_select_rope(options);
    const RopeData rope = read_rope(options.output);
    EXPECT_EQ(rope_layout_name(rope.layout), layout);
    ASSERT_EQ(rope.slot_chunks.size(), 2u);  // r_max × G = 1 × 2
    if (layout == "llama.cpp") {
      EXPECT_LT(rope.slot_chunks[0], rope.slot_chunks[1]);
    }
    const auto capacity = slot_capacity(rope.slot_chunks, rope.chunks);
    for (int l = rope.layer_begin; l < rope.layer_end; ++l)
      EXPECT_EQ(slot_overflow(elite_sets(rope, l, 1), capacity), "") << layout << " layer " << l;
  }
  // A layout file whose sets overflow its slots is refused on read, naming the layer and chunk.
  RopeData doctored = read_rope(pipeline.path("llama.cpp.h5"));
  const int chunk = doctored.slot_chunks[0];
  for (auto& head : doctored.layers[1].sets) head[0] = {chunk};
  for (auto& head : doctored.layers[1].order) head[0] = chunk;
  write_rope(doctored, pipeline.path("doctored.h5"), "fingerprint", {});
  EXPECT_EKV_ERROR(read_rope(pipeline.path("doctored.h5")), "doctored.h5", "layers/1/elite",
                   "chunk " + std::to_string(chunk), "KV heads 0, 1");

  SelectRopeOptions bad;
  bad.model = pipeline.path("tiny.gguf");
  bad.calib = pipeline.path("calib.h5");
  bad.layout = "llama.cpp";
  bad.layers = "0:1";
  bad.output = pipeline.path("shard.h5");
  EXPECT_EKV_ERROR(run_select_rope(bad), "--slot-chunks");
  bad.layers.clear();
  bad.r_max = 1;
  bad.slot_chunks = {0, 1, 3};
  EXPECT_EKV_ERROR(run_select_rope(bad), "progression");
}

}  // namespace
}  // namespace ekv::test
