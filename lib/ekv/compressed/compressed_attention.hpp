// The attention of an EliteKV-compressed layer (docs/method.md §6). Per token it caches only the
// post-RoPE elite key dims k_e (G·2r values) and the latent c = A x (d_kv values). Two ways to
// attend over that cache, which must agree:
//   absorbed:     logits = s (q_e·k_e + q̃·c) with q̃ = B_kᵀ q_n; o^h = B_v Σ_t p_t c_t
//   reconstruct:  k_n = B_k c, v = B_v c, then ordinary attention with RoPE on the elite dims only
// Without a cache, forward() attends within the given sequences (prefill, perplexity); after
// start_cache() every call appends its tokens to a per-sequence cache and attends over all of
// it, so feeding one token at a time decodes.
#pragma once

#include <memory>
#include <vector>

#include "ekv/model/config.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/rope_frequencies.hpp"

namespace ekv {

enum class AttentionPath { absorbed, reconstruct };

// Rotates the elite dims of one head in the k_e layout: the r dims of chunks[i] at i, their
// partners at i + r.
void rotate_elite(float* head, const std::vector<int>& chunks, const RopeTable& rope, std::int64_t position);

class CompressedAttention final : public AttentionImpl {
 public:
  CompressedAttention(const ModelConfig& config, std::shared_ptr<const RopeTable> rope, int layer);

  // Expects the EliteKV weights of LayerWeights (wq, wk_rope, kv_a, k_b, v_b, wo). The capture
  // hook is not called: it describes the original attention, which this layer no longer has.
  Matrix forward(const LayerWeights& weights, const Matrix& x, int first_sequence, int batch, int seq_len,
                 const CaptureHook& capture) override;

  void set_path(AttentionPath path) { path_ = path; }
  AttentionPath path() const { return path_; }
  // From now on forward() appends to the caches of `sequences` sequences (emptied here).
  void start_cache(int sequences);
  void stop_cache() { caches_.clear(); }
  std::int64_t cached_tokens(int sequence) const { return caches_.at(std::size_t(sequence)).tokens; }
  // Elements cached per token: G·2r + d_kv.
  int cache_width() const;

 private:
  struct SequenceCache {
    Matrix k_elite;  // [capacity, G*2r], post-RoPE
    Matrix latent;   // [capacity, d_kv]
    std::int64_t tokens = 0;
  };
  void append(SequenceCache& cache, const Matrix& k_elite, const Matrix& latent, Eigen::Index row0, int count);
  // Attention of one sequence's queries (rows [row0, row0+count) of q) over keys [0, keys).
  void attend(const LayerWeights& w, const Matrix& q, Eigen::Index row0, int count, std::int64_t first_position,
              const float* k_elite, const float* latent, std::int64_t keys, Matrix& out) const;

  ModelConfig config_;
  std::shared_ptr<const RopeTable> rope_;
  int layer_;
  std::vector<std::vector<int>> elite_;         // [kv head] elite chunks, ascending
  std::vector<std::vector<int>> rest_;          // [kv head] non-elite dims, ascending
  AttentionPath path_ = AttentionPath::reconstruct;
  std::vector<SequenceCache> caches_;
};

}  // namespace ekv
