#include <tessera/engine/error.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/puzzle/costs.hpp>

#include <tessera/dtype.hpp>

#include <algorithm>
#include <chrono>
#include <map>

namespace tessera::puzzle {

namespace {

size_t sz(int64_t n) {
  return static_cast<size_t>(n);
}

using Clock = std::chrono::steady_clock;

template <typename F>
Timing time_runs(int32_t repeats, F&& run) {
  run();  // warm-up
  std::vector<double> seconds;
  for (int32_t r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    run();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return summarise(std::move(seconds));
}

const BlockSpec& block_of(const Manifest& m, int32_t layer, ts_kind part) {
  const LayerSpec& spec = m.layers[sz(layer)];
  return part == TS_KIND_ATTENTION ? spec.attention : spec.ffn;
}

int64_t weight_bytes(const Model& model, int32_t layer, ts_kind part, const Variant& v) {
  if (v.block.kind == "noop") return 0;
  const std::string prefix =
      v.block.prefix.empty() ? default_block_prefix(layer, part) : v.block.prefix;
  int64_t bytes = 0;
  for (const auto& [name, tensor] : model.weights().all())
    if (name.compare(0, prefix.size(), prefix) == 0) bytes += static_cast<int64_t>(tensor.bytes());
  return bytes;
}

}  // namespace

ForwardBatch generation_batch(int32_t sequences, int32_t tokens, int32_t vocab) {
  ForwardBatch f;
  f.offsets.push_back(0);
  for (int32_t s = 0; s < sequences; ++s) {
    f.slots.push_back(s);
    for (int32_t i = 0; i < tokens; ++i) f.tokens.push_back((7 * (s * tokens + i) + 3) % vocab);
    f.offsets.push_back(f.offsets.back() + tokens);
  }
  f.last_only = true;
  return f;
}

Timing summarise(std::vector<double> seconds) {
  if (seconds.empty()) throw Error("summarise: no timings");
  std::sort(seconds.begin(), seconds.end());
  const size_t n = seconds.size();
  const double median = n % 2 == 1 ? seconds[n / 2] : 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]);
  Timing t;
  t.seconds = median;
  t.noise = median > 0 ? (seconds.back() - seconds.front()) / (2.0 * median) : 0.0;
  return t;
}

