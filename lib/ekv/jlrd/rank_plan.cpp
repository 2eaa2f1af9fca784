#include "ekv/jlrd/rank_plan.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "ekv/core/error.hpp"
#include "ekv/lrd/rank_budget.hpp"

namespace ekv {

RankPlan::RankPlan(const JlrdSettings& settings, int kv_heads, int head_dim, int layers)
    : ranks_(settings.ranks),
      cache_ratios_(settings.cache_ratios),
      budget_(settings.budget),
      r_(settings.r),
      kv_heads_(kv_heads),
      head_dim_(head_dim),
      layers_(layers) {
  const double ratio = budget_ > 0 ? budget_ : cache_ratios_.empty() ? 0 : cache_ratios_[0];
  target_rank_ = !ranks_.empty() ? double(ranks_[0]) : latent_for_ratio(ratio, r_, kv_heads_, head_dim_);
  EKV_CHECK(!ranks_.empty() || target_rank_ >= 0, budget_ > 0 ? "--budget " : "--cache-ratio ", ratio,
            " is below what r = ", r_, " alone caches (", cache_ratio(r_, kv_heads_, head_dim_, 0),
            " of the full cache)");
}

int RankPlan::choice_rank() const { return int(std::lround(target_rank_)); }

void RankPlan::place_budget(const std::vector<Eigen::VectorXd>& gains, const std::vector<int>& max_ranks) {
  budget_ranks_ = allocate_budget(gains, max_ranks, std::llround(target_rank_ * layers_));
}

std::vector<int> RankPlan::layer_ranks(int index, int layer, int max_rank) const {
  if (budgeted() && budget_ranks_.size() != std::size_t(layers_))
    throw std::logic_error("RankPlan: a budget's ranks are read before place_budget placed them");
  std::vector<int> ranks;
  for (int rank : ranks_) {
    EKV_CHECK(rank <= max_rank, "--rank ", rank, ": layer ", layer, " has at most ", max_rank,
              " latent dims (its stacked non-elite key and value rows)");
    ranks.push_back(rank);
  }
  for (double ratio : cache_ratios_) {
    const double d_kv = latent_for_ratio(ratio, r_, kv_heads_, head_dim_);
    EKV_CHECK(d_kv >= 0, "--cache-ratio ", ratio, ": r = ", r_, " alone caches ", cache_ratio(r_, kv_heads_, head_dim_, 0),
              " of the full cache");
    ranks.push_back(std::clamp(int(std::lround(d_kv)), 0, max_rank));
  }
  if (budgeted()) ranks.push_back(budget_ranks_[std::size_t(index)]);
  return ranks;
}

}  // namespace ekv
