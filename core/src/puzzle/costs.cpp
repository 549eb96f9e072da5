#include <tessera/engine/error.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/puzzle/costs.hpp>

#include <tessera/dtype.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <sstream>

namespace tessera::puzzle {

namespace {

size_t sz(int64_t n) {
  return static_cast<size_t>(n);
}

using Clock = std::chrono::steady_clock;

// A batch of b sequences in slots 0..b-1, n tokens each at positions first..first+n-1.
struct LaidOut {
  std::vector<int32_t> slots, offsets, positions, tokens;
  ts_batch b{};
};

LaidOut lay_out(int32_t seqs, int32_t n, int32_t first, int32_t vocab) {
  LaidOut o;
  o.offsets.push_back(0);
  for (int32_t s = 0; s < seqs; ++s) {
    o.slots.push_back(s);
    for (int32_t i = 0; i < n; ++i) {
      o.positions.push_back(first + i);
      o.tokens.push_back((7 * (s * n + i) + 3) % vocab);
    }
    o.offsets.push_back(o.offsets.back() + n);
  }
  o.b.struct_size = sizeof(ts_batch);
  o.b.n_seqs = seqs;
  o.b.n_tokens = seqs * n;
  o.b.slots = o.slots.data();
  o.b.offsets = o.offsets.data();
  o.b.positions = o.positions.data();
  return o;
}

// What makes two variants cost the same: the block, not where its weights live.
std::string block_key(ts_kind part, const BlockSpec& block) {
  std::ostringstream key;
  key << (part == TS_KIND_ATTENTION ? "attention|" : "ffn|") << block.kind << "|" << block.plugin;
  for (const Param& p : block.params.items()) {
    key << "|" << p.key << "=";
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
            for (const int64_t e : v) key << e << ",";
          } else {
            key << v;
          }
        },
        p.value);
  }
  return key.str();
}

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
  const int64_t h = model.hidden();
  const int32_t vocab = model.vocab();
  const auto start = Clock::now();

  Costs costs;
  costs.scenario = scenario;
  costs.threads = model.pool().size();
  costs.weight_dtype = dtype_name(model.manifest().runtime.weight_dtype);
  for (const LayerVariants& lv : library) {
    LayerCosts lc;
    lc.attention.resize(lv.attention.size());
    lc.ffn.resize(lv.ffn.size());
    costs.layers.push_back(std::move(lc));
  }

  // The distinct blocks, each at its first layer.
  struct Job {
    int32_t layer;
    ts_kind part;
    size_t index;
  };
  std::map<std::string, Job> first;
  std::vector<Job> jobs;
  for (int32_t l = 0; l < layers; ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::vector<Variant>& list = library[sz(l)].of(part);
      for (size_t i = 0; i < list.size(); ++i)
        if (first.emplace(block_key(part, list[i].block), Job{l, part, i}).second)
          jobs.push_back({l, part, i});
    }

  std::vector<LaidOut> prefill, decode, fill;
  for (const int32_t b : scenario.batch_sizes) {
    prefill.push_back(lay_out(b, scenario.prefill_len, 0, vocab));
    decode.push_back(lay_out(b, 1, context, vocab));
    fill.push_back(lay_out(b, context, 0, vocab));
  }
  const auto reset_slots = [&] {
    for (int32_t s = 0; s < max_b; ++s) model.reset(s);
  };

  const int32_t repeats = scenario.repeats;
  std::vector<float> x0, x;
  int64_t done = 0;
  for (const Job& job : jobs) {
    const int32_t l = job.layer;
    const ts_kind other = job.part == TS_KIND_ATTENTION ? TS_KIND_FFN : TS_KIND_ATTENTION;
    const BlockSpec original = block_of(model.manifest(), l, job.part);
    const BlockSpec original_other = block_of(model.manifest(), l, other);
    const Variant& v = library[sz(l)].of(job.part)[job.index];
    VariantCost cost;
    cost.measured_in = l;
    BlockSpec noop;
    noop.kind = "noop";
    try {
      model.swap_block(l, other, noop);
      model.swap_block(l, job.part, v.block);
      cost.weight_bytes = weight_bytes(model, l, job.part, v);
      if (model.kv_cache().has_layer(l)) {
        const KvLayerShape& s = model.kv_cache().layer_shape(l);
        cost.kv_bytes_per_token = 2 * static_cast<int64_t>(s.kv_heads) * s.head_dim *
                                  static_cast<int64_t>(dtype_size(s.dtype));
      }
      for (size_t bi = 0; bi < scenario.batch_sizes.size(); ++bi) {
        reset_slots();
        LaidOut& p = prefill[bi];
        x0.resize(sz(p.b.n_tokens * h));
        model.embed(p.tokens, x0.data());
        x.resize(x0.size());
        cost.prefill.push_back(time_runs(repeats, [&] {
          std::copy(x0.begin(), x0.end(), x.begin());
          model.run_layer(l, p.b, x.data(), p.b.n_tokens);
        }));
        // The cache rows of the decode context, then steps at that context.
        LaidOut& f = fill[bi];
        x.resize(sz(f.b.n_tokens * h));
        model.embed(f.tokens, x.data());
        model.run_layer(l, f.b, x.data(), f.b.n_tokens);
        for (int32_t s = 0; s < f.b.n_seqs; ++s) model.kv_cache().set_length(s, context);
        LaidOut& d = decode[bi];
        x0.resize(sz(d.b.n_tokens * h));
        model.embed(d.tokens, x0.data());
        x.resize(x0.size());
        cost.decode.push_back(time_runs(repeats, [&] {
          std::copy(x0.begin(), x0.end(), x.begin());
          model.run_layer(l, d.b, x.data(), d.b.n_tokens);
        }));
        reset_slots();
      }
    } catch (...) {
      model.swap_block(l, job.part, original);
      model.swap_block(l, other, original_other);
      reset_slots();
      throw;
    }
    model.swap_block(l, job.part, original);
    model.swap_block(l, other, original_other);
    // Every layer whose variant is the same block shares the figures (its own weight bytes).
    const std::string key = block_key(job.part, v.block);
    for (int32_t m = 0; m < layers; ++m) {
      const std::vector<Variant>& list = library[sz(m)].of(job.part);
      for (size_t i = 0; i < list.size(); ++i)
        if (block_key(job.part, list[i].block) == key) {
          VariantCost c = cost;
          c.weight_bytes = weight_bytes(model, m, job.part, list[i]);
          costs.layers[sz(m)].of(job.part)[i] = std::move(c);
        }
    }
    ++done;
    if (progress) progress(done, static_cast<int64_t>(jobs.size()));
  }
  costs.measurements = static_cast<int64_t>(jobs.size());

  // The fixed part and the whole parent, per batch size.
  for (size_t bi = 0; bi < scenario.batch_sizes.size(); ++bi) {
    const int32_t b = scenario.batch_sizes[bi];
    std::vector<float> rows(sz(b * h)), logits(sz(static_cast<int64_t>(b) * vocab));
    model.embed(std::vector<int32_t>(sz(b), 1), rows.data());
    const Timing head = time_runs(
        repeats, [&] { model.final_norm_and_head(rows.data(), b, logits.data(), nullptr); });
    costs.fixed_prefill.push_back(head);
    costs.fixed_decode.push_back(head);

    ForwardBatch whole;
    whole.slots = prefill[bi].slots;
    whole.offsets = prefill[bi].offsets;
    whole.tokens = prefill[bi].tokens;
    whole.last_only = true;
    costs.whole_prefill.push_back(time_runs(repeats, [&] {
      reset_slots();
      model.forward(whole, logits.data(), nullptr);
    }));
    ForwardBatch filler;
    filler.slots = fill[bi].slots;
    filler.offsets = fill[bi].offsets;
    filler.tokens = fill[bi].tokens;
    filler.last_only = true;
    reset_slots();
    model.forward(filler, logits.data(), nullptr);
    ForwardBatch step;
    step.slots = decode[bi].slots;
    step.offsets = decode[bi].offsets;
    step.tokens = decode[bi].tokens;
    step.last_only = true;
    costs.whole_decode.push_back(time_runs(repeats, [&] {
      for (int32_t s = 0; s < b; ++s) model.kv_cache().set_length(s, context);
      model.forward(step, logits.data(), nullptr);
    }));
    reset_slots();
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
