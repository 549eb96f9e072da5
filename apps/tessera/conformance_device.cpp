// The conformance suite for device providers, through a backend (see conformance_device.hpp).
//
// Every input is drawn in f32 and rounded to bf16 on the host; the references run on the
// rounded values, so what remains is the device path's own error: bf16 intermediates
// (q/k/v, probabilities, attention output, y) over f32 accumulation.
#include "conformance_device.hpp"

#include "conformance_case.hpp"

#include <tessera/dtype.hpp>
#include <tessera/engine/backend.hpp>
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
#include <string>
#include <vector>

namespace tessera::cli {
namespace {

// The rounded host copy (f32, for the reference) and the device copy (bf16) of each weight.
struct DeviceWeights {
  std::map<std::string, Tensor> host;
  std::map<std::string, Tensor> device;
};

int lookup_device_weight(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
  const auto* weights = static_cast<const DeviceWeights*>(ctx);
  const auto it = weights->device.find(name);
  if (it == weights->device.end()) {
    std::snprintf(err->message, sizeof(err->message), "no weight '%s' in this case", name);
    return TS_ERROR;
  }
  *out = it->second.view();
  return TS_OK;
}

// f32 normal(0, scale) values rounded to bf16 (kept in f32).
Tensor rounded_random(Rng& rng, std::vector<int64_t> shape, double scale) {
  Tensor t(std::move(shape), TS_F32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    p[i] = bf16_to_f32(f32_to_bf16(static_cast<float>(rng.normal() * scale)));
  return t;
}

// What every device case shares: the backend, the host lent to blocks (the pool's, with the
// backend's stream), and the plugin's providers.
struct DeviceContext {
  const PluginRegistry& registry;
  const PluginInfo& plugin;
  Backend& backend;
  ts_host host;
  double tolerance;
};

// A block made on the device from `weights`, which must outlive it.
std::unique_ptr<Block> make_device_block(DeviceContext& ctx, const ts_provider& p,
                                         DeviceWeights& weights, const ParamList& params,
                                         int32_t hidden, const ts_weights& weights_abi,
                                         const std::string& label) {
  for (auto& [name, t] : weights.host) weights.device[name] = ctx.backend.upload(t, TS_BF16);
  const ts_params cp = params.c_params();
  ts_block_config cfg{};
  cfg.struct_size = sizeof(ts_block_config);
  cfg.kind = p.kind;
  cfg.hidden = hidden;
  cfg.dtype = TS_BF16;
  cfg.device = p.device;
  cfg.device_index = ctx.backend.device_index();
  cfg.params = cp;
  cfg.weights = &weights_abi;
  cfg.comm = nullptr;  // unsharded: rank 0 of 1
  cfg.host = &ctx.host;
  const ProviderRef ref = ctx.registry.find(static_cast<ts_kind>(p.kind), p.name,
                                            static_cast<ts_device>(p.device), ctx.plugin.name);
  return std::make_unique<Block>(ref, cfg, label);
}

// Runs `block` on x (host f32, bf16 values) and returns y as f32 on the host.
std::vector<float> run_on_device(DeviceContext& ctx, Block& block, const Tensor& x,
                                 const ts_batch& batch, ts_kv_layer* kv) {
  const Tensor x_dev = ctx.backend.upload(x, TS_BF16);
  Tensor poison(x.shape(), TS_F32);
  std::fill(poison.data<float>(), poison.data<float>() + poison.numel(), NAN);
  Tensor y_dev = ctx.backend.upload(poison, TS_BF16);  // every element must be written
  const ts_tensor xv = x_dev.view();
  ts_tensor yv = y_dev.view();
  const ts_block_io io{sizeof(ts_block_io), &xv, &yv, &batch, kv};
  block.forward(io);
  const Tensor y = ctx.backend.download(y_dev).to(TS_F32);
  return {y.data<float>(), y.data<float>() + y.numel()};
}

// ------------------------------------------------------------------- GQA

struct GqaCase {
  int32_t hidden, heads, kv, head_dim, batch, prefill, decode_steps;
  bool tree;
};

constexpr int kTreeNodes = 5;
constexpr int kTreeParent[kTreeNodes] = {-1, 0, 0, 1, 2};
constexpr int kTreeDepth[kTreeNodes] = {0, 1, 1, 2, 2};
constexpr int32_t kTreeKeep[3] = {0, 1, 3};

CaseResult check_gqa(DeviceContext& ctx, const ts_provider& p, const GqaCase& c, uint64_t seed) {
  std::ostringstream name;
  name << "attention " << p.name << " [cuda bf16] hidden=" << c.hidden << " heads=" << c.heads
       << " kv_heads=" << c.kv << " head_dim=" << c.head_dim << " batch=" << c.batch
       << " prefill=" << c.prefill << " decode_steps=" << c.decode_steps
       << (c.tree ? " tree_mask" : "");
  return run_case(name.str(), ctx.tolerance, [&](double& max_abs, double& max_ref) {
    const int32_t capacity = c.prefill + c.decode_steps + 2 * kTreeNodes + 8;
    Rng rng(seed);
    DeviceWeights w;
    const int64_t qdim = int64_t{c.heads} * c.head_dim, kvdim = int64_t{c.kv} * c.head_dim;
    const double in_scale = 1.0 / std::sqrt(static_cast<double>(c.hidden));
    w.host["q_proj.weight"] = rounded_random(rng, {qdim, c.hidden}, in_scale);
    w.host["k_proj.weight"] = rounded_random(rng, {kvdim, c.hidden}, in_scale);
    w.host["v_proj.weight"] = rounded_random(rng, {kvdim, c.hidden}, in_scale);
    w.host["o_proj.weight"] = rounded_random(rng, {c.hidden, qdim}, 1.0 / std::sqrt(double(qdim)));
    ParamList params;
    set_model_params(params, c.hidden, c.heads, c.head_dim, c.kv, 4 * c.hidden, capacity);
    const ts_weights weights_abi{&w, lookup_device_weight};
    const std::unique_ptr<Block> block =
        make_device_block(ctx, p, w, params, c.hidden, weights_abi, "conformance " + name.str());
    const ts_block_info& info = block->info();
    if (info.kv_heads != c.kv || info.head_dim != c.head_dim)
      throw Error("info() reports kv_heads=" + std::to_string(info.kv_heads) +
                  " head_dim=" + std::to_string(info.head_dim));
    if (c.tree && !block->has_compact_kv())
      throw Error(
          "a device attention block must provide compact_kv (the host moves CPU rows only)");
    KvCache cache(
        {KvLayerShape{info.kv_heads, info.head_dim, static_cast<ts_dtype>(info.kv_dtype)}}, c.batch,
        capacity, ctx.backend.allocator());
    std::vector<reference::SequenceKv> ref_kv(static_cast<size_t>(c.batch));
    const reference::GqaShape shape{c.hidden, c.heads, c.kv, c.head_dim, 10000.0};
    const reference::GqaWeights gw{
        w.host["q_proj.weight"].data<float>(), w.host["k_proj.weight"].data<float>(),
        w.host["v_proj.weight"].data<float>(), w.host["o_proj.weight"].data<float>()};

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
      const Tensor x = rounded_random(rng, {total, c.hidden}, 1.0);
      std::vector<const uint8_t*> masks(static_cast<size_t>(c.batch), mask);
      const ts_batch batch{sizeof(ts_batch),
                           c.batch,
                           total,
                           slots.data(),
                           offsets.data(),
                           positions.data(),
                           mask ? masks.data() : nullptr,
                           0u};
      ts_kv_layer kvl = cache.layer_view(0);
      const std::vector<float> got = run_on_device(ctx, *block, x, batch, &kvl);
      std::vector<float> want(static_cast<size_t>(total) * c.hidden);
      for (int32_t s = 0; s < c.batch; ++s) {
        const auto off = static_cast<size_t>(offsets[static_cast<size_t>(s)]) * c.hidden;
        reference::gqa_attention(shape, gw, x.data<float>() + off, n_new[static_cast<size_t>(s)],
                                 pos[static_cast<size_t>(s)].data(), mask,
                                 ref_kv[static_cast<size_t>(s)], want.data() + off);
        cache.set_length(s, cache.length(s) + n_new[static_cast<size_t>(s)]);
      }
      accumulate_error(got.data(), want.data(), want.size(), max_abs, max_ref);
    };
    auto consecutive = [&](const std::vector<int32_t>& n_new) {
      std::vector<std::vector<int32_t>> pos(static_cast<size_t>(c.batch));
      for (int32_t s = 0; s < c.batch; ++s)
        for (int32_t i = 0; i < n_new[static_cast<size_t>(s)]; ++i)
          pos[static_cast<size_t>(s)].push_back(cache.length(s) + i);
      return pos;
    };

    // Prefill lengths differ per sequence (odd ones included): c.prefill, then shorter.
    std::vector<int32_t> n_new;
    n_new.reserve(static_cast<size_t>(c.batch));
    for (int32_t s = 0; s < c.batch; ++s) n_new.push_back(std::max(1, c.prefill - 3 * s));
    step(n_new, consecutive(n_new), nullptr);
    const std::vector<int32_t> ones(static_cast<size_t>(c.batch), 1);
    for (int32_t d = 0; d < c.decode_steps; ++d) step(ones, consecutive(ones), nullptr);

    if (c.tree) {
      std::vector<uint8_t> mask(kTreeNodes * kTreeNodes, 0);
      for (int i = 0; i < kTreeNodes; ++i)
        for (int a = i; a >= 0; a = kTreeParent[a])
          mask[static_cast<size_t>(i) * kTreeNodes + static_cast<size_t>(a)] = 1;
      const std::vector<int32_t> nodes(static_cast<size_t>(c.batch), kTreeNodes);
      std::vector<std::vector<int32_t>> pos(static_cast<size_t>(c.batch));
      std::vector<int32_t> first_rows;
      for (int32_t s = 0; s < c.batch; ++s) {
        first_rows.push_back(cache.length(s));
        for (int n = 0; n < kTreeNodes; ++n)
          pos[static_cast<size_t>(s)].push_back(cache.length(s) + kTreeDepth[n]);
      }
      step(nodes, pos, mask.data());
      for (int32_t s = 0; s < c.batch; ++s) {
        const int32_t first = first_rows[static_cast<size_t>(s)];
        ts_kv_layer kvl = cache.layer_view(0);
        block->compact_kv(kvl, s, first, kTreeKeep, 3);
        cache.set_length(s, first + 3);
        reference::SequenceKv& r = ref_kv[static_cast<size_t>(s)];
        std::vector<float> k(r.k.begin(), r.k.begin() + first * kvdim);
        std::vector<float> v(r.v.begin(), r.v.begin() + first * kvdim);
        for (int32_t keep : kTreeKeep) {
          const auto from = (first + keep) * kvdim;
          k.insert(k.end(), r.k.begin() + from, r.k.begin() + from + kvdim);
          v.insert(v.end(), r.v.begin() + from, r.v.begin() + from + kvdim);
        }
        r.k = std::move(k);
        r.v = std::move(v);
        r.rows = first + 3;
      }
      step(ones, consecutive(ones), nullptr);
    }
  });
}

// ----------------------------------------------------------- dense blocks

ts_batch one_sequence(int32_t tokens, std::vector<int32_t>& slots, std::vector<int32_t>& offsets,
                      std::vector<int32_t>& positions) {
  slots = {0};
  offsets = {0, tokens};
  positions.resize(static_cast<size_t>(tokens));
  for (int32_t i = 0; i < tokens; ++i) positions[static_cast<size_t>(i)] = i;
  return ts_batch{sizeof(ts_batch), 1,       tokens, slots.data(), offsets.data(),
                  positions.data(), nullptr, 0u};
}

CaseResult check_dense(DeviceContext& ctx, const ts_provider& p, int32_t hidden, int32_t inter,
                       int32_t tokens, uint64_t seed) {
  const std::string which = p.name;
  std::ostringstream name;
  name << kind_name(p.kind) << " " << which << " [cuda bf16] hidden=" << hidden;
  if (which == "swiglu") name << " intermediate=" << inter;
  name << " tokens=" << tokens;
  const bool noop = which == "noop";
  return run_case(name.str(), noop ? 0.0 : ctx.tolerance, [&](double& max_abs, double& max_ref) {
    Rng rng(seed);
    DeviceWeights w;
    const double s_in = 1.0 / std::sqrt(double(hidden)), s_mid = 1.0 / std::sqrt(double(inter));
    if (which == "swiglu") {
      w.host["gate_proj.weight"] = rounded_random(rng, {inter, hidden}, s_in);
      w.host["up_proj.weight"] = rounded_random(rng, {inter, hidden}, s_in);
      w.host["down_proj.weight"] = rounded_random(rng, {hidden, inter}, s_mid);
    } else if (which == "linear") {
      const char* weight = p.kind == TS_KIND_ATTENTION ? "linear_attn.weight" : "linear_mlp.weight";
      w.host[weight] = rounded_random(rng, {hidden, hidden}, s_in);
    }
    ParamList params;
    set_model_params(params, hidden, 1, hidden, 1, inter, 64);
    const ts_weights weights_abi{&w, lookup_device_weight};
    const std::unique_ptr<Block> block =
        make_device_block(ctx, p, w, params, hidden, weights_abi, "conformance " + name.str());
    if (block->info().kv_heads != 0) throw Error("a cache-free block must report kv_heads 0");
    if (noop && !block->identity()) throw Error("a no-op block must set TS_BLOCK_IDENTITY");
    const Tensor x = rounded_random(rng, {tokens, hidden}, 1.0);
    std::vector<int32_t> slots, offsets, positions;
    const ts_batch batch = one_sequence(tokens, slots, offsets, positions);
    const std::vector<float> got = run_on_device(ctx, *block, x, batch, nullptr);
    std::vector<float> want(got.size(), 0.0f);
    if (which == "swiglu")
      reference::swiglu(x.data<float>(), w.host["gate_proj.weight"].data<float>(),
                        w.host["up_proj.weight"].data<float>(),
                        w.host["down_proj.weight"].data<float>(), tokens, hidden, inter,
                        want.data());
    else if (which == "linear")
      reference::matmul_nt(x.data<float>(), w.host.begin()->second.data<float>(), tokens, hidden,
                           hidden, want.data());
    accumulate_error(got.data(), want.data(), want.size(), max_abs, max_ref);
  });
}

// ---------------------------------------------------------------- backend

// The backend's own operations against the references: RMSNorm and the residual add in
// f32 (f32 tolerance), the lm head in bf16, the embedding gather, argmax and sampling
// exactly.
std::vector<CaseResult> check_backend(DeviceContext& ctx, double tol_f32, uint64_t seed) {
  std::vector<CaseResult> out;
  Backend& be = ctx.backend;
  Rng rng(seed);
  const int32_t rows = 5, dim = 96, vocab = 1000;

  out.push_back(run_case(
      "backend rmsnorm [cuda f32] rows=5 dim=96", tol_f32, [&](double& max_abs, double& max_ref) {
        const Tensor x = rounded_random(rng, {rows, dim}, 1.0);
        const Tensor w = rounded_random(rng, {dim}, 1.0);
        const Tensor xd = be.upload(x, TS_F32), wd = be.upload(w, TS_F32);
        Tensor yd({rows, dim}, TS_F32, be.allocator());
        ts_tensor yv = yd.view();
        be.rmsnorm(xd.view(), wd.view(), 1e-5, yv);
        const Tensor y = be.download(yd);
        std::vector<float> want(static_cast<size_t>(rows * dim));
        reference::rmsnorm(x.data<float>(), w.data<float>(), 1e-5, rows, dim, want.data());
        accumulate_error(y.data<float>(), want.data(), want.size(), max_abs, max_ref);
      }));
  out.push_back(run_case(
      "backend add [cuda f32 += bf16] n=480", tol_f32, [&](double& max_abs, double& max_ref) {
        const Tensor a = rounded_random(rng, {rows, dim}, 1.0);
        const Tensor b = rounded_random(rng, {rows, dim}, 1.0);
        Tensor ad = be.upload(a, TS_F32);
        const Tensor bd = be.upload(b, TS_BF16);
        ts_tensor av = ad.view();
        be.add(av, bd.view());
        const Tensor got = be.download(ad);
        std::vector<float> want(static_cast<size_t>(rows * dim));
        for (size_t i = 0; i < want.size(); ++i) want[i] = a.data<float>()[i] + b.data<float>()[i];
        accumulate_error(got.data<float>(), want.data(), want.size(), max_abs, max_ref);
      }));
  out.push_back(run_case("backend embed [cuda bf16 -> f32] vocab=1000 hidden=96", 0.0,
                         [&](double& max_abs, double& max_ref) {
                           const Tensor table = rounded_random(rng, {vocab, dim}, 1.0);
                           const Tensor td = be.upload(table, TS_BF16);
                           const std::vector<int32_t> tokens{0, 999, 17, 17, 512};
                           Tensor od({5, dim}, TS_F32, be.allocator());
                           ts_tensor ov = od.view();
                           be.embed(td.view(), tokens.data(), 5, ov);
                           const Tensor got = be.download(od);
                           std::vector<float> want;
                           for (int32_t t : tokens)
                             want.insert(want.end(), table.data<float>() + int64_t{t} * dim,
                                         table.data<float>() + int64_t{t + 1} * dim);
                           accumulate_error(got.data<float>(), want.data(), want.size(), max_abs,
                                            max_ref);
                         }));
  out.push_back(
      run_case("backend matmul (lm head) [cuda bf16, f32 out] m=3 n=1000 k=96", ctx.tolerance,
               [&](double& max_abs, double& max_ref) {
                 const Tensor x = rounded_random(rng, {3, dim}, 1.0);
                 const Tensor w = rounded_random(rng, {vocab, dim}, 0.1);
                 const Tensor xd = be.upload(x, TS_F32), wd = be.upload(w, TS_BF16);
                 Tensor yd({3, vocab}, TS_F32, be.allocator());
                 ts_tensor yv = yd.view();
                 be.matmul(xd.view(), wd.view(), yv);
                 const Tensor y = be.download(yd);
                 std::vector<float> want(3 * static_cast<size_t>(vocab));
                 reference::matmul_nt(x.data<float>(), w.data<float>(), 3, vocab, dim, want.data());
                 accumulate_error(y.data<float>(), want.data(), want.size(), max_abs, max_ref);
               }));
  out.push_back(run_case(
      "backend argmax and sample [cuda f32] rows=4 vocab=1000", 0.0, [&](double&, double&) {
        Tensor logits = rounded_random(rng, {4, vocab}, 2.0);
        logits.data<float>()[1 * vocab + 321] = 50.0f;  // a clear winner
        const Tensor ld = be.upload(logits, TS_F32);
        int32_t got[4];
        be.argmax(ld.view(), got);
        const std::array<float, 4> uniforms{0.0f, 0.25f, 0.5f, 0.999f};
        int32_t sampled[4];
        be.sample(ld.view(), 0.7f, uniforms.data(), sampled);
        for (int32_t r = 0; r < 4; ++r) {
          const float* row = logits.data<float>() + int64_t{r} * vocab;
          const auto best = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
          if (got[r] != best)
            throw Error("argmax of row " + std::to_string(r) + " is " + std::to_string(got[r]) +
                        ", expected " + std::to_string(best));
          // Inverse CDF in double: the pick's interval must hold u * total
          // (up to f32 rounding of the sums).
          std::vector<double> cum(static_cast<size_t>(vocab));
          double total = 0;
          for (int32_t i = 0; i < vocab; ++i) {
            total += std::exp((row[i] - row[best]) / 0.7);
            cum[static_cast<size_t>(i)] = total;
          }
          const double target = uniforms[static_cast<size_t>(r)] * total;
          const auto k = static_cast<size_t>(sampled[r]);
          const double lo = k == 0 ? 0.0 : cum[k - 1], hi = cum[k];
          if (sampled[r] < 0 || sampled[r] >= vocab || target < lo - 1e-4 * total ||
              target > hi + 1e-4 * total)
            throw Error("sample of row " + std::to_string(r) + " picked " +
                        std::to_string(sampled[r]) +
                        ", whose cumulative interval does not hold u * total");
        }
      }));
  return out;
}

}  // namespace

void run_device_conformance(const PluginRegistry& registry, const PluginInfo& plugin,
                            const std::vector<const ts_provider*>& providers,
                            const ConformanceOptions& options, ConformanceReport& report) {
  if (providers.empty()) return;
  const auto n = static_cast<int32_t>(providers.size());
  const auto unchecked = [&](const std::string& why) {
    report.unchecked_device_providers += n;
    report.skipped.push_back("no CUDA device: " + std::to_string(n) + " CUDA provider" +
                             (n == 1 ? "" : "s") + " not checked (" + why + ")");
  };
  for (const ts_provider* p : providers)
    if (p->device != TS_DEVICE_CUDA) {
      report.skipped.push_back(std::string(kind_name(p->kind)) + " '" + p->name +
                               "': unknown device " + std::to_string(p->device));
      return;
    }

  // A CUDA backend: in the plugin itself, else beside it or in the usual folders.
  PluginRegistry others;
  others.add_search_path(plugin.path.parent_path());
  const PluginRegistry* where = &registry;
  const ts_provider* backend_provider = nullptr;
  std::string backend_plugin = plugin.name;
  for (const ts_provider* p : plugin.providers)
    if (p->kind == TS_KIND_BACKEND && p->device == TS_DEVICE_CUDA) backend_provider = p;
  if (backend_provider == nullptr) {
    others.load_all(/*skip_broken=*/true);
    for (const PluginInfo& info : others.plugins())
      for (const ts_provider* p : info.providers)
        if (backend_provider == nullptr && p->kind == TS_KIND_BACKEND &&
            p->device == TS_DEVICE_CUDA) {
          backend_provider = p;
          backend_plugin = info.name;
          where = &others;
        }
  }
  if (backend_provider == nullptr) {
    unchecked("no CUDA backend plugin (libtessera-backend-cuda.so) beside " + plugin.path.string() +
              " or in the plugin folders");
    return;
  }
  if (backend_provider->score != nullptr && backend_provider->score() <= 0) {
    // The registry hands out no provider of score 0; its create still says why.
    std::string why = "the CUDA backend reports it cannot run on this machine";
    const auto* vt = static_cast<const ts_backend_vtable*>(backend_provider->vtable);
    ts_backend_config config{};
    config.struct_size = sizeof(config);
    void* self = nullptr;
    ts_error err{};
    if (vt->create(&config, &self, &err) == TS_OK)
      vt->destroy(self);
    else if (err.message[0] != '\0')
      why += ": " + std::string(err.message);
    unchecked(why);
    return;
  }

  ThreadPool pool(0);
  std::unique_ptr<Backend> backend;
  try {
    backend = std::make_unique<Backend>(
        where->find(TS_KIND_BACKEND, backend_provider->name, TS_DEVICE_CUDA, backend_plugin), 0,
        pool.host());
  } catch (const BackendUnavailable& e) {
    unchecked(e.what());
    return;
  }
  const ts_backend_device_info info = backend->device_info();
  report.device = std::string(info.name) + " (compute capability " +
                  std::to_string(info.compute_major) + "." + std::to_string(info.compute_minor) +
                  ")";
  DeviceContext ctx{registry, plugin, *backend, *pool.host(), options.tolerance_bf16};
  ctx.host.device_context = backend->context();

  uint64_t seed = 1000;
  for (const ts_provider* p : providers) {
    const std::string name = p->name;
    if (p->kind == TS_KIND_ATTENTION && name == "gqa") {
      std::vector<GqaCase> grid;
      // {hidden, heads, head_dim, prefill}: head_dim 16 takes the naive and split-KV
      // kernels, 64 and 128 the prefill kernel once n_new x group passes 64 rows.
      const std::vector<std::array<int32_t, 4>> shapes =
          options.quick ? std::vector<std::array<int32_t, 4>>{{64, 4, 16, 7}, {512, 8, 64, 70}}
                        : std::vector<std::array<int32_t, 4>>{{64, 4, 16, 7},
                                                              {576, 9, 64, 8},
                                                              {256, 2, 128, 8},
                                                              {512, 8, 64, 70},
                                                              {1024, 8, 128, 131}};
      for (const auto& [hidden, heads, head_dim, prefill] : shapes)
        for (int32_t kv = heads; kv >= 1; --kv) {
          if (heads % kv != 0) continue;
          for (int32_t batch : {1, 3})
            for (bool tree : {false, true})
              grid.push_back({hidden, heads, kv, head_dim, batch, prefill, tree ? 1 : 3, tree});
        }
      for (const GqaCase& c : grid) report.cases.push_back(check_gqa(ctx, *p, c, seed++));
    } else if ((p->kind == TS_KIND_ATTENTION || p->kind == TS_KIND_FFN) &&
               (name == "linear" || name == "noop")) {
      for (int32_t hidden : {64, 576})
        for (int32_t tokens : {1, 7})
          report.cases.push_back(check_dense(ctx, *p, hidden, hidden, tokens, seed++));
    } else if (p->kind == TS_KIND_FFN && name == "swiglu") {
      for (const auto& [hidden, inter] :
           std::vector<std::pair<int32_t, int32_t>>{{64, 40}, {64, 100}, {576, 1536}})
        for (int32_t tokens : {1, 9, 130})
          report.cases.push_back(check_dense(ctx, *p, hidden, inter, tokens, seed++));
    } else if (p->kind == TS_KIND_BACKEND) {
      for (CaseResult& c : check_backend(ctx, options.tolerance_f32, seed++))
        report.cases.push_back(std::move(c));
    } else {
      report.skipped.push_back(std::string(kind_name(p->kind)) + " '" + name +
                               "' on cuda: no reference implementation for this provider");
    }
  }
}

}  // namespace tessera::cli
