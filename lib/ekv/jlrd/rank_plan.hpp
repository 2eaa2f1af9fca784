// Which latent sizes d_kv each layer of an ekv-jlrd run stores and sweeps: the ranks given, the
// ranks that reach the target cache ratios, or a whole-model budget placed among the layers from
// their error curves (lrd/rank_budget's greedy). The first rank of a layer is the one stored.
#pragma once

#include <Eigen/Core>
#include <vector>

#include "ekv/jlrd/jlrd_settings.hpp"

namespace ekv {

class RankPlan {
 public:
  // Refuses a cache ratio or budget below what the r rotated chunks alone cache.
  RankPlan(const JlrdSettings& settings, int kv_heads, int head_dim, int layers);

  bool budgeted() const { return budget_ > 0; }
  // The d_kv at which the output-aware choices are made: the first rank, or that of the first
  // ratio or of the budget.
  int choice_rank() const;
  // --budget: places budget × layers latent dims from each layer's gains (in layer order).
  void place_budget(const std::vector<Eigen::VectorXd>& gains, const std::vector<int>& max_ranks);
  // The ranks of the index-th layer of the run (model layer `layer`, whose factors hold at most
  // max_rank dims), the stored one first.
  std::vector<int> layer_ranks(int index, int layer, int max_rank) const;

 private:
  std::vector<int> ranks_;
  std::vector<double> cache_ratios_;
  double budget_;
  int r_, kv_heads_, head_dim_, layers_;
  double target_rank_;
  std::vector<int> budget_ranks_;
};

}  // namespace ekv
