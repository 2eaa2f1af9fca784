// RoPElite search: planted truth, the fast L1/L2 scores against brute-force logits for every
// candidate of every round, the r = 0 and r = n_c ends, determinism, baselines and the tool.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "ekv/rope/chunk_distance.hpp"
#include "ekv/rope/rope_file.hpp"
#include "ekv/rope/selection.hpp"
#include "ekv/tools/calibrate.hpp"
#include "ekv/tools/select_rope.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"
#include "token_file.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

Matrix random_matrix(int rows, int cols, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

// Brute force from the definitions: the logit of (m, n) with RoPE on the elite chunks only.
double logit(const Matrix& q, const Matrix& k, int m, int n, const std::vector<double>& omega,
             const std::vector<bool>& rotate) {
  const int chunks = int(omega.size());
  double total = 0;
  for (int c = 0; c < chunks; ++c) {
    double q1 = q(m, c), q2 = q(m, c + chunks), k1 = k(n, c), k2 = k(n, c + chunks);
    if (rotate[std::size_t(c)]) {
      const double am = m * omega[std::size_t(c)], an = n * omega[std::size_t(c)];
      const double rq1 = q1 * std::cos(am) - q2 * std::sin(am), rq2 = q2 * std::cos(am) + q1 * std::sin(am);
      const double rk1 = k1 * std::cos(an) - k2 * std::sin(an), rk2 = k2 * std::cos(an) + k1 * std::sin(an);
      q1 = rq1, q2 = rq2, k1 = rk1, k2 = rk2;
    }
    total += q1 * k1 + q2 * k2;
  }
  return total / std::sqrt(2.0 * chunks);
}

struct Toy {
  std::vector<double> omega;
  std::vector<ChunkDistanceInput> sequences;
};

Toy make_toy(int S, int chunks, int heads, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Toy toy;
  for (int c = 0; c < chunks; ++c) toy.omega.push_back(std::pow(10000.0, -2.0 * c / (2 * chunks)));
  for (int s = 0; s < 2; ++s) {
    ChunkDistanceInput input;
    for (int h = 0; h < heads; ++h) input.queries.push_back(random_matrix(S, 2 * chunks, rng));
    input.keys = random_matrix(S, 2 * chunks, rng);
    toy.sequences.push_back(std::move(input));
  }
  return toy;
}

double brute_distance(const Toy& toy, const std::vector<bool>& elite, Objective objective) {
  const std::vector<bool> all(elite.size(), true);
  double total = 0;
  std::int64_t count = 0;
  for (const auto& seq : toy.sequences)
    for (const auto& q : seq.queries)
      for (int m = 0; m < q.rows(); ++m)
        for (int n = 0; n <= m; ++n) {
          const double delta = logit(q, seq.keys, m, n, toy.omega, elite) - logit(q, seq.keys, m, n, toy.omega, all);
          total += objective == Objective::l1 ? std::abs(delta) : delta * delta;
          ++count;
        }
  return total / double(count);
}

ChunkDistances build(const Toy& toy, int pairs) {
  ChunkDistances d(toy.omega, 2 * int(toy.omega.size()), pairs, 7);
  for (std::size_t s = 0; s < toy.sequences.size(); ++s) d.add_sequence(toy.sequences[s], s);
  return d;
}

TEST(ChunkDistances, FastScoresEqualBruteForceEveryRound) {
  const Toy toy = make_toy(9, 5, 2, 1);
  const ChunkDistances d = build(toy, 0);  // every causal pair for L1 too
  EXPECT_EQ(d.pairs_l2(), 2 * 2 * 9 * 10 / 2);
  for (Objective objective : {Objective::l1, Objective::l2}) {
    const auto search = d.greedy(5, objective, true);
    std::vector<bool> elite(5, false);
    EXPECT_NEAR(search.distance[0], brute_distance(toy, elite, objective), 1e-5 * search.distance[0]);
    for (std::size_t round = 0; round < search.order.size(); ++round) {
      for (int c = 0; c < 5; ++c) {
        if (elite[std::size_t(c)]) {
          EXPECT_TRUE(std::isnan(search.scores[round][std::size_t(c)]));
          continue;
        }
        std::vector<bool> candidate = elite;
        candidate[std::size_t(c)] = true;
        const double brute = brute_distance(toy, candidate, objective);
        EXPECT_NEAR(search.scores[round][std::size_t(c)], brute, 1e-5 * brute + 1e-12)
            << objective_name(objective) << " round " << round << " chunk " << c;
      }
      elite[std::size_t(search.order[round])] = true;
    }
    // r = n_c: the elite logits are the original ones, exactly.
    EXPECT_EQ(search.distance.back(), 0.0) << objective_name(objective);
  }
}

// The attention objective against its definition: the mean over queries (and query heads) of the
// variance of ℓ_E − ℓ under the original attention p(m, ·), brute force in fp64.
double brute_attention(const Toy& toy, const std::vector<bool>& elite) {
  const std::vector<bool> all(elite.size(), true);
  double total = 0;
  std::int64_t count = 0;
  for (const auto& seq : toy.sequences)
    for (const auto& q : seq.queries)
      for (int m = 0; m < q.rows(); ++m) {
        std::vector<double> logits, delta;
        for (int n = 0; n <= m; ++n) {
          logits.push_back(logit(q, seq.keys, m, n, toy.omega, all));
          delta.push_back(logit(q, seq.keys, m, n, toy.omega, elite) - logits.back());
        }
        const double top = *std::max_element(logits.begin(), logits.end());
        double z = 0, mean = 0, square = 0;
        for (double l : logits) z += std::exp(l - top);
        for (std::size_t n = 0; n < logits.size(); ++n) {
          const double p = std::exp(logits[n] - top) / z;
          mean += p * delta[n];
          square += p * delta[n] * delta[n];
        }
        total += square - mean * mean;
        ++count;
      }
  return total / double(count);
}

TEST(ChunkDistances, AttentionObjectiveIsTheVarianceUnderTheOriginalAttention) {
  const Toy toy = make_toy(10, 4, 2, 4);
  ChunkDistances d(toy.omega, 8, 10 * 4000, 11, /*with_attention=*/true);  // 4000 keys drawn per query
  for (std::size_t s = 0; s < toy.sequences.size(); ++s) d.add_sequence(toy.sequences[s], s);
  for (const std::vector<bool>& elite : {std::vector<bool>{false, false, false, false},
                                        std::vector<bool>{true, false, true, false},
                                        std::vector<bool>{false, true, true, true}}) {
    const double brute = brute_attention(toy, elite);
    EXPECT_NEAR(d.distance(elite, Objective::attention), brute, 0.03 * brute);
  }
  EXPECT_EQ(d.distance({true, true, true, true}, Objective::attention), 0.0);
  // A greedy round scores every candidate as distance() does.
  const auto search = d.greedy(2, Objective::attention, true);
  for (int c = 0; c < 4; ++c) {
    std::vector<bool> one(4, false);
    one[std::size_t(c)] = true;
    EXPECT_NEAR(search.scores[0][std::size_t(c)], d.distance(one, Objective::attention), 1e-12);
  }
}

TEST(ChunkDistances, NoElitesMeansFullyUnrotated) {
  const Toy toy = make_toy(6, 3, 1, 2);
  const ChunkDistances d = build(toy, 0);
  const std::vector<bool> none(3, false);
  EXPECT_NEAR(d.distance(none, Objective::l1), brute_distance(toy, none, Objective::l1), 1e-5);
  EXPECT_NEAR(d.distance(none, Objective::l2), brute_distance(toy, none, Objective::l2), 1e-9);
}

TEST(ChunkDistances, PlantedChunksAreFoundFirst) {
  // Logits depend only on chunks 1 and 4 (all other dims zero): both objectives pick them first.
  Toy toy = make_toy(16, 6, 3, 3);
  for (auto& seq : toy.sequences) {
    for (int c : {0, 2, 3, 5}) {
      seq.keys.col(c).setZero();
      seq.keys.col(c + 6).setZero();
    }
  }
  const ChunkDistances d = build(toy, 64);
  for (Objective objective : {Objective::l1, Objective::l2}) {
    const auto search = d.greedy(3, objective);
    std::vector<int> first(search.order.begin(), search.order.begin() + 2);
    std::sort(first.begin(), first.end());
    EXPECT_EQ(first, (std::vector<int>{1, 4})) << objective_name(objective);
    EXPECT_NEAR(search.distance[2], 0.0, 1e-6);
    EXPECT_EQ(search.order[2], 0) << "ties go to the lowest chunk";
  }
}

TEST(ChunkDistances, SameResultForAnyThreadCount) {
  const Toy toy = make_toy(40, 8, 3, 4);
  omp_set_num_threads(1);
  const auto one = build(toy, 300).greedy(8, Objective::l1);
  omp_set_num_threads(2);
  const auto two = build(toy, 300).greedy(8, Objective::l1);
  EXPECT_EQ(one.order, two.order);
  EXPECT_EQ(one.distance, two.distance);
}

TEST(CausalPairs, SampleIsDistinctCausalAndReproducible) {
  const auto all = sample_causal_pairs(5, 0, 1, 0);
  EXPECT_EQ(all.size(), 15u);
  EXPECT_EQ(all[14], (std::pair<int, int>{4, 4}));
  const auto some = sample_causal_pairs(512, 1000, 9, 3);
  EXPECT_EQ(some.size(), 1000u);
  EXPECT_EQ(some, sample_causal_pairs(512, 1000, 9, 3));
  EXPECT_NE(some, sample_causal_pairs(512, 1000, 9, 4));
  for (std::size_t i = 0; i < some.size(); ++i) {
    EXPECT_LE(some[i].second, some[i].first);
    if (i) {
      EXPECT_NE(some[i], some[i - 1]);
    }
  }
}

TEST(Baselines, UniformChunks) {
  EXPECT_EQ(uniform_chunks(32, 4), (std::vector<int>{4, 12, 20, 28}));
  EXPECT_EQ(uniform_chunks(32, 32).back(), 31);
  EXPECT_EQ(uniform_chunks(32, 1), (std::vector<int>{16}));
}

class SelectRopeTool : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir("select-rope");
    write_file(dir_ / "tiny.gguf", tiny_model_gguf(tiny_).build());
    std::vector<std::int32_t> stream;
    for (int i = 0; i < 400; ++i) stream.push_back((i * 11 + i / 5) % tiny_.config.vocab);
    write_token_file(dir_ / "tokens.safetensors", stream);
    CalibrateOptions calibrate;
    calibrate.model = (dir_ / "tiny.gguf").string();
    calibrate.tokens = (dir_ / "tokens.safetensors").string();
    calibrate.seq_len = 24;
    calibrate.num_seqs = 4;
    calibrate.keep_seqs = 3;
    calibrate.output = (dir_ / "calib.h5").string();
    run_calibrate(calibrate);
  }
  void TearDown() override { fs::remove_all(dir_); }

  SelectRopeOptions options(const std::string& method, const std::string& output, int threads = 0) {
    SelectRopeOptions o;
    o.model = (dir_ / "tiny.gguf").string();
    o.calib = (dir_ / "calib.h5").string();
    o.method = method;
    o.r_max = 4;
    o.pairs_per_seq = 100;
    o.threads = threads;
    o.output = (dir_ / output).string();
    return o;
  }

  fs::path dir_;
  TinyModel tiny_ = make_tiny_model(21);
};

