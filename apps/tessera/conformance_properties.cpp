#include "conformance_properties.hpp"

#include "conformance_case.hpp"

#include <tessera/engine/block.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/kv_cache.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/tensor.hpp>
#include <tessera/engine/weight_plan.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tessera::cli {
namespace {

constexpr int32_t kHidden = kPropertyHidden;
constexpr int32_t kCapacity = 32;
constexpr int32_t kSlots = 2;

using WeightMap = std::map<std::string, Tensor>;

int lookup(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
  const auto* weights = static_cast<const WeightMap*>(ctx);
  const auto it = weights->find(name);
  if (it == weights->end()) {
    std::snprintf(err->message, sizeof(err->message),
                  "the block asked for weight '%s', which its describe does not declare", name);
    return TS_ERROR;
  }
  *out = it->second.view();
  return TS_OK;
}

}  // namespace

ParamList property_params(const ConformanceOptions& options) {
  ParamList p;
  p.set("hidden_size", int64_t{kHidden});
  p.set("num_heads", int64_t{4});
  p.set("head_dim", int64_t{16});
  p.set("kv_heads", int64_t{2});
  p.set("intermediate_size", int64_t{96});
  p.set("rope_theta", 10000.0);
  p.set("rms_norm_eps", 1e-5);
  p.set("max_seq_len", int64_t{kCapacity});
  p.set("vocab_size", int64_t{256});
  p.merge(options.params);
  return p;
}

WeightMap declared_weights(const BlockLayout& layout, uint64_t seed) {
  WeightPlan plan;
  for (const DeclaredWeight& w : layout.weights) {
    PlannedTensor t;
    t.name = w.name;
    t.local = w.name;
    t.shape = w.shape;
    t.init = w.init;
    t.init_scale = w.init_scale;
    plan.tensors.push_back(std::move(t));
  }
  std::sort(plan.tensors.begin(), plan.tensors.end(),
            [](const PlannedTensor& a, const PlannedTensor& c) { return a.name < c.name; });
  const WeightStore drawn = init_random_weights(plan, seed);
  WeightMap out;
  for (const auto& [name, tensor] : drawn.all()) out[name] = tensor;
  return out;
}

