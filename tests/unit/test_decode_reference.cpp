// The CPU references the GPU kernels are verified against (ekv-cuda-verify), in the kernels'
// batch layouts: the full-cache one is softmax attention per KV-head group (checked against a
// plain Eigen computation), reads no row past a sequence's length, and the compressed one is
// exactly the full attention it absorbs (MLA: K = [k_e | B_k c], V = B_v c, q̃ = B_kᵀ q_rest).
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ekv/compressed/decode_reference.hpp"

namespace ekv {
namespace {

std::vector<float> normal_values(std::size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> out(count);
  for (float& x : out) x = normal(rng);
  return out;
}

constexpr int kBatch = 2, kHeads = 6, kKvHeads = 2, kContext = 9;
const std::vector<int> kLengths = {9, 5};

TEST(DecodeReference, FullCacheIsSoftmaxAttentionOfEachHeadsGroup) {
  const int dh = 8;
  const float scale = 0.35f;
  std::mt19937 rng(7);
  auto q = normal_values(std::size_t(kBatch) * kHeads * dh, rng);
  auto k = normal_values(std::size_t(kBatch) * kContext * kKvHeads * dh, rng);
  auto v = normal_values(k.size(), rng);
  // Rows past a sequence's length are not part of it: NaN there must not reach the output.
  for (int t = kLengths[1]; t < kContext; ++t)
    for (int i = 0; i < kKvHeads * dh; ++i) {
      const std::size_t at = (std::size_t(kContext) + t) * kKvHeads * dh + i;
      k[at] = v[at] = std::numeric_limits<float>::quiet_NaN();
    }
  std::vector<float> out(q.size());
  full_decode_reference({kBatch, kHeads, kKvHeads, kContext, scale}, dh, q.data(), k.data(), v.data(),
                        kLengths.data(), out.data());
  for (int b = 0; b < kBatch; ++b)
    for (int h = 0; h < kHeads; ++h) {
      const int j = h / (kHeads / kKvHeads), T = kLengths[std::size_t(b)];
      Eigen::MatrixXd K(T, dh), V(T, dh);
      for (int t = 0; t < T; ++t)
        for (int i = 0; i < dh; ++i) {
          const std::size_t at = ((std::size_t(b) * kContext + t) * kKvHeads + j) * dh + i;
          K(t, i) = k[at];
          V(t, i) = v[at];
        }
      const Eigen::VectorXd query =
          Eigen::Map<const Eigen::VectorXf>(q.data() + (std::size_t(b) * kHeads + h) * dh, dh).cast<double>();
      Eigen::VectorXd p = (K * query * double(scale)).array().exp();
      p /= p.sum();
      const Eigen::VectorXd expected = V.transpose() * p;
      for (int i = 0; i < dh; ++i)
        EXPECT_NEAR(out[(std::size_t(b) * kHeads + h) * dh + std::size_t(i)], expected[i], 1e-5)
            << "b " << b << " h " << h << " i " << i;
    }
}

TEST(DecodeReference, CompressedCacheIsTheFullAttentionItAbsorbs) {
  const int r = 2, rest = 6, dh = 2 * r + rest, rank = 5;
  const float scale = 0.3f;
  std::mt19937 rng(11);
  const auto k_elite = normal_values(std::size_t(kBatch) * kContext * kKvHeads * 2 * r, rng);
  const auto latent = normal_values(std::size_t(kBatch) * kContext * rank, rng);
  const auto q_elite = normal_values(std::size_t(kBatch) * kHeads * 2 * r, rng);
  const auto q_rest = normal_values(std::size_t(kBatch) * kHeads * rest, rng);
  std::vector<Eigen::MatrixXf> b_k, b_v;  // per KV head: [rest, d_kv], [d_h, d_kv]
  for (int j = 0; j < kKvHeads; ++j) {
    b_k.push_back(Eigen::MatrixXf::Random(rest, rank));
    b_v.push_back(Eigen::MatrixXf::Random(dh, rank));
  }
  // The full cache the latent stands for, and the absorbed queries.
  std::vector<float> k(std::size_t(kBatch) * kContext * kKvHeads * dh), v(k.size()), q(std::size_t(kBatch) * kHeads * dh),
      q_latent(std::size_t(kBatch) * kHeads * rank);
  for (int b = 0; b < kBatch; ++b)
    for (int t = 0; t < kContext; ++t) {
      const Eigen::Map<const Eigen::VectorXf> c(latent.data() + (std::size_t(b) * kContext + t) * rank, rank);
      for (int j = 0; j < kKvHeads; ++j) {
        const std::size_t row = (std::size_t(b) * kContext + t) * kKvHeads + j;
        Eigen::Map<Eigen::VectorXf> key(k.data() + row * dh, dh), value(v.data() + row * dh, dh);
        key.head(2 * r) = Eigen::Map<const Eigen::VectorXf>(k_elite.data() + row * 2 * r, 2 * r);
        key.tail(rest) = b_k[std::size_t(j)] * c;
        value = b_v[std::size_t(j)] * c;
      }
    }
  for (int b = 0; b < kBatch; ++b)
    for (int h = 0; h < kHeads; ++h) {
      const std::size_t bh = std::size_t(b) * kHeads + h;
      const int j = h / (kHeads / kKvHeads);
      Eigen::Map<Eigen::VectorXf> query(q.data() + bh * dh, dh);
      query.head(2 * r) = Eigen::Map<const Eigen::VectorXf>(q_elite.data() + bh * 2 * r, 2 * r);
      query.tail(rest) = Eigen::Map<const Eigen::VectorXf>(q_rest.data() + bh * rest, rest);
      Eigen::Map<Eigen::VectorXf>(q_latent.data() + bh * rank, rank) =
          b_k[std::size_t(j)].transpose() * query.tail(rest);
    }
  const DecodeBatchShape shape{kBatch, kHeads, kKvHeads, kContext, scale};
  std::vector<float> full(q.size()), o_latent(q_latent.size());
  full_decode_reference(shape, dh, q.data(), k.data(), v.data(), kLengths.data(), full.data());
  compressed_decode_reference(shape, r, rank, q_elite.data(), q_latent.data(), k_elite.data(), latent.data(),
                              kLengths.data(), o_latent.data());
  for (int b = 0; b < kBatch; ++b)
    for (int h = 0; h < kHeads; ++h) {
      const std::size_t bh = std::size_t(b) * kHeads + h;
      const Eigen::VectorXf expected =
          b_v[std::size_t(h / (kHeads / kKvHeads))] * Eigen::Map<const Eigen::VectorXf>(o_latent.data() + bh * rank, rank);
      for (int i = 0; i < dh; ++i)
        EXPECT_NEAR(full[bh * dh + std::size_t(i)], expected[i], 1e-4) << "b " << b << " h " << h << " i " << i;
    }
}

}  // namespace
}  // namespace ekv
