#include "ekv/rope/rope_file.hpp"

#include <algorithm>
#include <cstdint>

#include "ekv/core/error.hpp"
#include "ekv/io/artifact_matrix.hpp"
#include "ekv/model/config.hpp"

namespace ekv {

namespace fs = std::filesystem;

void write_rope(const RopeData& data, const fs::path& path, const std::string& model_fingerprint,
                const std::vector<ArtifactInput>& inputs) {
  ArtifactWriter writer(path, "rope", kRopeFormatVersion, model_fingerprint, inputs);
  const int g = data.kv_heads, r_max = data.options.r_max;
  for (const auto& layer : data.layers) {
    std::vector<std::int32_t> order, elite(std::size_t(g) * r_max * r_max, -1);
    std::vector<double> distance;
    for (int j = 0; j < g; ++j) {
      order.insert(order.end(), layer.order[std::size_t(j)].begin(), layer.order[std::size_t(j)].end());
      distance.insert(distance.end(), layer.distance[std::size_t(j)].begin(), layer.distance[std::size_t(j)].end());
      for (int r = 1; r <= r_max; ++r)
        std::copy(layer.sets[std::size_t(j)][std::size_t(r - 1)].begin(),
                  layer.sets[std::size_t(j)][std::size_t(r - 1)].end(),
                  elite.begin() + (std::ptrdiff_t(j) * r_max + (r - 1)) * r_max);
    }
    const auto G = std::uint64_t(g), R = std::uint64_t(r_max);
    writer.write(layer_dataset(layer.layer, "order"), std::span<const std::int32_t>(order), {G, R});
    writer.write(layer_dataset(layer.layer, "elite"), std::span<const std::int32_t>(elite), {G, R, R});
    writer.write(layer_dataset(layer.layer, "distance"), std::span<const double>(distance), {G, R + 1});
  }
  writer.set_attribute("/", "method", select_method_name(data.options.method));
  writer.set_attribute("/", "objective", objective_name(data.options.objective));
  writer.set_attribute("/", "r_max", std::int64_t(r_max));
  writer.set_attribute("/", "pairs_per_seq", std::int64_t(data.options.pairs_per_seq));
  writer.set_attribute("/", "pair_seed", std::int64_t(data.options.pair_seed));
  writer.set_attribute("/", "layer_begin", std::int64_t(data.layer_begin));
  writer.set_attribute("/", "layer_end", std::int64_t(data.layer_end));
  writer.set_attribute("/", "chunks", std::int64_t(data.chunks));
  writer.set_attribute("/", "kv_heads", std::int64_t(g));
  writer.set_attribute("/", "head_dim", std::int64_t(data.head_dim));
  writer.set_attribute("/", "seq_len", std::int64_t(data.seq_len));
  writer.set_attribute("/", "sequences", std::int64_t(data.sequences));
  if (data.layout != RopeLayout::free) {  // a free file stays as before the engine layouts
    writer.set_attribute("/", "layout", rope_layout_name(data.layout));
    const std::vector<std::int32_t> slots(data.slot_chunks.begin(), data.slot_chunks.end());
    writer.write("/slot_chunks", std::span<const std::int32_t>(slots), {std::uint64_t(slots.size())});
  }
  writer.commit();
}

void require_rope_fits(const RopeData& data, const ModelConfig& config, const std::string& file,
                       const std::string& model_name) {
  EKV_CHECK(data.chunks == config.chunks() && data.kv_heads == config.kv_heads && data.head_dim == config.head_dim &&
                data.layer_end <= config.layers,
            file, ": chunks ", data.chunks, ", kv_heads ", data.kv_heads, ", head_dim ", data.head_dim, ", layers ",
            data.layer_begin, ":", data.layer_end, " do not fit ", model_name, " (", config.chunks(), " chunks, ",
            config.kv_heads, " KV heads, head dim ", config.head_dim, ", ", config.layers, " layers)");
}

RopeData read_rope_of(const fs::path& path, const ModelConfig& config, const std::string& model_fingerprint,
                      const std::string& model_name) {
  Provenance provenance;
  RopeData data = read_rope(path, &provenance);
  EKV_CHECK(provenance.model_fingerprint == model_fingerprint, path.string(),
            ": model_fingerprint: made from another model than ", model_name);
  require_rope_fits(data, config, path.string(), model_name);
  return data;
}

std::vector<std::vector<int>> elite_sets(const RopeData& rope, int layer, int r) {
  EKV_CHECK(layer >= rope.layer_begin && layer < rope.layer_end, "rope file: layer ", layer, " is not in its layers ",
            rope.layer_begin, ":", rope.layer_end);
  EKV_CHECK(r >= 0 && r <= rope.options.r_max, "rope file: r = ", r, " outside 0..", rope.options.r_max);
  std::vector<std::vector<int>> sets(static_cast<std::size_t>(rope.kv_heads));
  if (r > 0)
    for (int j = 0; j < rope.kv_heads; ++j)
      sets[std::size_t(j)] = rope.layers[std::size_t(layer - rope.layer_begin)].sets[std::size_t(j)][std::size_t(r - 1)];
  return sets;
}

namespace {
// A pick order is all -1 (a method that is not nested) or distinct chunks in [0, chunks).
void require_pick_order(const std::vector<int>& order, int chunks, const std::string& where) {
  const bool unordered = std::all_of(order.begin(), order.end(), [](int c) { return c == -1; });
  if (unordered) return;
  std::vector<bool> seen(std::size_t(chunks), false);
  for (int c : order) {
    EKV_CHECK(c >= 0 && c < chunks, where, ": chunk ", c, " outside [0, ", chunks, ")");
    EKV_CHECK(!seen[std::size_t(c)], where, ": chunk ", c, " picked twice");
    seen[std::size_t(c)] = true;
  }
}
}  // namespace

RopeData read_rope(const fs::path& path, Provenance* provenance) {
  const ArtifactReader reader(path, "rope", kRopeFormatVersion);
  if (provenance) *provenance = reader.provenance();
  const std::string file = path.string();
  RopeData data;
  data.options.method = parse_select_method(reader.string_attribute("/", "method"));
  data.options.objective = parse_objective(reader.string_attribute("/", "objective"));
  data.options.r_max = reader.int_attribute_in("/", "r_max", 1, kMaxHeadDim / 2);
  data.options.pairs_per_seq = reader.int_attribute_in("/", "pairs_per_seq", 0, INT32_MAX);
  data.options.pair_seed = std::uint64_t(reader.int_attribute("/", "pair_seed"));
  data.layer_begin = reader.int_attribute_in("/", "layer_begin", 0, kMaxLayers - 1);
  data.layer_end = reader.int_attribute_in("/", "layer_end", 1, kMaxLayers);
  data.chunks = reader.int_attribute_in("/", "chunks", 1, kMaxHeadDim / 2);
  data.kv_heads = reader.int_attribute_in("/", "kv_heads", 1, kMaxHeads);
  data.head_dim = reader.int_attribute_in("/", "head_dim", 2, kMaxHeadDim);
  data.seq_len = reader.int_attribute_in("/", "seq_len", 0, INT32_MAX);
  data.sequences = reader.int_attribute_in("/", "sequences", 0, INT32_MAX);
  const int g = data.kv_heads, r_max = data.options.r_max;
  EKV_CHECK(r_max <= data.chunks && data.layer_begin < data.layer_end && data.head_dim == 2 * data.chunks, file,
            ": root attributes r_max ", r_max, ", chunks ", data.chunks, ", head_dim ", data.head_dim, ", layers ",
            data.layer_begin, ":", data.layer_end, " are inconsistent (r_max ≤ chunks = head_dim / 2)");
  if (reader.has_attribute("/", "layout")) {
    const std::string layout = reader.string_attribute("/", "layout");
    EKV_CHECK(layout == "free" || layout == "llama.cpp" || layout == "transformers", file, ": layout: ", layout,
              " is not free, llama.cpp or transformers");
    data.layout = parse_rope_layout(layout);
  }
  std::vector<int> capacity;
  if (data.layout != RopeLayout::free) {
    const auto slots = reader.read_i32("/slot_chunks", {-1});
    data.slot_chunks.assign(slots.begin(), slots.end());
    for (int c : data.slot_chunks)
      EKV_CHECK(c >= 0 && c < data.chunks, file, ":/slot_chunks: chunk ", c, " outside [0, ", data.chunks, ")");
    capacity = slot_capacity(data.slot_chunks, data.chunks);
  }
  for (int l = data.layer_begin; l < data.layer_end; ++l) {
    LayerSelection layer;
    layer.layer = l;
    const auto order = reader.read_i32(layer_dataset(l, "order"), {g, r_max});
    const auto elite = reader.read_i32(layer_dataset(l, "elite"), {g, r_max, r_max});
    const auto distance = reader.read_f64(layer_dataset(l, "distance"), {g, r_max + 1});
    for (std::size_t i = 0; i < distance.size(); ++i)
      EKV_CHECK(distance[i] >= 0, file, ":", layer_dataset(l, "distance"), ": element ", i, " is ", distance[i],
                " (a distance is never negative)");
    for (int j = 0; j < g; ++j) {
      layer.order.emplace_back(order.begin() + std::ptrdiff_t(j) * r_max, order.begin() + std::ptrdiff_t(j + 1) * r_max);
      require_pick_order(layer.order.back(), data.chunks, cat(file, ":", layer_dataset(l, "order"), ": KV head ", j));
      layer.distance.emplace_back(distance.begin() + std::ptrdiff_t(j) * (r_max + 1),
                                  distance.begin() + std::ptrdiff_t(j + 1) * (r_max + 1));
      std::vector<std::vector<int>> sets;
      for (int r = 1; r <= r_max; ++r) {
        const auto row = elite.begin() + (std::ptrdiff_t(j) * r_max + (r - 1)) * r_max;
        std::vector<int> set(row, row + r);
        EKV_CHECK(is_chunk_set(set, data.chunks), file, ":", layer_dataset(l, "elite"), ": KV head ", j, ", r = ", r,
                  ": chunks must be distinct, ascending and in [0, ", data.chunks, ")");
        // A nested method's r-set is its first r picks (rope/selection.cpp).
        if (layer.order.back()[0] >= 0) {
          std::vector<int> picked(layer.order.back().begin(), layer.order.back().begin() + r);
          std::sort(picked.begin(), picked.end());
          EKV_CHECK(picked == set, file, ":", layer_dataset(l, "elite"), ": KV head ", j, ", r = ", r,
                    ": the set is not the first ", r, " picks of /order");
        }
        sets.push_back(std::move(set));
      }
      layer.sets.push_back(std::move(sets));
    }
    if (!capacity.empty()) {
      std::vector<std::vector<int>> top;
      for (const auto& sets : layer.sets) top.push_back(sets.back());
      const std::string overflow = slot_overflow(top, capacity);
      EKV_CHECK(overflow.empty(), file, ":", layer_dataset(l, "elite"), ": r = ", r_max, ": ", overflow, " (",
                rope_layout_name(data.layout), " layout of /slot_chunks)");
    }
    data.layers.push_back(std::move(layer));
  }
  return data;
}

void merge_rope(const std::vector<fs::path>& shards, const fs::path& output) {
  EKV_CHECK(shards.size() >= 2, "rope merge: give at least two shards");
  std::vector<std::pair<RopeData, Provenance>> parts;
  for (const auto& shard : shards) {
    Provenance provenance;
    RopeData data = read_rope(shard, &provenance);
    parts.emplace_back(std::move(data), std::move(provenance));
  }
  std::sort(parts.begin(), parts.end(),
            [](const auto& a, const auto& b) { return a.first.layer_begin < b.first.layer_begin; });
  RopeData merged = parts.front().first;
  const Provenance& first = parts.front().second;
  std::vector<ArtifactInput> inputs;
  for (const auto& shard : shards) inputs.push_back(file_input(shard, "rope"));
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const RopeData& part = parts[i].first;
    const std::string& producer = parts[i].second.command_line;
    EKV_CHECK(parts[i].second.model_fingerprint == first.model_fingerprint, "rope merge: shard (", producer,
              ") was made from another model");
    EKV_CHECK(part.options.method == merged.options.method && part.options.objective == merged.options.objective &&
                  part.options.r_max == merged.options.r_max && part.options.pairs_per_seq == merged.options.pairs_per_seq &&
                  part.options.pair_seed == merged.options.pair_seed && part.kv_heads == merged.kv_heads &&
                  part.chunks == merged.chunks && part.layout == merged.layout &&
                  part.slot_chunks == merged.slot_chunks,
              "rope merge: shard (", producer, ") used other options (method, objective, r_max, pairs, layout, "
              "slots or shape)");
    EKV_CHECK(part.layer_begin == merged.layer_end, "rope merge: layers ", part.layer_begin, ":", part.layer_end,
              " do not continue ", merged.layer_begin, ":", merged.layer_end, " (gap or overlap)");
    merged.layers.insert(merged.layers.end(), part.layers.begin(), part.layers.end());
    merged.layer_end = part.layer_end;
  }
  write_rope(merged, output, first.model_fingerprint, inputs);
}

}  // namespace ekv
