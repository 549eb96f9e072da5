#include "conformance_backward.hpp"

#include <tessera/engine/block.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/plugin_object.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/tensor.hpp>
#include <tessera/reference/reference.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "conformance_case.hpp"
#include "conformance_properties.hpp"

namespace tessera::cli {
namespace {

using WeightMap = std::map<std::string, Tensor>;
using Grads = std::map<std::string, std::vector<float>>;

constexpr int32_t kPolicies[3] = {TS_RECOMPUTE_NONE, TS_RECOMPUTE_CORE, TS_RECOMPUTE_ALL};
constexpr const char* kPolicyNames[3] = {"none", "core", "all"};
constexpr double kStep = 1e-3;   // finite-difference step
constexpr int kCoordinates = 4;  // random coordinates per tensor

int lookup_weight(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
  const auto* weights = static_cast<const WeightMap*>(ctx);
  const auto it = weights->find(name);
  if (it == weights->end()) {
    std::snprintf(err->message, sizeof(err->message), "the block asked for weight '%s'", name);
    return TS_ERROR;
  }
  *out = it->second.view();
  return TS_OK;
}

// f32 gradient buffers shaped as the weights, zeroed; a frozen name answers NULL.
class GradBuffers {
 public:
  explicit GradBuffers(const WeightMap& weights, std::set<std::string> frozen = {})
      : frozen_(std::move(frozen)) {
    for (const auto& [name, w] : weights) {
      Tensor t(w.shape(), TS_F32);
      t.zero();
      buffers_[name] = t;
    }
  }
  GradBuffers(const GradBuffers&) = delete;
  GradBuffers& operator=(const GradBuffers&) = delete;
  const ts_grads* abi() const { return &abi_; }
  Grads values() const {
    Grads out;
    for (const auto& [name, t] : buffers_)
      if (frozen_.count(name) == 0) out[name] = {t.data<float>(), t.data<float>() + t.numel()};
    return out;
  }

 private:
  static int get(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
    const auto* self = static_cast<const GradBuffers*>(ctx);
    const auto it = self->buffers_.find(name);
    if (it == self->buffers_.end()) {
      std::snprintf(err->message, sizeof(err->message),
                    "the block asked for the gradient of '%s', which it does not declare", name);
      return TS_ERROR;
    }
    *out = it->second.view();
    if (self->frozen_.count(name) != 0) out->data = nullptr;
    return TS_OK;
  }
  WeightMap buffers_;
  std::set<std::string> frozen_;
  ts_grads abi_{this, &GradBuffers::get};
};

// Whole sequences as a training run feeds them: no slots, no cache.
struct Sequences {
  std::vector<int32_t> offsets{0}, positions;
  std::vector<std::vector<uint8_t>> masks;
  std::vector<const uint8_t*> mask_ptrs;
  ts_batch batch{};

  // lengths[s] tokens at positions first[s], first[s] + 1, ...; masks[s] empty for causal.
  Sequences(const std::vector<int32_t>& lengths, const std::vector<int32_t>& first,
            std::vector<std::vector<uint8_t>> tree_masks)
      : masks(std::move(tree_masks)) {
    bool any = false;
    for (size_t s = 0; s < lengths.size(); ++s) {
      offsets.push_back(offsets.back() + lengths[s]);
      for (int32_t i = 0; i < lengths[s]; ++i) positions.push_back(first[s] + i);
      mask_ptrs.push_back(masks[s].empty() ? nullptr : masks[s].data());
      any = any || !masks[s].empty();
    }
    batch = ts_batch{sizeof(ts_batch),
                     static_cast<int32_t>(lengths.size()),
                     offsets.back(),
                     nullptr,
                     offsets.data(),
                     positions.data(),
                     any ? mask_ptrs.data() : nullptr,
                     0u};
  }
  Sequences(const Sequences&) = delete;
  Sequences& operator=(const Sequences&) = delete;
  int32_t tokens() const { return offsets.back(); }
};

// A block created through its provider, driven through its training entries.
class TrainableBlock {
 public:
  TrainableBlock(const ProviderRef& provider, const ts_block_config& config, std::string label)
      : object_(provider, std::move(label),
                [&](const ts_block_vtable& vt, void** self, ts_error* err) {
                  return vt.create(&config, self, err);
                }) {}

