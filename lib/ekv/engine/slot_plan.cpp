#include "ekv/engine/slot_plan.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "ekv/core/error.hpp"
#include "ekv/model/rope_frequencies.hpp"

namespace ekv {

EngineFormat parse_engine_format(const std::string& name) {
  if (name == "gguf") return EngineFormat::gguf;
  if (name == "hf-deepseek") return EngineFormat::hf_deepseek;
  fail("unknown engine format " + name + " (gguf, hf-deepseek)");
}

std::string engine_format_name(EngineFormat format) {
  return format == EngineFormat::gguf ? "gguf" : "hf-deepseek";
}

namespace {
// llama.cpp: the slots are the shortest progression holding every rotated chunk; each layer
// gives a slot to at most one KV head.
void plan_progression(const ModelConfig& c, SlotPlan& plan) {
  std::set<int> used;
  for (const auto& layer : c.elitekv.elite)
    for (const auto& head : layer) used.insert(head.begin(), head.end());
  const int first = *used.begin();
  int step = 0;
  for (int chunk : used) step = std::gcd(step, chunk - first);
  if (step == 0) step = 1;
  const int slots = (*used.rbegin() - first) / step + 1;
  for (int i = 0; i < slots; ++i) plan.slot_chunks.push_back(first + i * step);

  // One frequency base and a linear scale give ω_i = scale · base^(−2i/n_rot): the chunks'
  // frequencies must be geometric along the progression (true for plain and linearly scaled
  // RoPE, not for Llama 3's rule, whose band between the limits is interpolated).
  const std::vector<double> omega = rope_frequencies(c);
  const double ratio = slots > 1 ? omega[std::size_t(first + step)] / omega[std::size_t(first)] : 1.0;
  for (int i = 0; i < slots; ++i) {
    const double want = omega[std::size_t(first + i * step)], have = omega[std::size_t(first)] * std::pow(ratio, i);
    EKV_CHECK(std::abs(have - want) <= 1e-9 * want, "gguf: chunk ", first + i * step, " of this model turns at ",
              want, ", not on the progression ", omega[std::size_t(first)], " · ", ratio,
              "^i that llama.cpp's one frequency base can give (RoPE scaling '", c.rope_scaling.kind,
              "'); --format hf-deepseek holds any frequencies");
  }
  plan.freq_scale = omega[std::size_t(first)];
  plan.freq_base = slots > 1 ? std::pow(ratio, -double(slots)) : c.rope_theta;  // ratio = base^(−2/n_rot)

  for (std::size_t l = 0; l < c.elitekv.elite.size(); ++l) {
    std::vector<SlotHolder> row(static_cast<std::size_t>(slots));
    for (std::size_t j = 0; j < c.elitekv.elite[l].size(); ++j)
      for (std::size_t i = 0; i < c.elitekv.elite[l][j].size(); ++i) {
        const int chunk = c.elitekv.elite[l][j][i], slot = (chunk - first) / step;
        SlotHolder& holder = row[std::size_t(slot)];
        EKV_CHECK(holder.kv_head < 0, "gguf: layer ", l, ": KV heads ", holder.kv_head, " and ", j,
                  " both rotate chunk ", chunk, "; llama.cpp's deepseek2 caches one rotary key per frequency and "
                  "layer (select the chunks with ekv-select-rope --layout llama.cpp, or write --format hf-deepseek)");
        holder = {int(j), int(i)};
      }
    plan.holder.push_back(std::move(row));
  }
}

// transformers: one slot per (chunk, copy), as many copies of a chunk as the layer that rotates
// it with the most KV heads needs.
void plan_multiset(const ModelConfig& c, SlotPlan& plan) {
  const int chunks = c.chunks();
  std::vector<int> copies(std::size_t(chunks), 0);
  for (const auto& layer : c.elitekv.elite) {
    std::vector<int> count(std::size_t(chunks), 0);
    for (const auto& head : layer)
      for (int chunk : head) copies[std::size_t(chunk)] = std::max(copies[std::size_t(chunk)], ++count[std::size_t(chunk)]);
  }
  std::vector<int> first_slot(std::size_t(chunks), 0);
  for (int chunk = 0; chunk < chunks; ++chunk) {
    first_slot[std::size_t(chunk)] = int(plan.slot_chunks.size());
    plan.slot_chunks.insert(plan.slot_chunks.end(), std::size_t(copies[std::size_t(chunk)]), chunk);
  }
  for (const auto& layer : c.elitekv.elite) {
    std::vector<SlotHolder> row(plan.slot_chunks.size());
    std::vector<int> taken(std::size_t(chunks), 0);
    for (std::size_t j = 0; j < layer.size(); ++j)
      for (std::size_t i = 0; i < layer[j].size(); ++i) {
        const int chunk = layer[j][i];
        row[std::size_t(first_slot[std::size_t(chunk)] + taken[std::size_t(chunk)]++)] = {int(j), int(i)};
      }
    plan.holder.push_back(std::move(row));
  }
}
}  // namespace

SlotPlan plan_slots(const ModelConfig& c, EngineFormat format) {
  EKV_CHECK(c.elitekv.enabled(), "engine export: ", c.name, " is not an EliteKV model (make one with ekv-export)");
  EKV_CHECK(c.elitekv.r >= 1, "engine export: r = ", c.elitekv.r, ": an MLA format needs at least one rotary slot");
  EKV_CHECK(format == EngineFormat::hf_deepseek || !c.attention_bias,
            "gguf: this model has attention biases (", c.architecture, "); llama.cpp's deepseek2 has none, so its "
            "query, elite-key and value biases cannot be written (--format hf-deepseek holds them)");
  SlotPlan plan;
  plan.kv_lora_rank = *std::max_element(c.elitekv.kv_rank.begin(), c.elitekv.kv_rank.end());
  plan.nope_dim = std::max(1, c.head_dim - 2 * c.elitekv.r);
  if (format == EngineFormat::gguf) plan_progression(c, plan);
  else plan_multiset(c, plan);
  return plan;
}

}  // namespace ekv
