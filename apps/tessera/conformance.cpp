#include "conformance.hpp"

#include "conformance_backward.hpp"
#include "conformance_case.hpp"
#include "conformance_device.hpp"
#include "conformance_properties.hpp"

#include <tessera/engine/block.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/kv_cache.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/tensor.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/reference/reference.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

namespace tessera::cli {
namespace {

using WeightMap = std::map<std::string, Tensor>;

int lookup_weight(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
  const auto* weights = static_cast<const WeightMap*>(ctx);
  const auto it = weights->find(name);
  if (it == weights->end()) {
    std::string known;
    for (const auto& [k, v] : *weights) known += (known.empty() ? "" : ", ") + k;
    std::snprintf(err->message, sizeof(err->message),
                  "the block asked for weight '%s'; this kind has only: %s", name, known.c_str());
    return TS_ERROR;
  }
  *out = it->second.view();
  return TS_OK;
}

Tensor random_tensor(Rng& rng, std::vector<int64_t> shape, double scale) {
  Tensor t(std::move(shape), TS_F32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(rng.normal() * scale);
  return t;
}

// Everything one case needs alive while its block lives.
struct BlockUnderTest {
  WeightMap weights;
  ts_weights weights_abi{};
  ParamList params;
  std::unique_ptr<Block> block;
};

void make_block(BlockUnderTest& b, const ProviderRef& provider, ts_kind kind, int32_t hidden,
                ThreadPool& pool, const std::string& label) {
  b.weights_abi = ts_weights{&b.weights, lookup_weight};
  const ts_params cp = b.params.c_params();
  ts_block_config cfg{};
  cfg.struct_size = sizeof(ts_block_config);
  cfg.kind = kind;
  cfg.layer = 0;
  cfg.hidden = hidden;
  cfg.dtype = TS_F32;
  cfg.device = provider.provider->device;
  cfg.device_index = 0;
  cfg.params = cp;
  cfg.weights = &b.weights_abi;
  cfg.comm = nullptr;  // unsharded: rank 0 of 1
  cfg.host = pool.host();
  b.block = std::make_unique<Block>(provider, cfg, label);
}

// A block that keeps its cache in another dtype than its kv_dtype parameter
// asks: not a failure of the case (the parameter is optional), but reported.
struct KvDtypeIgnored : Error {
  using Error::Error;
};

// ------------------------------------------------------------------- GQA

struct GqaCase {
  int32_t hidden, heads, kv, head_dim, batch, decode_steps;
  bool tree;
  std::string kv_dtype;  // the block's kv_dtype parameter; empty: its default
};

// A five-node tree: 0 is the root, 1 and 2 its children, 3 under 1, 4 under 2.
constexpr int kTreeNodes = 5;
constexpr int kTreeParent[kTreeNodes] = {-1, 0, 0, 1, 2};
constexpr int kTreeDepth[kTreeNodes] = {0, 1, 1, 2, 2};
constexpr int32_t kTreeKeep[3] = {0, 1, 3};  // the accepted path root -> 1 -> 3

std::vector<uint8_t> tree_mask() {
  std::vector<uint8_t> m(kTreeNodes * kTreeNodes, 0);
  for (int i = 0; i < kTreeNodes; ++i)
    for (int a = i; a >= 0; a = kTreeParent[a])
      m[static_cast<size_t>(i) * kTreeNodes + static_cast<size_t>(a)] = 1;
  return m;
}

void keep_reference_rows(reference::SequenceKv& kv, int64_t first_row, int64_t row_width) {
  std::vector<float> k(kv.k.begin(), kv.k.begin() + first_row * row_width);
  std::vector<float> v(kv.v.begin(), kv.v.begin() + first_row * row_width);
  for (int32_t keep : kTreeKeep) {
    const auto from = (first_row + keep) * row_width;
    k.insert(k.end(), kv.k.begin() + from, kv.k.begin() + from + row_width);
    v.insert(v.end(), kv.v.begin() + from, kv.v.begin() + from + row_width);
  }
  kv.k = std::move(k);
  kv.v = std::move(v);
  kv.rows = first_row + 3;
}

CaseResult check_gqa(const ProviderRef& provider, const GqaCase& c, double tol, ThreadPool& pool,
                     uint64_t seed) {
  std::ostringstream name;
  name << "attention " << provider.provider->name << " hidden=" << c.hidden << " heads=" << c.heads
       << " kv_heads=" << c.kv << " head_dim=" << c.head_dim << " batch=" << c.batch
       << " decode_steps=" << c.decode_steps << (c.tree ? " tree_mask" : "")
       << (c.kv_dtype.empty() ? "" : " kv_dtype=" + c.kv_dtype);
  return run_case<KvDtypeIgnored>(name.str(), tol, [&](double& max_abs, double& max_ref) {
    constexpr int32_t capacity = 64;
    Rng rng(seed);
    BlockUnderTest b;
    const int64_t qdim = int64_t{c.heads} * c.head_dim, kvdim = int64_t{c.kv} * c.head_dim;
    const double in_scale = 1.0 / std::sqrt(static_cast<double>(c.hidden));
    b.weights["q_proj.weight"] = random_tensor(rng, {qdim, c.hidden}, in_scale);
    b.weights["k_proj.weight"] = random_tensor(rng, {kvdim, c.hidden}, in_scale);
    b.weights["v_proj.weight"] = random_tensor(rng, {kvdim, c.hidden}, in_scale);
    b.weights["o_proj.weight"] =
        random_tensor(rng, {c.hidden, qdim}, 1.0 / std::sqrt(double(qdim)));
    set_model_params(b.params, c.hidden, c.heads, c.head_dim, c.kv, 4 * c.hidden, capacity);
    if (!c.kv_dtype.empty()) b.params.set("kv_dtype", c.kv_dtype);
    make_block(b, provider, TS_KIND_ATTENTION, c.hidden, pool, "conformance " + name.str());
    const ts_block_info& info = b.block->info();
    if (!c.kv_dtype.empty() && c.kv_dtype != dtype_name(info.kv_dtype))
      throw KvDtypeIgnored(std::string("attention '") + provider.provider->name + "' kv_dtype " +
                           c.kv_dtype + ": the block keeps its cache in " +
                           dtype_name(info.kv_dtype) + " (a model asking kv_dtype " + c.kv_dtype +
                           " refuses it)");
    if (info.kv_heads != c.kv || info.head_dim != c.head_dim)
      throw Error("info() reports kv_heads=" + std::to_string(info.kv_heads) +
                  " head_dim=" + std::to_string(info.head_dim) + ", expected " +
                  std::to_string(c.kv) + " and " + std::to_string(c.head_dim));
    if (info.kv_dtype != TS_F32 && info.kv_dtype != TS_F16 && info.kv_dtype != TS_BF16)
      throw Error("info() reports an unsupported kv_dtype " + std::to_string(info.kv_dtype));

    KvCache cache(
        {KvLayerShape{info.kv_heads, info.head_dim, static_cast<ts_dtype>(info.kv_dtype)}}, c.batch,
        capacity);
    std::vector<reference::SequenceKv> ref_kv(static_cast<size_t>(c.batch));
    const reference::GqaShape shape{c.hidden, c.heads, c.kv, c.head_dim, 10000.0};
    const reference::GqaWeights gw{
        b.weights["q_proj.weight"].data<float>(), b.weights["k_proj.weight"].data<float>(),
        b.weights["v_proj.weight"].data<float>(), b.weights["o_proj.weight"].data<float>()};

    // One forward of n_new[s] tokens per sequence, checked against the reference.
    auto step = [&](const std::vector<int32_t>& n_new, const std::vector<std::vector<int32_t>>& pos,
                    const uint8_t* mask) {
      std::vector<int32_t> slots, offsets{0}, positions;
      for (int32_t s = 0; s < c.batch; ++s) {
        slots.push_back(s);
        offsets.push_back(offsets.back() + n_new[static_cast<size_t>(s)]);
        positions.insert(positions.end(), pos[static_cast<size_t>(s)].begin(),
                         pos[static_cast<size_t>(s)].end());
      }
      const int32_t total = offsets.back();
      Tensor x = random_tensor(rng, {total, c.hidden}, 1.0);
      Tensor y({total, c.hidden}, TS_F32);
      std::fill(y.data<float>(), y.data<float>() + y.numel(), NAN);
      std::vector<const uint8_t*> masks(static_cast<size_t>(c.batch), mask);
      ts_batch batch{sizeof(ts_batch),
                     c.batch,
                     total,
                     slots.data(),
                     offsets.data(),
                     positions.data(),
                     mask ? masks.data() : nullptr,
                     0u};
      ts_kv_layer kvl = cache.layer_view(0);
      const ts_tensor xv = x.view();
      ts_tensor yv = y.view();
      const ts_block_io io{sizeof(ts_block_io), &xv, &yv, &batch, &kvl};
      b.block->forward(io);
      std::vector<float> want(static_cast<size_t>(total) * c.hidden);
      for (int32_t s = 0; s < c.batch; ++s) {
        const auto off = static_cast<size_t>(offsets[static_cast<size_t>(s)]) * c.hidden;
        reference::gqa_attention(shape, gw, x.data<float>() + off, n_new[static_cast<size_t>(s)],
                                 pos[static_cast<size_t>(s)].data(), mask,
                                 ref_kv[static_cast<size_t>(s)], want.data() + off);
        cache.set_length(s, cache.length(s) + n_new[static_cast<size_t>(s)]);
      }
      accumulate_error(y.data<float>(), want.data(), want.size(), max_abs, max_ref);
    };
    auto consecutive = [&](const std::vector<int32_t>& n_new) {
      std::vector<std::vector<int32_t>> pos(static_cast<size_t>(c.batch));
      for (int32_t s = 0; s < c.batch; ++s)
        for (int32_t i = 0; i < n_new[static_cast<size_t>(s)]; ++i)
          pos[static_cast<size_t>(s)].push_back(cache.length(s) + i);
      return pos;
    };

    static constexpr int32_t kPrefill[4] = {5, 3, 8, 1};
    std::vector<int32_t> n_new;
    n_new.reserve(static_cast<size_t>(c.batch));
    for (int32_t s = 0; s < c.batch; ++s) n_new.push_back(kPrefill[s % 4]);
    step(n_new, consecutive(n_new), nullptr);
    const std::vector<int32_t> ones(static_cast<size_t>(c.batch), 1);
    for (int32_t d = 0; d < c.decode_steps; ++d) step(ones, consecutive(ones), nullptr);

    if (c.tree) {
      const std::vector<uint8_t> mask = tree_mask();
      const std::vector<int32_t> nodes(static_cast<size_t>(c.batch), kTreeNodes);
      std::vector<std::vector<int32_t>> pos(static_cast<size_t>(c.batch));
      std::vector<int32_t> first_rows;
      for (int32_t s = 0; s < c.batch; ++s) {
        first_rows.push_back(cache.length(s));
        for (int n = 0; n < kTreeNodes; ++n)
          pos[static_cast<size_t>(s)].push_back(cache.length(s) + kTreeDepth[n]);
      }
      step(nodes, pos, mask.data());
      // Keep the accepted path and decode one more token after it.
      for (int32_t s = 0; s < c.batch; ++s) {
        const int32_t first = first_rows[static_cast<size_t>(s)];
        if (b.block->has_compact_kv()) {
          ts_kv_layer kvl = cache.layer_view(0);
          b.block->compact_kv(kvl, s, first, kTreeKeep, 3);
          cache.set_length(s, first + 3);
        } else {
          cache.compact(s, first, kTreeKeep, 3);
        }
        keep_reference_rows(ref_kv[static_cast<size_t>(s)], first, kvdim);
      }
      step(ones, consecutive(ones), nullptr);
    }
  });
}

// ----------------------------------------------------------- dense blocks

// Runs a block without a KV cache on one sequence of x's rows (positions 0, 1, ...).
void forward_one_sequence(Block& block, const Tensor& x, Tensor& y) {
  const auto tokens = static_cast<int32_t>(x.dim(0));
  std::vector<int32_t> slots{0}, offsets{0, tokens}, positions(static_cast<size_t>(tokens));
  for (int32_t i = 0; i < tokens; ++i) positions[static_cast<size_t>(i)] = i;
  const ts_batch batch{sizeof(ts_batch), 1,       tokens, slots.data(), offsets.data(),
                       positions.data(), nullptr, 0u};
  const ts_tensor xv = x.view();
  ts_tensor yv = y.view();
  const ts_block_io io{sizeof(ts_block_io), &xv, &yv, &batch, nullptr};
  block.forward(io);
}

CaseResult check_linear(const ProviderRef& provider, ts_kind kind, int32_t hidden, int32_t tokens,
                        double tol, ThreadPool& pool, uint64_t seed) {
  const std::string weight = kind == TS_KIND_ATTENTION ? "linear_attn.weight" : "linear_mlp.weight";
  std::ostringstream name;
  name << kind_name(kind) << " " << provider.provider->name << " hidden=" << hidden
       << " tokens=" << tokens;
  return run_case<KvDtypeIgnored>(name.str(), tol, [&](double& max_abs, double& max_ref) {
    Rng rng(seed);
    BlockUnderTest b;
    b.weights[weight] = random_tensor(rng, {hidden, hidden}, 1.0 / std::sqrt(double(hidden)));
    set_model_params(b.params, hidden, 1, hidden, 1, 4 * hidden, 64);
    make_block(b, provider, kind, hidden, pool, "conformance " + name.str());
    if (b.block->info().kv_heads != 0) throw Error("a linear block must report kv_heads 0");
    Tensor x = random_tensor(rng, {tokens, hidden}, 1.0);
    Tensor y({tokens, hidden}, TS_F32);
    forward_one_sequence(*b.block, x, y);
    std::vector<float> want(static_cast<size_t>(tokens) * hidden);
    reference::matmul_nt(x.data<float>(), b.weights[weight].data<float>(), tokens, hidden, hidden,
                         want.data());
    accumulate_error(y.data<float>(), want.data(), want.size(), max_abs, max_ref);
  });
}

CaseResult check_swiglu(const ProviderRef& provider, int32_t hidden, int32_t inter, int32_t tokens,
                        double tol, ThreadPool& pool, uint64_t seed) {
  std::ostringstream name;
  name << "ffn " << provider.provider->name << " hidden=" << hidden << " intermediate=" << inter
       << " tokens=" << tokens;
  return run_case<KvDtypeIgnored>(name.str(), tol, [&](double& max_abs, double& max_ref) {
    Rng rng(seed);
    BlockUnderTest b;
    const double s_in = 1.0 / std::sqrt(double(hidden)), s_mid = 1.0 / std::sqrt(double(inter));
    b.weights["gate_proj.weight"] = random_tensor(rng, {inter, hidden}, s_in);
    b.weights["up_proj.weight"] = random_tensor(rng, {inter, hidden}, s_in);
    b.weights["down_proj.weight"] = random_tensor(rng, {hidden, inter}, s_mid);
    set_model_params(b.params, hidden, 1, hidden, 1, inter, 64);
    make_block(b, provider, TS_KIND_FFN, hidden, pool, "conformance " + name.str());
    Tensor x = random_tensor(rng, {tokens, hidden}, 1.0);
    Tensor y({tokens, hidden}, TS_F32);
    forward_one_sequence(*b.block, x, y);
    std::vector<float> want(static_cast<size_t>(tokens) * hidden);
    reference::swiglu(x.data<float>(), b.weights["gate_proj.weight"].data<float>(),
                      b.weights["up_proj.weight"].data<float>(),
                      b.weights["down_proj.weight"].data<float>(), tokens, hidden, inter,
                      want.data());
    accumulate_error(y.data<float>(), want.data(), want.size(), max_abs, max_ref);
  });
}

CaseResult check_noop(const ProviderRef& provider, ts_kind kind, ThreadPool& pool) {
  const std::string name =
      std::string(kind_name(kind)) + " " + provider.provider->name + " identity";
  return run_case<KvDtypeIgnored>(name, 0.0, [&](double& max_abs, double&) {
    BlockUnderTest b;
    constexpr int32_t hidden = 32, tokens = 3;
    set_model_params(b.params, hidden, 1, hidden, 1, hidden, 64);
    make_block(b, provider, kind, hidden, pool, "conformance " + name);
    if (!b.block->identity()) throw Error("a no-op block must set TS_BLOCK_IDENTITY");
    if (b.block->info().kv_heads != 0) throw Error("a no-op block must report kv_heads 0");
    // Called anyway, it must contribute nothing.
    Tensor x({tokens, hidden}, TS_F32), y({tokens, hidden}, TS_F32);
    std::fill(x.data<float>(), x.data<float>() + x.numel(), 1.0f);
    std::fill(y.data<float>(), y.data<float>() + y.numel(), 1.0f);
    forward_one_sequence(*b.block, x, y);
    for (int64_t i = 0; i < y.numel(); ++i)
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(y.data<float>()[i])));
  });
}

}  // namespace