  // y (and, with grads, dx unless want_dx is false) of one forward_train + backward.
  void step(const Sequences& seqs, const Tensor& x, const Tensor& dy, int32_t policy, Tensor& y,
            const GradBuffers* grads, Tensor* dx) {
    uint64_t bytes = 0;
    object_.call("train_workspace", &ts_block_vtable::train_workspace, &seqs.batch, policy, &bytes);
    // 64-byte aligned, as the ABI promises.
    std::vector<std::max_align_t> storage(
        static_cast<size_t>(bytes / sizeof(std::max_align_t) + 8));
    auto* base = reinterpret_cast<char*>(storage.data());
    void* workspace =
        bytes == 0 ? nullptr : base + (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
    const ts_tensor xv = x.view(), dyv = dy.view();
    ts_tensor yv = y.view();
    const ts_block_io io{sizeof(ts_block_io), &xv, &yv, &seqs.batch, nullptr};
    object_.call("forward_train", &ts_block_vtable::forward_train, &io, policy, workspace);
    if (grads == nullptr) return;
    ts_tensor dxv{};
    if (dx != nullptr) dxv = dx->view();
    ts_backward_io b{};
    b.struct_size = sizeof(ts_backward_io);
    b.x = &xv;
    b.grad_y = &dyv;
    b.grad_x = dx != nullptr ? &dxv : nullptr;
    b.batch = &seqs.batch;
    b.workspace = workspace;
    b.recompute = policy;
    b.grads = grads->abi();
    object_.call("backward", &ts_block_vtable::backward, &b);
  }

 private:
  PluginObject<ts_block_vtable> object_;
};

Tensor random_tensor(Rng& rng, std::vector<int64_t> shape, double scale) {
  Tensor t(std::move(shape), TS_F32);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<float>()[i] = static_cast<float>(rng.normal() * scale);
  return t;
}

std::vector<float> values(const Tensor& t) {
  return {t.data<float>(), t.data<float>() + t.numel()};
}

std::vector<double> doubles(const Tensor& t) {
  return {t.data<float>(), t.data<float>() + t.numel()};
}

// Everything a case needs to make blocks of one configuration again and again.
struct Setup {
  const ProviderRef* provider = nullptr;
  ParamList params;
  WeightMap weights;
  ts_weights weights_abi{};
  int32_t hidden = 0;
  ThreadPool* pool = nullptr;
  std::string label;

  TrainableBlock make() {
    weights_abi = ts_weights{&weights, lookup_weight};
    ts_block_config c{};
    c.struct_size = sizeof(ts_block_config);
    c.kind = provider->provider->kind;
    c.hidden = hidden;
    c.dtype = TS_F32;
    c.device = TS_DEVICE_CPU;
    c.params = params.c_params();
    c.weights = &weights_abi;
    c.comm = nullptr;
    c.host = pool->host();
    return TrainableBlock(*provider, c, label);
  }