TEST_F(SelectRopeTool, EveryMethodWritesNestedOrPerRSets) {
  for (const std::string method : {"elite", "uniform", "high", "low", "norm"}) {
    run_select_rope(options(method, method + ".h5"));
    const RopeData data = read_rope(dir_ / (method + ".h5"));
    ASSERT_EQ(data.layers.size(), 2u) << method;
    for (const auto& layer : data.layers)
      for (int j = 0; j < 2; ++j) {
        const auto& sets = layer.sets[std::size_t(j)];
        ASSERT_EQ(sets.size(), 4u);
        EXPECT_EQ(layer.distance[std::size_t(j)].size(), 5u);
        if (method != "uniform")  // nested: the r-set is the first r picks
          for (int r = 1; r <= 4; ++r) {
            std::vector<int> prefix(layer.order[std::size_t(j)].begin(), layer.order[std::size_t(j)].begin() + r);
            std::sort(prefix.begin(), prefix.end());
            EXPECT_EQ(sets[std::size_t(r - 1)], prefix) << method;
          }
      }
    if (method == "high") {
      EXPECT_EQ(data.layers[0].sets[0][2], (std::vector<int>{0, 1, 2}));
    } else if (method == "low") {
      EXPECT_EQ(data.layers[1].sets[1][1], (std::vector<int>{2, 3}));
    }
  }
  // The greedy search is at least as good as every baseline on the data it searched, at r = 1.
  const RopeData elite = read_rope(dir_ / "elite.h5");
  for (const std::string method : {"uniform", "high", "low", "norm"}) {
    const RopeData other = read_rope(dir_ / (method + ".h5"));
    for (std::size_t l = 0; l < 2; ++l)
      for (int j = 0; j < 2; ++j)
        EXPECT_LE(elite.layers[l].distance[std::size_t(j)][1], other.layers[l].distance[std::size_t(j)][1] + 1e-12)
            << method;
  }
}