ConformanceReport run_conformance(const PluginRegistry& registry, const PluginInfo& plugin,
                                  const ConformanceOptions& options) {
  ConformanceReport report;
  ThreadPool pool(0);
  const double tol = options.tolerance_f32;
  uint64_t seed = 1;
  std::vector<const ts_provider*> device_providers;
  for (const ts_provider* p : plugin.providers) {
    if (check_interface(registry, plugin, *p, options, report)) continue;  // not a block
    if (p->device != TS_DEVICE_CPU) {
      device_providers.push_back(p);  // checked through a backend, below
      continue;
    }
    const ProviderRef ref = registry.find(static_cast<ts_kind>(p->kind), p->name,
                                          static_cast<ts_device>(p->device), plugin.name);
    const std::string name = p->name;
    if (p->kind == TS_KIND_ATTENTION && name == "gqa") {
      std::vector<GqaCase> grid;
      const std::vector<std::array<int32_t, 3>> shapes =
          options.quick
              ? std::vector<std::array<int32_t, 3>>{{64, 4, 16}}
              : std::vector<std::array<int32_t, 3>>{{64, 4, 16}, {576, 9, 64}, {256, 2, 128}};
      for (const auto& [hidden, heads, head_dim] : shapes)
        for (int32_t kv = heads; kv >= 1; --kv) {
          if (heads % kv != 0) continue;
          for (int32_t batch : {1, 3})
            for (int32_t decode : {0, 3})
              for (bool tree : {false, true})
                grid.push_back({hidden, heads, kv, head_dim, batch, decode, tree, ""});
        }
      // 16-bit caches (the kv_dtype parameter) on the SmolLM2 shape, within their rounding.
      for (const char* kv_dtype : {"f16", "bf16"})
        for (bool tree : {false, true}) grid.push_back({576, 9, 3, 64, 3, 3, tree, kv_dtype});
      for (const GqaCase& c : grid) {
        const double case_tol = c.kv_dtype == "f16"    ? options.tolerance_f16_kv
                                : c.kv_dtype == "bf16" ? options.tolerance_bf16
                                                       : tol;
        try {
          report.cases.push_back(check_gqa(ref, c, case_tol, pool, seed++));
        } catch (const KvDtypeIgnored& e) {
          if (std::find(report.skipped.begin(), report.skipped.end(), e.what()) ==
              report.skipped.end())
            report.skipped.push_back(e.what());
        }
      }
    } else if (name == "linear" && (p->kind == TS_KIND_ATTENTION || p->kind == TS_KIND_FFN)) {
      for (int32_t hidden : {64, 576})
        for (int32_t tokens : {1, 7})
          report.cases.push_back(
              check_linear(ref, static_cast<ts_kind>(p->kind), hidden, tokens, tol, pool, seed++));
    } else if (p->kind == TS_KIND_FFN && name == "swiglu") {
      for (const auto& [hidden, inter] :
           std::vector<std::pair<int32_t, int32_t>>{{64, 40}, {64, 100}, {576, 1536}})
        for (int32_t tokens : {1, 9})
          report.cases.push_back(check_swiglu(ref, hidden, inter, tokens, tol, pool, seed++));
    } else if (name == "noop" && (p->kind == TS_KIND_ATTENTION || p->kind == TS_KIND_FFN)) {
      report.cases.push_back(check_noop(ref, static_cast<ts_kind>(p->kind), pool));
    } else if (!check_block_properties(ref, options, pool, seed++, report)) {
      const bool block = p->kind == TS_KIND_ATTENTION || p->kind == TS_KIND_FFN;
      report.skipped.push_back(std::string(kind_name(p->kind)) + " '" + p->name +
                               "': no reference implementation" +
                               (block ? " and no describe" : "") + " for this provider");
      check_block_backward(ref, options, pool, seed++, report);
      continue;
    } else {
      // A kind of its own: the property checks (and the generic backward ones) are all there is.
      check_block_backward(ref, options, pool, seed++, report);
      continue;
    }
    // The built-in kinds get the property checks too, when they declare their weights.
    check_block_properties(ref, options, pool, seed++, report);
    check_block_backward(ref, options, pool, seed++, report);
  }
  run_device_conformance(registry, plugin, device_providers, options, report);
  return report;
}

}  // namespace tessera::cli