  // One training step with fresh, zeroed gradient buffers (those in `frozen` NULL).
  struct Result {
    std::vector<float> y, dx;
    Grads grads;
  };
  Result step(const Sequences& seqs, const Tensor& x, const Tensor& dy, int32_t policy,
              const std::set<std::string>& frozen = {}, bool want_dx = true, int repeat = 1) {
    TrainableBlock block = make();
    GradBuffers grads(weights, frozen);
    Tensor y({seqs.tokens(), hidden}, TS_F32), dx({seqs.tokens(), hidden}, TS_F32);
    for (int i = 0; i < repeat; ++i)
      block.step(seqs, x, dy, policy, y, &grads, want_dx ? &dx : nullptr);
    Result r{values(y), want_dx ? values(dx) : std::vector<float>{}, grads.values()};
    return r;
  }
};

// accumulate_error over a whole tensor, whose size must match the reference's.
void accumulate(const std::vector<float>& got, const std::vector<double>& want, double& max_abs,
                double& max_ref) {
  if (got.size() != want.size()) throw Error("a gradient has the wrong size");
  accumulate_error(got.data(), want.data(), got.size(), max_abs, max_ref);
}

void add_case(ConformanceReport& report, const std::string& name, double tolerance,
              const std::function<void(double&, double&)>& body) {
  report.cases.push_back(run_case(name, tolerance, body));
}

// The f64 reference of a batch: y, dx and each weight's gradient (summed over sequences).
struct Reference {
  std::vector<double> y, dx;
  std::map<std::string, std::vector<double>> grads;
};

// Compares one step under each policy with the reference: one case per policy.
void against_reference(ConformanceReport& report, Setup& setup, const std::string& name,
                       const Sequences& seqs, const Tensor& x, const Tensor& dy,
                       const Reference& want, double tol) {
  for (int p = 0; p < 3; ++p)
    add_case(report, name + " recompute=" + kPolicyNames[p], tol,
             [&](double& max_abs, double& max_ref) {
               const Setup::Result got = setup.step(seqs, x, dy, kPolicies[p]);
               accumulate(got.y, want.y, max_abs, max_ref);
               accumulate(got.dx, want.dx, max_abs, max_ref);
               for (const auto& [w, g] : want.grads) {
                 const auto it = got.grads.find(w);
                 if (it == got.grads.end()) throw Error("no gradient for '" + w + "'");
                 accumulate(it->second, g, max_abs, max_ref);
               }
             });
}

// A five-node tree: 0 the root, 1 and 2 its children, 3 under 1, 4 under 2.
std::vector<uint8_t> tree_mask() {
  const int parent[5] = {-1, 0, 0, 1, 2};
  std::vector<uint8_t> m(25, 0);
  for (int i = 0; i < 5; ++i)
    for (int a = i; a >= 0; a = parent[a])
      m[static_cast<size_t>(i) * 5 + static_cast<size_t>(a)] = 1;
  return m;
}

// ------------------------------------------------------- built-in kinds

struct GqaShapeCase {
  int32_t hidden, heads, kv, head_dim;
  bool llama3;
};

void gqa_backward_cases(const ProviderRef& provider, const GqaShapeCase& c, double tol,
                        ThreadPool& pool, uint64_t seed, ConformanceReport& report) {
  std::ostringstream name;
  name << "backward attention " << provider.provider->name << " hidden=" << c.hidden
       << " heads=" << c.heads << " kv_heads=" << c.kv << " head_dim=" << c.head_dim
       << (c.llama3 ? " llama3" : "") << " tree_mask";
  Rng rng(seed);
  Setup s;
  s.provider = &provider;
  s.hidden = c.hidden;
  s.pool = &pool;
  s.label = "conformance " + name.str();
  const int64_t qdim = int64_t{c.heads} * c.head_dim, kvdim = int64_t{c.kv} * c.head_dim;
  const double in_scale = 1.0 / std::sqrt(static_cast<double>(c.hidden));
  s.weights["q_proj.weight"] = random_tensor(rng, {qdim, c.hidden}, in_scale);
  s.weights["k_proj.weight"] = random_tensor(rng, {kvdim, c.hidden}, in_scale);
  s.weights["v_proj.weight"] = random_tensor(rng, {kvdim, c.hidden}, in_scale);
  s.weights["o_proj.weight"] = random_tensor(rng, {c.hidden, qdim}, 1.0 / std::sqrt(double(qdim)));
  set_model_params(s.params, c.hidden, c.heads, c.head_dim, c.kv, 4 * c.hidden, 256);
  RopeScaling scaling;
  if (c.llama3) {
    scaling.type = "llama3";
    scaling.factor = 8.0;
    scaling.low_freq_factor = 1.0;
    scaling.high_freq_factor = 4.0;
    scaling.original_max_position_embeddings = 256;
    s.params.set("rope_scaling_type", std::string("llama3"));
    s.params.set("rope_scaling_factor", 8.0);
    s.params.set("rope_scaling_low_freq_factor", 1.0);
    s.params.set("rope_scaling_high_freq_factor", 4.0);
    s.params.set("rope_scaling_original_max_position_embeddings", 256.0);
  }
  const std::vector<int32_t> lengths{6, 11, 5}, first{0, 40, 7};
  const Sequences seqs(lengths, first, {{}, {}, tree_mask()});
  const Tensor x = random_tensor(rng, {seqs.tokens(), c.hidden}, 1.0);
  const Tensor dy = random_tensor(rng, {seqs.tokens(), c.hidden}, 1.0);

  Reference want;
  const reference::GqaShape shape{c.hidden, c.heads, c.kv, c.head_dim, 10000.0};
  std::map<std::string, std::vector<double>> w;
  for (const auto& [n, t] : s.weights) {
    w[n] = doubles(t);
    want.grads[n].assign(w[n].size(), 0.0);
  }
  const reference::GqaWeightsF64 gw{w["q_proj.weight"].data(), w["k_proj.weight"].data(),
                                    w["v_proj.weight"].data(), w["o_proj.weight"].data()};
  const std::vector<double> xd = doubles(x), dyd = doubles(dy);
  want.y.assign(xd.size(), 0.0);
  want.dx.assign(xd.size(), 0.0);
  std::map<std::string, std::vector<double>> part = want.grads;
  for (size_t q = 0; q < lengths.size(); ++q) {
    const size_t off = static_cast<size_t>(seqs.offsets[q]) * static_cast<size_t>(c.hidden);
    const int32_t* pos = seqs.positions.data() + seqs.offsets[q];
    const uint8_t* mask = seqs.mask_ptrs[q];
    reference::gqa_attention_f64(shape, scaling, gw, xd.data() + off, lengths[q], pos, mask,
                                 want.y.data() + off);
    reference::gqa_attention_backward(
        shape, scaling, gw, xd.data() + off, lengths[q], pos, mask, dyd.data() + off,
        {want.dx.data() + off, part["q_proj.weight"].data(), part["k_proj.weight"].data(),
         part["v_proj.weight"].data(), part["o_proj.weight"].data()});
    for (auto& [n, g] : want.grads)
      for (size_t i = 0; i < g.size(); ++i) g[i] += part[n][i];
  }
  against_reference(report, s, name.str(), seqs, x, dy, want, tol);
}

void dense_backward_cases(const ProviderRef& provider, int32_t hidden, int32_t inter, double tol,
                          ThreadPool& pool, uint64_t seed, ConformanceReport& report) {
  const ts_kind kind = static_cast<ts_kind>(provider.provider->kind);
  const std::string pname = provider.provider->name;
  std::ostringstream name;
  name << "backward " << kind_name(kind) << " " << pname << " hidden=" << hidden;
  if (pname == "swiglu") name << " intermediate=" << inter;
  Rng rng(seed);
  Setup s;
  s.provider = &provider;
  s.hidden = hidden;
  s.pool = &pool;
  s.label = "conformance " + name.str();
  set_model_params(s.params, hidden, 1, hidden, 1, inter, 256);
  const std::vector<int32_t> lengths{7, 2};
  const Sequences seqs(lengths, {0, 3}, {{}, {}});
  const int64_t n = seqs.tokens();
  const Tensor x = random_tensor(rng, {n, hidden}, 1.0);
  const Tensor dy = random_tensor(rng, {n, hidden}, 1.0);
  const std::vector<double> xd = doubles(x), dyd = doubles(dy);
  Reference want;
  want.y.assign(xd.size(), 0.0);
  want.dx.assign(xd.size(), 0.0);
  if (pname == "swiglu") {
    const double s_in = 1.0 / std::sqrt(double(hidden)), s_mid = 1.0 / std::sqrt(double(inter));
    s.weights["gate_proj.weight"] = random_tensor(rng, {inter, hidden}, s_in);
    s.weights["up_proj.weight"] = random_tensor(rng, {inter, hidden}, s_in);
    s.weights["down_proj.weight"] = random_tensor(rng, {hidden, inter}, s_mid);
    const auto g = doubles(s.weights["gate_proj.weight"]), u = doubles(s.weights["up_proj.weight"]),
               d = doubles(s.weights["down_proj.weight"]);
    for (const auto& [w, t] : s.weights) want.grads[w].assign(static_cast<size_t>(t.numel()), 0.0);
    reference::swiglu_f64(xd.data(), g.data(), u.data(), d.data(), n, hidden, inter, want.y.data());
    reference::swiglu_backward(
        xd.data(), g.data(), u.data(), d.data(), dyd.data(), n, hidden, inter,
        {want.dx.data(), want.grads["gate_proj.weight"].data(), want.grads["up_proj.weight"].data(),
         want.grads["down_proj.weight"].data()});
  } else if (pname == "linear") {
    const std::string w = kind == TS_KIND_ATTENTION ? "linear_attn.weight" : "linear_mlp.weight";
    s.weights[w] = random_tensor(rng, {hidden, hidden}, 1.0 / std::sqrt(double(hidden)));
    const auto wd = doubles(s.weights[w]);
    want.grads[w].assign(wd.size(), 0.0);
    reference::linear_f64(xd.data(), wd.data(), n, hidden, hidden, want.y.data());
    reference::linear_backward(xd.data(), wd.data(), dyd.data(), n, hidden, hidden, want.dx.data(),
                               want.grads[w].data());
  }
  // noop: y = 0 and dx = 0, no weights.
  against_reference(report, s, name.str(), seqs, x, dy, want, tol);
}

// ------------------------------------------------------------- any kind

// Central differences of the block's own forward_train on random coordinates of each
// declared weight and of x, the policies, accumulation, frozen weights and no grad_x.
void generic_backward_cases(const ProviderRef& provider, const ConformanceOptions& options,
                            const BlockLayout& layout, ThreadPool& pool, uint64_t seed,
                            ConformanceReport& report) {
  const ts_provider& p = *provider.provider;
  const std::string prefix = std::string("backward properties ") + kind_name(p.kind) + " " + p.name;
  Setup s;
  s.provider = &provider;
  s.hidden = kPropertyHidden;
  s.pool = &pool;
  s.label = prefix;
  s.params = property_params(options);
  s.weights = declared_weights(layout, seed);
  Rng rng(seed * 7919 + 5);
  const Sequences seqs({7, 4}, {0, 0}, {{}, {}});
  Tensor x = random_tensor(rng, {seqs.tokens(), kPropertyHidden}, 1.0);
  const Tensor dy = random_tensor(rng, {seqs.tokens(), kPropertyHidden}, 1.0);

  add_case(
      report, prefix + " finite differences", kFiniteDifferenceTolerance,
      [&](double& max_abs, double& max_rel_scale) {
        const Setup::Result base = s.step(seqs, x, dy, TS_RECOMPUTE_NONE);
        // L = sum(dy * y) of a fresh block's forward_train, in double.
        auto loss = [&] {
          TrainableBlock block = s.make();
          Tensor y({seqs.tokens(), kPropertyHidden}, TS_F32);
          block.step(seqs, x, dy, TS_RECOMPUTE_ALL, y, nullptr, nullptr);
          double l = 0.0;
          for (int64_t i = 0; i < y.numel(); ++i)
            l += static_cast<double>(y.data<float>()[i]) * dy.data<float>()[i];
          return l;
        };
        // Worst |differences - backward| / max |gradient| over the tensors; reported as
        // max_abs over a scale of 1.
        max_rel_scale = 1.0;
        std::string failures;  // the worst coordinate of each tensor that fails
        auto check = [&](Tensor& values, const std::vector<float>& grad, const std::string& what) {
          double scale = 0.0;
          for (float g : grad) scale = std::max(scale, std::fabs(static_cast<double>(g)));
          if (scale == 0.0) scale = 1.0;
          double worst = 0.0;
          std::string worst_text;
          for (int k = 0; k < kCoordinates; ++k) {
            const auto i = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(values.numel()));
            float* v = values.data<float>() + i;
            const float keep = *v;
            *v = keep + static_cast<float>(kStep);
            const double up_step = static_cast<double>(*v) - keep;
            const double up = loss();
            *v = keep - static_cast<float>(kStep);
            const double down_step = keep - static_cast<double>(*v);
            const double down = loss();
            *v = keep;
            const double numeric = (up - down) / (up_step + down_step);
            const float analytic = grad[static_cast<size_t>(i)];
            double err = std::fabs(numeric - analytic) / scale;
            if (std::isnan(err)) err = INFINITY;
            if (err > worst) {
              worst = err;
              worst_text = what + "[" + std::to_string(i) + "]: backward " +
                           std::to_string(analytic) + ", central differences " +
                           std::to_string(numeric);
            }
          }
          max_abs = std::max(max_abs, worst);
          if (worst > kFiniteDifferenceTolerance)
            failures += (failures.empty() ? "" : "; ") + worst_text;
        };
        check(x, base.dx, "d loss / d x");
        for (auto& [w, t] : s.weights) check(t, base.grads.at(w), "gradient of '" + w + "'");
        if (!failures.empty()) throw Error(failures);
      });