Costs measure_costs(Model& model, const std::vector<LayerVariants>& library,
                    const Scenario& scenario,
                    const std::function<void(int64_t done, int64_t total)>& progress) {
  const int32_t layers = model.num_layers();
  if (library.size() != static_cast<size_t>(layers))
    throw Error("costs: the model has " + std::to_string(layers) + " layers but the library " +
                std::to_string(library.size()));
  if (scenario.batch_sizes.empty() || scenario.prefill_len < 1 || scenario.decode_len < 1 ||
      scenario.repeats < 1)
    throw Error(
        "costs: the scenario needs batch sizes, prefill_len >= 1, decode_len >= 1 and "
        "repeats >= 1");
  const int32_t max_b = *std::max_element(scenario.batch_sizes.begin(), scenario.batch_sizes.end());
  const int32_t context = scenario.decode_context();
  if (model.slots() < max_b || model.capacity() < scenario.prefill_len + scenario.decode_len)
    throw Error("costs: the model has " + std::to_string(model.slots()) + " slots of " +
                std::to_string(model.capacity()) + " tokens; the scenario needs " +
                std::to_string(max_b) + " of " +
                std::to_string(scenario.prefill_len + scenario.decode_len));
  const int32_t vocab = model.vocab();
  const size_t nb = scenario.batch_sizes.size();
  const auto start = Clock::now();

  Costs costs;
  costs.scenario = scenario;
  costs.threads = model.pool().size();
  costs.weight_dtype = dtype_name(model.manifest().runtime.weight_dtype);
  costs.layers = shaped_like<VariantCost>(library);

  // The groups: a variant name of a part and the layers that offer it.
  struct Group {
    ts_kind part;
    std::string name;
    std::vector<std::pair<int32_t, size_t>> at;  // (layer, index in its list)
  };
  std::vector<Group> groups;
  for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
    for (int32_t l = 0; l < layers; ++l) {
      const std::vector<Variant>& list = library[sz(l)].of(part);
      for (size_t i = 0; i < list.size(); ++i) {
        auto g = std::find_if(groups.begin(), groups.end(), [&](const Group& x) {
          return x.part == part && x.name == list[i].name;
        });
        if (g == groups.end()) {
          groups.push_back({part, list[i].name, {}});
          g = groups.end() - 1;
        }
        g->at.emplace_back(l, i);
      }
    }

  // The whole model, as generation runs it: the prompt's prefill (logits of the last tokens)
  // and one decode step at the mean decode context.
  std::vector<ForwardBatch> prompt(nb), filler(nb), step(nb);
  for (size_t bi = 0; bi < nb; ++bi) {
    const int32_t b = scenario.batch_sizes[bi];
    prompt[bi] = generation_batch(b, scenario.prefill_len, vocab);
    filler[bi] = generation_batch(b, context, vocab);
    step[bi] = generation_batch(b, 1, vocab);  // at the context the slots' lengths are set to
  }
  std::vector<float> logits(static_cast<size_t>(max_b) * static_cast<size_t>(vocab));
  const auto reset_slots = [&] {
    for (int32_t s = 0; s < max_b; ++s) model.reset(s);
  };
  struct Whole {
    std::vector<Timing> prefill, decode;
  };
  const auto whole = [&]() {
    Whole w;
    for (size_t bi = 0; bi < nb; ++bi) {
      const int32_t b = scenario.batch_sizes[bi];
      w.prefill.push_back(time_runs(scenario.repeats, [&] {
        reset_slots();
        model.forward(prompt[bi], logits.data(), nullptr);
      }));
      reset_slots();
      model.forward(filler[bi], logits.data(), nullptr);
      w.decode.push_back(time_runs(scenario.repeats, [&] {
        for (int32_t s = 0; s < b; ++s) model.kv_cache().set_length(s, context);
        model.forward(step[bi], logits.data(), nullptr);
      }));
      reset_slots();
    }
    return w;
  };
  // The model with `blocks` swapped in at their layers, timed, and put back.
  const auto whole_with = [&](ts_kind part,
                              const std::vector<std::pair<int32_t, BlockSpec>>& blocks) {
    std::vector<std::pair<int32_t, BlockSpec>> original;
    original.reserve(blocks.size());
    for (const auto& [l, spec] : blocks)
      original.emplace_back(l, block_of(model.manifest(), l, part));
    const auto restore = [&] {
      for (const auto& [l, spec] : original) model.swap_block(l, part, spec);
      reset_slots();
    };
    Whole w;
    try {
      for (const auto& [l, spec] : blocks) model.swap_block(l, part, spec);
      w = whole();
    } catch (...) {
      restore();
      throw;
    }
    restore();
    return w;
  };

  const int64_t total = static_cast<int64_t>(groups.size()) + 1;
  int64_t done = 0;
  const Whole parent = whole();
  if (progress) progress(++done, total);
  costs.whole_prefill = parent.prefill;
  costs.whole_decode = parent.decode;

  // Each group against the same layers with no-ops: what the variant adds, per layer.
  std::map<std::pair<int, std::vector<int32_t>>, Whole> baselines;
  BlockSpec noop;
  noop.kind = "noop";
  for (const Group& g : groups) {
    std::vector<int32_t> at_layers;
    std::vector<std::pair<int32_t, BlockSpec>> variant, noops;
    for (const auto& [l, i] : g.at) {
      at_layers.push_back(l);
      variant.emplace_back(l, library[sz(l)].of(g.part)[i].block);
      noops.emplace_back(l, noop);
    }
    const auto k = static_cast<double>(g.at.size());
    std::vector<Timing> prefill(nb), decode(nb);
    if (g.name != "noop") {
      const auto key = std::make_pair(static_cast<int>(g.part), at_layers);
      if (!baselines.count(key)) baselines.emplace(key, whole_with(g.part, noops));
      const Whole& base = baselines.at(key);
      const Whole with = whole_with(g.part, variant);
      const auto per_layer = [&](const Timing& v, const Timing& b0) {
        Timing t;
        t.seconds = std::max(0.0, (v.seconds - b0.seconds) / k);
        // The spread of the two medians, per layer, relative to the result.
        const double spread = (v.noise * v.seconds + b0.noise * b0.seconds) / k;
        t.noise = t.seconds > 0 ? spread / t.seconds : 0.0;
        return t;
      };
      for (size_t bi = 0; bi < nb; ++bi) {
        prefill[bi] = per_layer(with.prefill[bi], base.prefill[bi]);
        decode[bi] = per_layer(with.decode[bi], base.decode[bi]);
      }
    }
    for (const auto& [l, i] : g.at) {
      VariantCost c;
      c.prefill = prefill;
      c.decode = decode;
      c.measured_in = g.at.front().first;
      const Variant& v = library[sz(l)].of(g.part)[i];
      c.weight_bytes = weight_bytes(model, l, g.part, v);
      costs.layers[sz(l)].of(g.part)[i] = std::move(c);
    }
    if (progress) progress(++done, total);
  }
  costs.measurements = static_cast<int64_t>(groups.size());

  // KV bytes per token, from each attention variant's cache shape.
  for (int32_t l = 0; l < layers; ++l) {
    const std::vector<Variant>& list = library[sz(l)].attention;
    const BlockSpec original = block_of(model.manifest(), l, TS_KIND_ATTENTION);
    for (size_t i = 0; i < list.size(); ++i) {
      model.swap_block(l, TS_KIND_ATTENTION, list[i].block);
      if (model.kv_cache().has_layer(l)) {
        const KvLayerShape& s = model.kv_cache().layer_shape(l);
        costs.layers[sz(l)].attention[i].kv_bytes_per_token =
            2 * static_cast<int64_t>(s.kv_heads) * s.head_dim *
            static_cast<int64_t>(dtype_size(s.dtype));
      }
    }
    model.swap_block(l, TS_KIND_ATTENTION, original);
  }
  reset_slots();

  // The fixed part: what the parent's whole is beyond its blocks (embedding, final norm, head,
  // and what the layers spend outside their blocks), so the parent's parts add up to its whole.
  for (size_t bi = 0; bi < nb; ++bi) {
    double prefill = parent.prefill[bi].seconds, decode = parent.decode[bi].seconds;
    for (int32_t l = 0; l < layers; ++l)
      for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
        const std::vector<Variant>& list = library[sz(l)].of(part);
        for (size_t i = 0; i < list.size(); ++i)
          if (list[i].init == VariantInit::kParent) {
            prefill -= costs.layers[sz(l)].of(part)[i].prefill[bi].seconds;
            decode -= costs.layers[sz(l)].of(part)[i].decode[bi].seconds;
          }
      }
    // Not clamped: noise can make it slightly negative, and the parts must add up.
    costs.fixed_prefill.push_back({prefill, parent.prefill[bi].noise});
    costs.fixed_decode.push_back({decode, parent.decode[bi].noise});
  }
  costs.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return costs;
}

namespace {

double parts(const Costs& costs, const std::vector<LayerVariants>& library, size_t b, bool decode) {
  double total = (decode ? costs.fixed_decode : costs.fixed_prefill).at(b).seconds;
  for (size_t l = 0; l < library.size(); ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::vector<Variant>& list = library[l].of(part);
      for (size_t i = 0; i < list.size(); ++i)
        if (list[i].init == VariantInit::kParent) {
          const VariantCost& c = costs.layers[l].of(part)[i];
          total += (decode ? c.decode : c.prefill).at(b).seconds;
        }
    }
  return total;
}

}  // namespace

double parts_prefill(const Costs& costs, const std::vector<LayerVariants>& library, size_t b) {
  return parts(costs, library, b, false);
}

double parts_decode(const Costs& costs, const std::vector<LayerVariants>& library, size_t b) {
  return parts(costs, library, b, true);
}

}  // namespace tessera::puzzle