TEST_F(SelectRopeTool, DeterministicAcrossRunsAndThreads) {
  for (const std::string objective : {"l1", "l2"}) {
    SelectRopeOptions a = options("elite", "a.h5", 1), b = options("elite", "b.h5", 2);
    a.objective = b.objective = objective;
    run_select_rope(a);
    run_select_rope(b);
    const ArtifactReader ra(dir_ / "a.h5", "rope", 1), rb(dir_ / "b.h5", "rope", 1);
    for (const auto& info : ra.datasets()) {
      if (info.kind == ElementKind::i32) {
        EXPECT_EQ(ra.read_i32(info.name), rb.read_i32(info.name)) << info.name;
      } else {
        EXPECT_EQ(ra.read_f64(info.name), rb.read_f64(info.name)) << info.name;
      }
    }
  }
}

TEST_F(SelectRopeTool, EvaluateTable) {
  run_select_rope(options("elite", "elite.h5"));
  run_select_rope(options("low", "low.h5"));
  EvaluateRopeOptions evaluate;
  evaluate.model = (dir_ / "tiny.gguf").string();
  evaluate.calib = (dir_ / "calib.h5").string();
  evaluate.ropes = {(dir_ / "elite.h5").string(), (dir_ / "low.h5").string()};
  evaluate.ranks = {0, 2, 4};
  std::ostringstream out;
  run_evaluate_rope(evaluate, out);
  EXPECT_NE(out.str().find("| elite | l1 |"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("| low | - |"), std::string::npos) << out.str();
  evaluate.ranks = {5};
  EXPECT_EKV_ERROR(run_evaluate_rope(evaluate, out), "elite.h5", "r_max 4");
}

TEST_F(SelectRopeTool, LayerShardsMergeIntoTheWholeRun) {
  run_select_rope(options("elite", "whole.h5"));
  SelectRopeOptions first = options("elite", "l0.h5"), second = options("elite", "l1.h5");
  first.layers = "0:1";
  second.layers = "1:2";
  run_select_rope(first);
  run_select_rope(second);
  run_merge_rope({{(dir_ / "l1.h5").string(), (dir_ / "l0.h5").string()}, (dir_ / "merged.h5").string()});
  const RopeData whole = read_rope(dir_ / "whole.h5"), merged = read_rope(dir_ / "merged.h5");
  ASSERT_EQ(merged.layers.size(), 2u);
  for (std::size_t l = 0; l < 2; ++l) {
    EXPECT_EQ(merged.layers[l].order, whole.layers[l].order);
    EXPECT_EQ(merged.layers[l].distance, whole.layers[l].distance);
  }
  SelectRopeOptions other = options("high", "h1.h5");
  other.layers = "1:2";
  run_select_rope(other);
  EXPECT_EKV_ERROR(run_merge_rope({{(dir_ / "l0.h5").string(), (dir_ / "h1.h5").string()}, (dir_ / "bad.h5").string()}),
                   "other options");
  EXPECT_EKV_ERROR(run_merge_rope({{(dir_ / "l0.h5").string(), (dir_ / "whole.h5").string()}, (dir_ / "bad.h5").string()}),
                   "gap or overlap");
}

TEST_F(SelectRopeTool, RefusesAnotherModelsCalibration) {
  TinyModel other = make_tiny_model(22);
  other.config.rope_theta = 5000;  // the fingerprint covers config and tensor shapes, not values
  write_file(dir_ / "other.gguf", tiny_model_gguf(other).build());
  SelectRopeOptions o = options("elite", "x.h5");
  o.model = (dir_ / "other.gguf").string();
  EXPECT_EKV_ERROR(run_select_rope(o), "calib.h5", "model_fingerprint");
  EXPECT_FALSE(fs::exists(dir_ / "x.h5"));
}

}  // namespace
}  // namespace ekv::test