  add_case(report, prefix + " recompute policies give identical gradients", 0.0,
           [&](double& max_abs, double& max_ref) {
             const Setup::Result none = s.step(seqs, x, dy, TS_RECOMPUTE_NONE);
             for (int32_t policy : {TS_RECOMPUTE_CORE, TS_RECOMPUTE_ALL}) {
               const Setup::Result other = s.step(seqs, x, dy, policy);
               auto differ = [&](const std::vector<float>& a, const std::vector<float>& b) {
                 if (a.size() != b.size() ||
                     std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) {
                   for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
                     max_abs = std::max(max_abs, std::fabs(static_cast<double>(a[i]) - b[i]));
                   max_ref = std::max(max_ref, 1.0);
                   if (max_abs == 0.0) max_abs = INFINITY;  // NaNs or sizes
                 }
               };
               differ(other.y, none.y);
               differ(other.dx, none.dx);
               for (const auto& [w, g] : none.grads) differ(other.grads.at(w), g);
             }
           });

  add_case(report, prefix + " two backward calls add twice one", options.tolerance_f32,
           [&](double& max_abs, double& max_ref) {
             const Setup::Result once = s.step(seqs, x, dy, TS_RECOMPUTE_CORE);
             const Setup::Result twice = s.step(seqs, x, dy, TS_RECOMPUTE_CORE, {}, true, 2);
             for (const auto& [w, g] : once.grads) {
               std::vector<double> doubled(g.begin(), g.end());
               for (double& v : doubled) v *= 2.0;
               accumulate(twice.grads.at(w), doubled, max_abs, max_ref);
             }
           });