namespace {

// A block made from its own declaration, with its weights drawn by the host's laws.
struct DeclaredBlock {
  ParamList params;
  WeightMap weights;
  ts_weights weights_abi{};
  BlockLayout layout;
  std::unique_ptr<Block> block;
};

ts_block_config block_config(const ProviderRef& provider, const ParamList& params,
                             ThreadPool& pool) {
  ts_block_config c{};
  c.struct_size = sizeof(ts_block_config);
  c.kind = provider.provider->kind;
  c.layer = 0;
  c.hidden = kHidden;
  c.dtype = TS_F32;
  c.device = TS_DEVICE_CPU;
  c.params = params.c_params();
  c.comm = nullptr;  // one rank
  c.host = pool.host();
  return c;
}

// Draws every declared weight (as init_random_weights does for a model) and makes the block.
void make_declared(DeclaredBlock& b, const ProviderRef& provider, ThreadPool& pool, uint64_t seed,
                   const std::string& label) {
  b.weights = declared_weights(b.layout, seed);
  b.weights_abi = ts_weights{&b.weights, lookup};
  ts_block_config c = block_config(provider, b.params, pool);
  c.weights = &b.weights_abi;
  b.block = std::make_unique<Block>(provider, c, label);
}

// One forward of some sequences through `block` over `cache` (nullptr when the block needs
// none). seqs[s] = {slot, first row of x, token count}; positions follow each slot's length.
struct SeqPart {
  int32_t slot, first, count;
};

std::vector<float> run(Block& block, KvCache* cache, const Tensor& x,
                       const std::vector<SeqPart>& seqs, const uint8_t* chain_mask) {
  std::vector<int32_t> slots, offsets{0}, positions;
  std::vector<float> xs;
  for (const SeqPart& s : seqs) {
    slots.push_back(s.slot);
    offsets.push_back(offsets.back() + s.count);
    const int32_t length = cache != nullptr ? cache->length(s.slot) : 0;
    for (int32_t i = 0; i < s.count; ++i) positions.push_back(length + i);
    xs.insert(xs.end(), x.data<float>() + static_cast<int64_t>(s.first) * kHidden,
              x.data<float>() + static_cast<int64_t>(s.first + s.count) * kHidden);
  }
  const int32_t total = offsets.back();
  Tensor xin({total, kHidden}, TS_F32), y({total, kHidden}, TS_F32);
  std::copy(xs.begin(), xs.end(), xin.data<float>());
  std::fill(y.data<float>(), y.data<float>() + y.numel(), NAN);
  std::vector<const uint8_t*> masks(seqs.size(), chain_mask);
  const ts_batch batch{sizeof(ts_batch),
                       static_cast<int32_t>(seqs.size()),
                       total,
                       slots.data(),
                       offsets.data(),
                       positions.data(),
                       chain_mask != nullptr ? masks.data() : nullptr,
                       0u};
  ts_kv_layer kv{};
  if (cache != nullptr) kv = cache->layer_view(0);
  const ts_tensor xv = xin.view();
  ts_tensor yv = y.view();
  const ts_block_io io{sizeof(ts_block_io), &xv, &yv, &batch, cache != nullptr ? &kv : nullptr};
  block.forward(io);
  if (cache != nullptr)
    for (const SeqPart& s : seqs) cache->set_length(s.slot, cache->length(s.slot) + s.count);
  return {y.data<float>(), y.data<float>() + y.numel()};
}

void compare(const std::vector<float>& got, const std::vector<float>& want, double& max_abs,
             double& max_ref) {
  if (got.size() != want.size()) throw Error("outputs of different sizes");
  accumulate_error(got.data(), want.data(), got.size(), max_abs, max_ref);
}

}  // namespace