  add_case(report, prefix + " frozen weights and no grad_x change nothing else",
           options.tolerance_f32, [&](double& max_abs, double& max_ref) {
             const Setup::Result all = s.step(seqs, x, dy, TS_RECOMPUTE_ALL);
             std::set<std::string> every;
             for (const auto& [w, t] : s.weights) every.insert(w);
             const Setup::Result frozen = s.step(seqs, x, dy, TS_RECOMPUTE_ALL, every);
             accumulate(frozen.dx, {all.dx.begin(), all.dx.end()}, max_abs, max_ref);
             for (const auto& [w, t] : s.weights) {
               const Setup::Result one = s.step(seqs, x, dy, TS_RECOMPUTE_ALL, {w});
               for (const auto& [other, g] : one.grads)
                 accumulate(g, {all.grads.at(other).begin(), all.grads.at(other).end()}, max_abs,
                            max_ref);
             }
             const Setup::Result no_dx = s.step(seqs, x, dy, TS_RECOMPUTE_ALL, {}, false);
             for (const auto& [w, g] : no_dx.grads)
               accumulate(g, {all.grads.at(w).begin(), all.grads.at(w).end()}, max_abs, max_ref);
           });
}

}  // namespace

void check_block_backward(const ProviderRef& provider, const ConformanceOptions& options,
                          ThreadPool& pool, uint64_t seed, ConformanceReport& report) {
  const ts_provider& p = *provider.provider;
  if (p.device != TS_DEVICE_CPU || (p.kind != TS_KIND_ATTENTION && p.kind != TS_KIND_FFN)) return;
  const std::string who = std::string(kind_name(p.kind)) + " '" + p.name + "'";
  const auto* vt = static_cast<const ts_block_vtable*>(p.vtable);
  const bool reaches = vt != nullptr && vt->struct_size >= offsetof(ts_block_vtable, backward) +
                                                               sizeof(vt->backward);
  const int offered = !reaches ? 0
                               : (vt->train_workspace != nullptr) + (vt->forward_train != nullptr) +
                                     (vt->backward != nullptr);
  if (offered == 0) {
    report.notes.push_back(who + ": no backward (cannot be trained)");
    return;
  }
  if (offered != 3) {
    CaseResult r;
    r.name = "backward " + who + " training entries";
    r.measured = false;
    r.error = "train_workspace, forward_train and backward must be offered all three or none";
    report.cases.push_back(r);
    return;
  }
  const double tol = options.tolerance_f32;
  const std::string name = p.name;
  if (p.kind == TS_KIND_ATTENTION && name == "gqa") {
    std::vector<GqaShapeCase> shapes{
        {64, 4, 4, 16, false}, {64, 4, 2, 16, true}, {64, 4, 1, 16, false}};
    if (!options.quick) shapes.push_back({576, 9, 3, 64, true});
    for (const GqaShapeCase& c : shapes) gqa_backward_cases(provider, c, tol, pool, seed++, report);
  } else if (name == "swiglu" && p.kind == TS_KIND_FFN) {
    for (const int32_t inter : {40, 100})
      dense_backward_cases(provider, 64, inter, tol, pool, seed++, report);
  } else if (name == "linear" || name == "noop") {
    dense_backward_cases(provider, 64, 64, tol, pool, seed++, report);
  }

  std::optional<BlockLayout> layout;
  ParamList params = property_params(options);
  ts_block_config config{};
  config.struct_size = sizeof(ts_block_config);
  config.kind = p.kind;
  config.hidden = kPropertyHidden;
  config.dtype = TS_F32;
  config.device = TS_DEVICE_CPU;
  config.params = params.c_params();
  config.host = pool.host();
  try {
    layout = describe_block(provider, config, "backward properties " + who);
  } catch (const std::exception&) {
    return;  // the property checks report the refusal
  }
  if (!layout) {
    report.notes.push_back(who +
                           ": backward offered, but without describe its weights cannot "
                           "be drawn for the finite-difference checks");
    return;
  }
  generic_backward_cases(provider, options, *layout, pool, seed, report);
}

}  // namespace tessera::cli