bool check_block_properties(const ProviderRef& provider, const ConformanceOptions& options,
                            ThreadPool& pool, uint64_t seed, ConformanceReport& report) {
  const ts_provider& p = *provider.provider;
  if (p.device != TS_DEVICE_CPU || (p.kind != TS_KIND_ATTENTION && p.kind != TS_KIND_FFN))
    return false;
  const std::string prefix = std::string("properties ") + kind_name(p.kind) + " " + p.name;
  const ParamList params = property_params(options);
  std::optional<BlockLayout> layout;
  try {
    layout = describe_block(provider, block_config(provider, params, pool), prefix);
  } catch (const std::exception& e) {
    CaseResult r;
    r.name = prefix + " describe";
    r.error = std::string(e.what()) +
              " (plugin-check gives a kind its own parameters with --param key=value)";
    report.cases.push_back(r);
    return true;
  }
  if (!layout) return false;

  // Each case makes its blocks afresh: no state carries from one to the next.
  auto fresh = [&](DeclaredBlock& b) {
    b.params = params;
    b.layout = *layout;
    make_declared(b, provider, pool, seed, prefix);
  };
  const bool cached = layout->kv.kv_heads > 0;
  auto new_cache = [&]() -> std::unique_ptr<KvCache> {
    if (!cached) return nullptr;
    return std::make_unique<KvCache>(std::vector<KvLayerShape>{layout->kv}, kSlots, kCapacity);
  };
  Rng rng(seed * 7919 + 1);
  constexpr int32_t kA = 7, kB = 4;  // two sequences, rows [0, 7) and [7, 11) of x
  Tensor x({kA + kB, kHidden}, TS_F32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(rng.normal());

  auto add_case = [&](const std::string& what, double tolerance, auto&& body) {
    report.cases.push_back(run_case(prefix + " " + what, tolerance, body));
  };
  const double tol = options.tolerance_f32;

  add_case("info agrees with describe", 0.0, [&](double&, double&) {
    DeclaredBlock b;
    fresh(b);
    const ts_block_info& info = b.block->info();
    int64_t declared = 0;
    for (const DeclaredWeight& w : layout->weights) {
      int64_t n = 1;
      for (const int64_t d : w.shape) n *= d;
      declared += n;
    }
    const KvLayerShape& kv = layout->kv;
    if (b.block->identity() != layout->identity() || info.kv_heads != kv.kv_heads ||
        (kv.kv_heads > 0 && (info.head_dim != kv.head_dim || info.kv_dtype != kv.dtype)) ||
        info.parameters != declared)
      throw Error("info() reports flags " + std::to_string(info.flags) + ", kv_heads " +
                  std::to_string(info.kv_heads) + ", head_dim " + std::to_string(info.head_dim) +
                  ", kv_dtype " + std::to_string(info.kv_dtype) + " and " +
                  std::to_string(info.parameters) + " parameters; describe declared flags " +
                  std::to_string(layout->flags) + ", kv_heads " + std::to_string(kv.kv_heads) +
                  ", head_dim " + std::to_string(kv.head_dim) + ", kv_dtype " +
                  std::to_string(kv.dtype) + " and " + std::to_string(declared) +
                  " parameters (one rank)");
  });

  // The whole of sequence A in one call: the baseline of the cases below.
  auto whole_a = [&](const uint8_t* mask) {
    DeclaredBlock b;
    fresh(b);
    auto cache = new_cache();
    return run(*b.block, cache.get(), x, {{0, 0, kA}}, mask);
  };

  add_case("reruns are identical and finite", 0.0, [&](double& max_abs, double& max_ref) {
    const std::vector<float> first = whole_a(nullptr);
    for (const float v : first)
      if (!std::isfinite(v)) throw Error("the output holds a non-finite value");
    compare(whole_a(nullptr), first, max_abs, max_ref);
  });

  add_case("batch of two equals each alone", tol, [&](double& max_abs, double& max_ref) {
    DeclaredBlock b;
    fresh(b);
    auto cache = new_cache();
    // Slot 1 first gets a history, so that the two sequences sit at different lengths.
    if (cached) (void)run(*b.block, cache.get(), x, {{1, kA, 2}}, nullptr);
    const std::vector<float> both =
        run(*b.block, cache.get(), x, {{0, 0, kA}, {1, kA + 2, 2}}, nullptr);
    DeclaredBlock a;
    fresh(a);
    auto alone_cache = new_cache();
    std::vector<float> alone = run(*a.block, alone_cache.get(), x, {{0, 0, kA}}, nullptr);
    if (cached) (void)run(*a.block, alone_cache.get(), x, {{1, kA, 2}}, nullptr);
    const std::vector<float> second =
        run(*a.block, alone_cache.get(), x, {{1, kA + 2, 2}}, nullptr);
    alone.insert(alone.end(), second.begin(), second.end());
    compare(both, alone, max_abs, max_ref);
  });

  add_case("prefill equals chunks and one by one", tol, [&](double& max_abs, double& max_ref) {
    const std::vector<float> whole = whole_a(nullptr);
    for (const std::vector<int32_t>& chunks :
         {std::vector<int32_t>{3, 2, 2}, std::vector<int32_t>(kA, 1)}) {
      DeclaredBlock b;
      fresh(b);
      auto cache = new_cache();
      std::vector<float> pieces;
      int32_t first = 0;
      for (const int32_t n : chunks) {
        const std::vector<float> y = run(*b.block, cache.get(), x, {{0, first, n}}, nullptr);
        pieces.insert(pieces.end(), y.begin(), y.end());
        first += n;
      }
      compare(pieces, whole, max_abs, max_ref);
    }
  });

  add_case("chain tree mask equals causal", tol, [&](double& max_abs, double& max_ref) {
    std::vector<uint8_t> chain(static_cast<size_t>(kA * kA), 0);
    for (int32_t i = 0; i < kA; ++i)
      for (int32_t j = 0; j <= i; ++j)
        chain[static_cast<size_t>(i) * kA + static_cast<size_t>(j)] = 1;
    compare(whole_a(chain.data()), whole_a(nullptr), max_abs, max_ref);
  });
  return true;
}

}  // namespace tessera::cli
