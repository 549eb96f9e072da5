// Training entries of the CPU block plugins (ABI 2.1): the cache-free forward, forward_train
// and backward of gqa, linear and noop attention and of swiglu, linear and noop FFN.
//
// Gradients are checked against the f64 references (reference.hpp) run on the same f32
// values: max |plugin - reference| <= 1e-4 * max |reference| for each of dx and every weight
// gradient (f32 sums over at most ~80 tokens). Between the recompute policies, between two
// runs, and between one thread and two, they must be bit for bit the same.
#include <tessera/reference/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "train_harness.hpp"

namespace {

using namespace tessera::test;
namespace ref = tessera::reference;

constexpr double kGradTolerance = 1e-4;  // relative to the reference's largest magnitude
constexpr int32_t kPolicies[3] = {TS_RECOMPUTE_NONE, TS_RECOMPUTE_CORE, TS_RECOMPUTE_ALL};

#define EXPECT_HAS(message, fact) \
  EXPECT_NE(std::string(message).find(fact), std::string::npos) << "message: " << (message)

std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

// max |got - want| / max |want|.
double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) return INFINITY;
  double err = 0.0, scale = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    err = std::isnan(d) ? INFINITY : std::max(err, d);
    scale = std::max(scale, std::fabs(want[i]));
  }
  return err / scale;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Largest errors seen over a test, printed at its end: the figures the docs quote.
struct Worst {
  std::map<std::string, double> by_name;
  void note(const std::string& name, double err) {
    double& w = by_name[name];
    w = std::max(w, err);
  }
  void print(const std::string& block) const {
    for (const auto& [name, err] : by_name)
      std::printf("[ measured ] %s %s: max relative error vs f64 reference %.2e\n", block.c_str(),
                  name.c_str(), err);
  }
};

// What one training step of a block gives: y, dx and the weight gradients by name.
struct StepResult {
  std::vector<float> y, dx;
  std::map<std::string, std::vector<float>> grads;
};

// forward_train then backward under `recompute`, with fresh zeroed gradient buffers.
StepResult train_step(TrainBlock& block, TrainBatch& batch, const std::vector<float>& x,
                      const std::vector<float>& dy, TestGrads& grads, int32_t recompute,
                      bool want_dx = true) {
  StepResult r;
  grads.zero();
  std::string error;
  EXPECT_EQ(block.forward_train(batch, x, recompute, r.y, &error), TS_OK) << error;
  EXPECT_EQ(block.backward(batch, x, dy, want_dx ? &r.dx : nullptr, grads.abi(), recompute, &error),
            TS_OK)
      << error;
  for (const std::string& name : grads.names()) r.grads[name] = grads[name];
  return r;
}

void expect_same_step(const StepResult& a, const StepResult& b, const std::string& what) {
  EXPECT_TRUE(same_bits(a.y, b.y)) << what << ": y";
  EXPECT_TRUE(same_bits(a.dx, b.dx)) << what << ": dx";
  for (const auto& [name, g] : a.grads)
    EXPECT_TRUE(same_bits(g, b.grads.at(name))) << what << ": " << name;
}

// ------------------------------------------------------------------- GQA

struct GqaTrainConfig {
  int32_t hidden, heads, kv_heads, head_dim;
  bool llama3 = false;
};

struct GqaTrainModel {
  GqaTrainModel(const GqaTrainConfig& c, uint32_t seed) : config(c) {
    const int64_t qw = int64_t{c.heads} * c.head_dim, kvw = int64_t{c.kv_heads} * c.head_dim;
    const float in_scale = 1.0f / std::sqrt(static_cast<float>(c.hidden));
    wq = random_vector(static_cast<size_t>(qw * c.hidden), seed, in_scale);
    wk = random_vector(static_cast<size_t>(kvw * c.hidden), seed + 1, in_scale);
    wv = random_vector(static_cast<size_t>(kvw * c.hidden), seed + 2, in_scale);
    wo = random_vector(static_cast<size_t>(c.hidden * qw), seed + 3,
                       1.0f / std::sqrt(static_cast<float>(qw)));
    weights.add("q_proj.weight", {qw, c.hidden}, wq);
    weights.add("k_proj.weight", {kvw, c.hidden}, wk);
    weights.add("v_proj.weight", {kvw, c.hidden}, wv);
    weights.add("o_proj.weight", {c.hidden, qw}, wo);
  }

  ParamList params() const {
    ParamList p;
    p.set_int("hidden_size", config.hidden)
        .set_int("num_heads", config.heads)
        .set_int("head_dim", config.head_dim)
        .set_int("kv_heads", config.kv_heads)
        .set_float("rope_theta", 10000.0);
    if (config.llama3)
      p.set_string("rope_scaling_type", "llama3")
          .set_float("rope_scaling_factor", 8.0)
          .set_float("rope_scaling_low_freq_factor", 1.0)
          .set_float("rope_scaling_high_freq_factor", 4.0)
          .set_float("rope_scaling_original_max_position_embeddings", 256.0);
    return p;
  }

  tessera::RopeScaling scaling() const {
    tessera::RopeScaling s;
    if (!config.llama3) return s;
    s.type = "llama3";
    s.factor = 8.0;
    s.low_freq_factor = 1.0;
    s.high_freq_factor = 4.0;
    s.original_max_position_embeddings = 256;
    return s;
  }

  void add_grads(TestGrads& g) const {
    const int64_t qw = int64_t{config.heads} * config.head_dim,
                  kvw = int64_t{config.kv_heads} * config.head_dim;
    g.add("q_proj.weight", {qw, config.hidden});
    g.add("k_proj.weight", {kvw, config.hidden});
    g.add("v_proj.weight", {kvw, config.hidden});
    g.add("o_proj.weight", {config.hidden, qw});
  }

  BlockSetup setup(const ts_host* host, const ts_comm* comm = nullptr) const {
    BlockSetup s;
    s.kind = TS_KIND_ATTENTION;
    s.layer = 2;
    s.hidden = config.hidden;
    s.weights = weights.abi();
    s.host = host;
    s.comm = comm;
    return s;
  }

  // The f64 reference of a batch: y, dx and the weight gradients summed over its sequences.
  struct Reference {
    std::vector<double> y, dx;
    std::map<std::string, std::vector<double>> grads;
  };
  Reference reference(TrainBatch& batch, const std::vector<float>& x,
                      const std::vector<float>& dy) const {
    const ref::GqaShape shape{config.hidden, config.heads, config.kv_heads, config.head_dim,
                              10000.0};
    const auto q = to_double(wq), k = to_double(wk), v = to_double(wv), o = to_double(wo);
    const ref::GqaWeightsF64 w{q.data(), k.data(), v.data(), o.data()};
    const auto xd = to_double(x), dyd = to_double(dy);
    Reference r;
    r.y.assign(x.size(), 0.0);
    r.dx.assign(x.size(), 0.0);
    const char* names[4] = {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"};
    const size_t sizes[4] = {wq.size(), wk.size(), wv.size(), wo.size()};
    for (int i = 0; i < 4; ++i) r.grads[names[i]].assign(sizes[i], 0.0);
    std::map<std::string, std::vector<double>> seq_grads = r.grads;
    for (int32_t s = 0; s < batch.sequences(); ++s) {
      const size_t off = static_cast<size_t>(batch.first(s)) * static_cast<size_t>(config.hidden);
      ref::gqa_attention_f64(shape, scaling(), w, xd.data() + off, batch.length(s),
                             batch.positions(s), batch.mask(s), r.y.data() + off);
      ref::gqa_attention_backward(
          shape, scaling(), w, xd.data() + off, batch.length(s), batch.positions(s), batch.mask(s),
          dyd.data() + off,
          {r.dx.data() + off, seq_grads["q_proj.weight"].data(), seq_grads["k_proj.weight"].data(),
           seq_grads["v_proj.weight"].data(), seq_grads["o_proj.weight"].data()});
      for (auto& [name, g] : r.grads)
        for (size_t i = 0; i < g.size(); ++i) g[i] += seq_grads[name][i];
    }
    return r;
  }

  GqaTrainConfig config;
  std::vector<float> wq, wk, wv, wo;
  TestWeights weights;
};

std::string describe(const GqaTrainConfig& c) {
  return "hidden " + std::to_string(c.hidden) + " heads " + std::to_string(c.heads) + " kv_heads " +
         std::to_string(c.kv_heads) + " head_dim " + std::to_string(c.head_dim) +
         (c.llama3 ? " llama3" : "");
}

// A tree of n nodes in two branches (1, 3, 5, ... and 2, 4, ... under the root 0): each token
// sees its ancestors and itself, unlike the causal mask.
std::vector<uint8_t> two_branch_tree(int32_t n) {
  std::vector<uint8_t> m(static_cast<size_t>(n * n), 0);
  for (int32_t i = 0; i < n; ++i)
    for (int32_t a = i; a >= 0; a = a == 0 ? -1 : (a <= 2 ? 0 : a - 2))
      m[static_cast<size_t>(i * n + a)] = 1;
  return m;
}

TEST(CpuBackwardGqa, MatchesReferenceForGroupingsPoliciesAndRopeScaling) {
  TwoThreadHost host;
  Worst worst;
  const std::vector<GqaTrainConfig> configs = {{32, 4, 4, 8},        {32, 4, 2, 8},
                                               {32, 4, 1, 8},        {48, 6, 3, 16, true},
                                               {40, 8, 2, 10, true}, {24, 2, 1, 12}};
  for (const GqaTrainConfig& c : configs) {
    GqaTrainModel model(c, 100);
    TrainBlock block(attention_vtable("gqa"), model.setup(host.abi()), model.params());
    ASSERT_TRUE(block.ok()) << block.create_error();
    ASSERT_TRUE(block.has_training());
    TestGrads grads;
    model.add_grads(grads);
    // A short sequence, one longer than a tile of 64 queries, a tree, one token, far positions.
    TrainBatch batch;
    batch.add(7, 0).add(70, 3).add(6, 11, two_branch_tree(6)).add(1, 5).add(9, 300);
    const auto x = random_vector(static_cast<size_t>(batch.tokens() * c.hidden), 101);
    const auto dy = random_vector(static_cast<size_t>(batch.tokens() * c.hidden), 102);
    const GqaTrainModel::Reference want = model.reference(batch, x, dy);
    StepResult first;
    for (int32_t policy : kPolicies) {
      const std::string what = describe(c) + " policy " + std::to_string(policy);
      const StepResult got = train_step(block, batch, x, dy, grads, policy);
      worst.note("y", relative_error(got.y, want.y));
      EXPECT_LE(relative_error(got.y, want.y), kGradTolerance) << what << ": y";
      EXPECT_LE(relative_error(got.dx, want.dx), kGradTolerance) << what << ": dx";
      worst.note("dx", relative_error(got.dx, want.dx));
      for (const auto& [name, g] : got.grads) {
        EXPECT_LE(relative_error(g, want.grads.at(name)), kGradTolerance) << what << ": " << name;
        worst.note(name, relative_error(g, want.grads.at(name)));
      }
      if (policy == TS_RECOMPUTE_NONE)
        first = got;
      else
        expect_same_step(got, first, what + " against policy none");
    }
  }
  worst.print("gqa");
}

TEST(CpuBackwardGqa, CacheFreeForwardEqualsPrefillIntoAnEmptyCache) {
  TwoThreadHost host;
  for (const GqaTrainConfig& c : {GqaTrainConfig{32, 4, 2, 8}, GqaTrainConfig{48, 6, 3, 16, true},
                                  GqaTrainConfig{24, 4, 1, 6}}) {
    GqaTrainModel model(c, 200);
    // A prefill of several tokens (tiled attention), two of at most three (split-KV decode
    // path), a tree.
    for (const std::vector<int32_t>& lengths :
         {std::vector<int32_t>{9, 70, 4}, std::vector<int32_t>{3, 1}, std::vector<int32_t>{5}}) {
      TrainBatch batch;
      std::vector<SeqFeed> feeds;
      int32_t s = 0;
      for (int32_t n : lengths) {
        std::vector<uint8_t> mask = n == 5 ? two_branch_tree(5) : std::vector<uint8_t>{};
        batch.add(n, 0, mask);
        SeqFeed f;
        f.slot = s++;
        f.x = random_vector(static_cast<size_t>(n * c.hidden), 210 + static_cast<uint32_t>(s));
        f.mask = mask;
        feeds.push_back(f);
      }
      std::vector<float> x;
      for (const SeqFeed& f : feeds) x.insert(x.end(), f.x.begin(), f.x.end());
      BlockSetup setup = model.setup(host.abi());
      setup.capacity = 80;
      BlockRunner cached(attention_vtable("gqa"), setup, model.params());
      TrainBlock cache_free(attention_vtable("gqa"), setup, model.params());
      ASSERT_TRUE(cached.ok() && cache_free.ok());
      std::vector<float> y_cached, y_free, y_train;
      ASSERT_EQ(cached.forward(feeds, y_cached), TS_OK);
      std::string error;
      ASSERT_EQ(cache_free.forward_cache_free(batch, x, y_free, &error), TS_OK) << error;
      EXPECT_TRUE(same_bits(y_free, y_cached)) << describe(c);
      // forward_train computes the same attention one query at a time.
      ASSERT_EQ(cache_free.forward_train(batch, x, TS_RECOMPUTE_NONE, y_train, &error), TS_OK)
          << error;
      EXPECT_LE(max_abs_diff(y_train, y_cached), 1e-5f * std::max(1.0f, max_abs(y_cached)))
          << describe(c);
    }
  }
}

// Runs one step and returns everything, for the policies/threads/accumulation checks below.
StepResult gqa_step(const GqaTrainModel& model, const ts_host* host, int32_t policy,
                    TrainBatch& batch, const std::vector<float>& x, const std::vector<float>& dy) {
  TrainBlock block(attention_vtable("gqa"), model.setup(host), model.params());
  EXPECT_TRUE(block.ok()) << block.create_error();
  TestGrads grads;
  model.add_grads(grads);
  return train_step(block, batch, x, dy, grads, policy);
}

TEST(CpuBackwardGqa, DeterministicAndIndependentOfTheThreadCount) {
  TwoThreadHost two;
  GqaTrainModel model({48, 6, 2, 8}, 300);
  TrainBatch batch;
  batch.add(20, 0).add(67, 2);
  const auto x = random_vector(static_cast<size_t>(batch.tokens() * 48), 301);
  const auto dy = random_vector(static_cast<size_t>(batch.tokens() * 48), 302);
  for (int32_t policy : kPolicies) {
    const StepResult a = gqa_step(model, two.abi(), policy, batch, x, dy);
    const StepResult b = gqa_step(model, two.abi(), policy, batch, x, dy);
    const StepResult one = gqa_step(model, nullptr, policy, batch, x, dy);
    expect_same_step(a, b, "two runs");
    expect_same_step(a, one, "two threads against one");
  }
}

TEST(CpuBackwardGqa, GradientsAccumulateFrozenWeightsAndNoInputGradient) {
  TwoThreadHost host;
  GqaTrainModel model({32, 4, 2, 8}, 400);
  TrainBatch batch;
  batch.add(12, 0).add(5, 4);
  const auto x = random_vector(static_cast<size_t>(batch.tokens() * 32), 401);
  const auto dy = random_vector(static_cast<size_t>(batch.tokens() * 32), 402);
  TrainBlock block(attention_vtable("gqa"), model.setup(host.abi()), model.params());
  ASSERT_TRUE(block.ok());
  TestGrads grads;
  model.add_grads(grads);
  const StepResult once = train_step(block, batch, x, dy, grads, TS_RECOMPUTE_CORE);

  // Two backward calls add twice the gradient: exactly, since each adds its sum once.
  std::vector<float> y, dx;
  std::string error;
  grads.zero();
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(block.forward_train(batch, x, TS_RECOMPUTE_CORE, y, &error), TS_OK) << error;
    ASSERT_EQ(block.backward(batch, x, dy, &dx, grads.abi(), TS_RECOMPUTE_CORE, &error), TS_OK)
        << error;
  }
  for (const auto& [name, g] : once.grads) {
    std::vector<float> twice = g;
    for (float& v : twice) v *= 2.0f;
    EXPECT_TRUE(same_bits(grads[name], twice)) << name;
  }

  // Frozen weights (NULL buffers): the others and dx are unchanged.
  for (const char* frozen : {"k_proj.weight", "o_proj.weight", "q_proj.weight"}) {
    TestGrads partial;
    model.add_grads(partial);
    partial.freeze(frozen);
    const StepResult got = train_step(block, batch, x, dy, partial, TS_RECOMPUTE_NONE);
    EXPECT_TRUE(same_bits(got.dx, once.dx)) << frozen;
    for (const auto& [name, g] : got.grads) {
      if (name == frozen)
        EXPECT_EQ(max_abs(g), 0.0f) << name << " is frozen and must not be written";
      else
        EXPECT_TRUE(same_bits(g, once.grads.at(name))) << name << " with " << frozen << " frozen";
    }
  }

  // All frozen and no grad_x: nothing to do, and still fine.
  TestGrads none;
  model.add_grads(none);
  for (const std::string& name : none.names()) none.freeze(name);
  const StepResult idle = train_step(block, batch, x, dy, none, TS_RECOMPUTE_ALL, false);
  for (const auto& [name, g] : idle.grads) EXPECT_EQ(max_abs(g), 0.0f) << name;

  // grad_x NULL: the weight gradients are the same.
  const StepResult no_dx = train_step(block, batch, x, dy, grads, TS_RECOMPUTE_ALL, false);
  for (const auto& [name, g] : no_dx.grads) EXPECT_TRUE(same_bits(g, once.grads.at(name))) << name;
}

TEST(CpuBackwardGqa, WorkspaceBytesPerPolicy) {
  // SmolLM2-135M's attention (hidden 576, 9 heads of 64, 3 KV heads) at 512 tokens:
  //   none: q, k, v, o (f32) and a max and a sum per (token, head);  core: q, k, v;  all: 0.
  GqaTrainModel model({576, 9, 3, 64}, 500);
  TrainBlock block(attention_vtable("gqa"), model.setup(nullptr), model.params());
  ASSERT_TRUE(block.ok());
  TrainBatch batch;
  batch.add(512);
  const ts_batch& b = batch.abi();
  uint64_t none = 0, core = 0, all = 1;
  ASSERT_EQ(block.workspace_bytes(b, TS_RECOMPUTE_NONE, none), TS_OK);
  ASSERT_EQ(block.workspace_bytes(b, TS_RECOMPUTE_CORE, core), TS_OK);
  ASSERT_EQ(block.workspace_bytes(b, TS_RECOMPUTE_ALL, all), TS_OK);
  EXPECT_EQ(core, 512u * (576 + 2 * 192) * 4);
  EXPECT_EQ(none, core + 512u * 576 * 4 + 512u * 9 * 8);
  EXPECT_EQ(all, 0u);
  std::printf(
      "[ measured ] gqa SmolLM2 shape, 512 tokens: workspace none %llu, core %llu, all "
      "%llu bytes\n",
      static_cast<unsigned long long>(none), static_cast<unsigned long long>(core),
      static_cast<unsigned long long>(all));
}

// ------------------------------------------------------------- FFN, linear

struct DenseModel {
  DenseModel(int32_t hidden_, int32_t inter_, uint32_t seed) : hidden(hidden_), inter(inter_) {
    gate =
        random_vector(static_cast<size_t>(inter * hidden), seed, 1.0f / std::sqrt(float(hidden)));
    up = random_vector(static_cast<size_t>(inter * hidden), seed + 1,
                       1.0f / std::sqrt(float(hidden)));
    down = random_vector(static_cast<size_t>(hidden * inter), seed + 2,
                         1.0f / std::sqrt(float(inter)));
    linear = random_vector(static_cast<size_t>(hidden * hidden), seed + 3,
                           1.0f / std::sqrt(float(hidden)));
    weights.add("gate_proj.weight", {inter, hidden}, gate);
    weights.add("up_proj.weight", {inter, hidden}, up);
    weights.add("down_proj.weight", {hidden, inter}, down);
    weights.add("linear_mlp.weight", {hidden, hidden}, linear);
    weights.add("linear_attn.weight", {hidden, hidden}, linear);
  }
  ParamList params() const {
    ParamList p;
    p.set_int("hidden_size", hidden).set_int("num_heads", 4).set_int("intermediate_size", inter);
    return p;
  }
  BlockSetup setup(int32_t kind, const ts_host* host, const ts_comm* comm = nullptr) const {
    BlockSetup s;
    s.kind = kind;
    s.layer = 5;
    s.hidden = hidden;
    s.weights = weights.abi();
    s.host = host;
    s.comm = comm;
    return s;
  }
  void add_swiglu_grads(TestGrads& g) const {
    g.add("gate_proj.weight", {inter, hidden});
    g.add("up_proj.weight", {inter, hidden});
    g.add("down_proj.weight", {hidden, inter});
  }
  // y, dx and gradients of the f64 references.
  std::map<std::string, std::vector<double>> swiglu_reference(const std::vector<float>& x,
                                                              const std::vector<float>& dy) const {
    const int64_t n = static_cast<int64_t>(x.size()) / hidden;
    const auto xd = to_double(x), dyd = to_double(dy), g = to_double(gate), u = to_double(up),
               d = to_double(down);
    std::map<std::string, std::vector<double>> r;
    r["y"].resize(x.size());
    r["dx"].resize(x.size());
    r["gate_proj.weight"].resize(gate.size());
    r["up_proj.weight"].resize(up.size());
    r["down_proj.weight"].resize(down.size());
    ref::swiglu_f64(xd.data(), g.data(), u.data(), d.data(), n, hidden, inter, r["y"].data());
    ref::swiglu_backward(xd.data(), g.data(), u.data(), d.data(), dyd.data(), n, hidden, inter,
                         {r["dx"].data(), r["gate_proj.weight"].data(), r["up_proj.weight"].data(),
                          r["down_proj.weight"].data()});
    return r;
  }
  std::map<std::string, std::vector<double>> linear_reference(const std::vector<float>& x,
                                                              const std::vector<float>& dy,
                                                              const std::string& weight) const {
    const int64_t n = static_cast<int64_t>(x.size()) / hidden;
    const auto xd = to_double(x), dyd = to_double(dy), w = to_double(linear);
    std::map<std::string, std::vector<double>> r;
    r["y"].resize(x.size());
    r["dx"].resize(x.size());
    r[weight].resize(linear.size());
    ref::linear_f64(xd.data(), w.data(), n, hidden, hidden, r["y"].data());
    ref::linear_backward(xd.data(), w.data(), dyd.data(), n, hidden, hidden, r["dx"].data(),
                         r[weight].data());
    return r;
  }
  int32_t hidden, inter;
  std::vector<float> gate, up, down, linear;
  TestWeights weights;
};

TEST(CpuBackwardFfn, SwigluMatchesReferenceForWidthsAndPolicies) {
  TwoThreadHost host;
  Worst worst;
  for (const auto& [hidden, inter] :
       std::vector<std::pair<int32_t, int32_t>>{{32, 1}, {32, 40}, {40, 100}, {64, 172}}) {
    DenseModel model(hidden, inter, 600);
    TrainBlock block(ffn_vtable("swiglu"), model.setup(TS_KIND_FFN, host.abi()), model.params());
    ASSERT_TRUE(block.ok()) << block.create_error();
    TestGrads grads;
    model.add_swiglu_grads(grads);
    TrainBatch batch;
    batch.add(9).add(30, 4).add(1);
    const auto x = random_vector(static_cast<size_t>(batch.tokens() * hidden), 601);
    const auto dy = random_vector(static_cast<size_t>(batch.tokens() * hidden), 602);
    const auto want = model.swiglu_reference(x, dy);
    StepResult first;
    for (int32_t policy : kPolicies) {
      const std::string what =
          "swiglu width " + std::to_string(inter) + " policy " + std::to_string(policy);
      const StepResult got = train_step(block, batch, x, dy, grads, policy);
      EXPECT_LE(relative_error(got.y, want.at("y")), kGradTolerance) << what;
      EXPECT_LE(relative_error(got.dx, want.at("dx")), kGradTolerance) << what;
      worst.note("dx", relative_error(got.dx, want.at("dx")));
      for (const auto& [name, g] : got.grads) {
        EXPECT_LE(relative_error(g, want.at(name)), kGradTolerance) << what << " " << name;
        worst.note(name, relative_error(g, want.at(name)));
      }
      if (policy == TS_RECOMPUTE_NONE)
        first = got;
      else
        expect_same_step(got, first, what);
    }
    // One thread gives the same bits as two.
    TrainBlock single(ffn_vtable("swiglu"), model.setup(TS_KIND_FFN, nullptr), model.params());
    expect_same_step(train_step(single, batch, x, dy, grads, TS_RECOMPUTE_ALL), first,
                     "swiglu one thread");
  }
  worst.print("swiglu");

  // SmolLM2's MLP (hidden 576, intermediate 1536) at 512 tokens: g and u, or nothing.
  DenseModel smol(576, 1536, 610);
  TrainBlock block(ffn_vtable("swiglu"), smol.setup(TS_KIND_FFN, nullptr), smol.params());
  TrainBatch batch;
  batch.add(512);
  uint64_t none = 0, core = 0, all = 1;
  ASSERT_EQ(block.workspace_bytes(batch.abi(), TS_RECOMPUTE_NONE, none), TS_OK);
  ASSERT_EQ(block.workspace_bytes(batch.abi(), TS_RECOMPUTE_CORE, core), TS_OK);
  ASSERT_EQ(block.workspace_bytes(batch.abi(), TS_RECOMPUTE_ALL, all), TS_OK);
  EXPECT_EQ(none, 2u * 512 * 1536 * 4);
  EXPECT_EQ(core, none);
  EXPECT_EQ(all, 0u);
  std::printf(
      "[ measured ] swiglu SmolLM2 shape, 512 tokens: workspace none %llu, core %llu, "
      "all %llu bytes\n",
      static_cast<unsigned long long>(none), static_cast<unsigned long long>(core),
      static_cast<unsigned long long>(all));
}

TEST(CpuBackwardFfn, SwigluAccumulatesAndSkipsFrozenWeights) {
  DenseModel model(32, 48, 620);
  TwoThreadHost host;
  TrainBlock block(ffn_vtable("swiglu"), model.setup(TS_KIND_FFN, host.abi()), model.params());
  TestGrads grads;
  model.add_swiglu_grads(grads);
  TrainBatch batch;
  batch.add(11);
  const auto x = random_vector(static_cast<size_t>(11 * 32), 621);
  const auto dy = random_vector(static_cast<size_t>(11 * 32), 622);
  const StepResult once = train_step(block, batch, x, dy, grads, TS_RECOMPUTE_NONE);
  std::vector<float> y, dx;
  grads.zero();
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(block.forward_train(batch, x, TS_RECOMPUTE_NONE, y), TS_OK);
    ASSERT_EQ(block.backward(batch, x, dy, &dx, grads.abi(), TS_RECOMPUTE_NONE), TS_OK);
  }
  for (const auto& [name, g] : once.grads) {
    std::vector<float> twice = g;
    for (float& v : twice) v *= 2.0f;
    EXPECT_TRUE(same_bits(grads[name], twice)) << name;
  }
  for (const char* frozen : {"gate_proj.weight", "down_proj.weight"}) {
    TestGrads partial;
    model.add_swiglu_grads(partial);
    partial.freeze(frozen);
    const StepResult got = train_step(block, batch, x, dy, partial, TS_RECOMPUTE_ALL, false);
    for (const auto& [name, g] : got.grads) {
      if (name != frozen) {
        EXPECT_TRUE(same_bits(g, once.grads.at(name))) << name;
      }
    }
  }
}

TEST(CpuBackwardLinear, LinearBlocksMatchReferenceAndAccumulate) {
  TwoThreadHost host;
  Worst worst;
  DenseModel model(40, 8, 700);
  for (const auto& [vt, kind, weight] :
       {std::tuple{ffn_vtable("linear"), TS_KIND_FFN, "linear_mlp.weight"},
        std::tuple{attention_vtable("linear"), TS_KIND_ATTENTION, "linear_attn.weight"}}) {
    TrainBlock block(vt, model.setup(kind, host.abi()), model.params());
    ASSERT_TRUE(block.ok()) << block.create_error();
    TestGrads grads;
    grads.add(weight, {40, 40});
    TrainBatch batch;
    batch.add(13).add(2, 7);
    const auto x = random_vector(static_cast<size_t>(batch.tokens() * 40), 701);
    const auto dy = random_vector(static_cast<size_t>(batch.tokens() * 40), 702);
    const auto want = model.linear_reference(x, dy, weight);
    StepResult first;
    for (int32_t policy : kPolicies) {
      uint64_t bytes = 1;
      ASSERT_EQ(block.workspace_bytes(batch.abi(), policy, bytes), TS_OK);
      EXPECT_EQ(bytes, 0u) << "a linear block keeps nothing: backward reads x";
      const StepResult got = train_step(block, batch, x, dy, grads, policy);
      EXPECT_LE(relative_error(got.y, want.at("y")), kGradTolerance) << weight;
      EXPECT_LE(relative_error(got.dx, want.at("dx")), kGradTolerance) << weight;
      EXPECT_LE(relative_error(got.grads.at(weight), want.at(weight)), kGradTolerance) << weight;
      worst.note("dx", relative_error(got.dx, want.at("dx")));
      worst.note("weight", relative_error(got.grads.at(weight), want.at(weight)));
      if (policy == TS_RECOMPUTE_NONE)
        first = got;
      else
        expect_same_step(got, first, weight);
    }
    std::vector<float> y, dx;
    grads.zero();
    for (int i = 0; i < 2; ++i) {
      ASSERT_EQ(block.forward_train(batch, x, TS_RECOMPUTE_NONE, y), TS_OK);
      ASSERT_EQ(block.backward(batch, x, dy, &dx, grads.abi(), TS_RECOMPUTE_NONE), TS_OK);
    }
    std::vector<float> twice = first.grads.at(weight);
    for (float& v : twice) v *= 2.0f;
    EXPECT_TRUE(same_bits(grads[weight], twice)) << weight;
    grads.freeze(weight);
    EXPECT_TRUE(same_bits(train_step(block, batch, x, dy, grads, TS_RECOMPUTE_ALL).dx, first.dx));
  }
  worst.print("linear");
}

TEST(CpuBackwardNoop, NoopBlocksWriteZeroGradientsAndKeepNothing) {
  DenseModel model(16, 8, 800);
  for (const auto& [vt, kind] : {std::pair{ffn_vtable("noop"), TS_KIND_FFN},
                                 std::pair{attention_vtable("noop"), TS_KIND_ATTENTION}}) {
    TrainBlock block(vt, model.setup(kind, nullptr), model.params());
    ASSERT_TRUE(block.ok());
    TestGrads grads;  // no weights: the block asks for none
    TrainBatch batch;
    batch.add(3).add(2);
    const auto x = random_vector(5 * 16, 801);
    const auto dy = random_vector(5 * 16, 802);
    for (int32_t policy : kPolicies) {
      uint64_t bytes = 1;
      ASSERT_EQ(block.workspace_bytes(batch.abi(), policy, bytes), TS_OK);
      EXPECT_EQ(bytes, 0u);
      const StepResult got = train_step(block, batch, x, dy, grads, policy);
      EXPECT_EQ(max_abs(got.y), 0.0f);
      ASSERT_EQ(got.dx.size(), x.size());
      EXPECT_EQ(max_abs(got.dx), 0.0f);
    }
  }
}

// ---------------------------------------------------------------- sharded

// Runs `world` ranks on threads; body(rank) returns that rank's step.
template <class Body>
std::vector<StepResult> run_ranks(int32_t world, Body&& body) {
  std::vector<StepResult> out(static_cast<size_t>(world));
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int32_t r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        out[static_cast<size_t>(r)] = body(r);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  return out;
}

// Each rank holds the whole gradient of the part it reads (rows [r0, r1) and columns
// [c0, c1) of a [rows, cols] weight) and zeros elsewhere.
void expect_shard(const std::vector<float>& got, const std::vector<float>& full, int64_t cols,
                  int64_t r0, int64_t r1, int64_t c0, int64_t c1, const std::string& what) {
  ASSERT_EQ(got.size(), full.size()) << what;
  const float bound = 2e-5f * std::max(1.0f, max_abs(full));
  for (size_t i = 0; i < got.size(); ++i) {
    const auto r = static_cast<int64_t>(i) / cols, c = static_cast<int64_t>(i) % cols;
    const bool mine = r >= r0 && r < r1 && c >= c0 && c < c1;
    if (mine) {
      ASSERT_NEAR(got[i], full[i], bound) << what << " element " << i;
    } else {
      ASSERT_EQ(got[i], 0.0f) << what << " element " << i << " is another rank's";
    }
  }
}

int64_t share(int64_t total, int32_t rank, int32_t world) {
  return total * rank / world;
}

TEST(CpuBackwardSharded, ShardedGqaGradientsEqualUnsharded) {
  struct Case {
    GqaTrainConfig config;
    int32_t world;
  };
  for (const Case& c :
       {Case{{32, 4, 2, 8}, 2}, Case{{32, 4, 1, 8}, 2}, Case{{48, 6, 3, 8, true}, 3},
        Case{{32, 8, 2, 4}, 4}, Case{{32, 4, 1, 8}, 4}}) {
    GqaTrainModel model(c.config, 900);
    TrainBatch batch;
    batch.add(10, 0).add(4, 6);
    const auto x = random_vector(static_cast<size_t>(batch.tokens() * c.config.hidden), 901);
    const auto dy = random_vector(static_cast<size_t>(batch.tokens() * c.config.hidden), 902);
    const StepResult full = gqa_step(model, nullptr, TS_RECOMPUTE_NONE, batch, x, dy);
    for (int32_t policy : kPolicies) {
      static int groups = 0;
      const std::string group = "gqa-backward-" + std::to_string(groups++);
      const std::vector<StepResult> ranks = run_ranks(c.world, [&](int32_t rank) {
        LocalComm comm(group, c.world, rank);
        TrainBlock block(attention_vtable("gqa"), model.setup(nullptr, comm.abi()), model.params());
        if (!block.ok()) throw std::runtime_error(block.create_error());
        TestGrads grads;
        model.add_grads(grads);
        TrainBatch local = batch;
        return train_step(block, local, x, dy, grads, policy);
      });
      const int64_t hd = c.config.head_dim, hidden = c.config.hidden;
      const int64_t heads = c.config.heads, kv = c.config.kv_heads;
      for (int32_t r = 0; r < c.world; ++r) {
        const std::string what = describe(c.config) + " world " + std::to_string(c.world) +
                                 " rank " + std::to_string(r) + " policy " + std::to_string(policy);
        const StepResult& got = ranks[static_cast<size_t>(r)];
        EXPECT_LE(max_abs_diff(got.y, full.y), 2e-5f * std::max(1.0f, max_abs(full.y))) << what;
        EXPECT_LE(max_abs_diff(got.dx, full.dx), 2e-5f * std::max(1.0f, max_abs(full.dx))) << what;
        const int64_t h0 = share(heads, r, c.world), h1 = share(heads, r + 1, c.world);
        const int64_t k0 = kv >= c.world ? share(kv, r, c.world) : h0 / (heads / kv);
        const int64_t k1 = kv >= c.world ? share(kv, r + 1, c.world) : k0 + 1;
        expect_shard(got.grads.at("q_proj.weight"), full.grads.at("q_proj.weight"), hidden, h0 * hd,
                     h1 * hd, 0, hidden, what + " q_proj");
        expect_shard(got.grads.at("k_proj.weight"), full.grads.at("k_proj.weight"), hidden, k0 * hd,
                     k1 * hd, 0, hidden, what + " k_proj");
        expect_shard(got.grads.at("v_proj.weight"), full.grads.at("v_proj.weight"), hidden, k0 * hd,
                     k1 * hd, 0, hidden, what + " v_proj");
        expect_shard(got.grads.at("o_proj.weight"), full.grads.at("o_proj.weight"), heads * hd, 0,
                     hidden, h0 * hd, h1 * hd, what + " o_proj");
      }
    }
  }
}

TEST(CpuBackwardSharded, ShardedSwigluAndLinearGradientsEqualUnsharded) {
  DenseModel model(48, 40, 950);  // 40 does not divide by 3
  TrainBatch batch;
  batch.add(7).add(3, 2);
  const auto x = random_vector(static_cast<size_t>(batch.tokens() * 48), 951);
  const auto dy = random_vector(static_cast<size_t>(batch.tokens() * 48), 952);
  struct Kind {
    const ts_block_vtable* vt;
    int32_t kind;
    std::string name;
  };
  for (const Kind& k :
       {Kind{ffn_vtable("swiglu"), TS_KIND_FFN, "swiglu"},
        Kind{ffn_vtable("linear"), TS_KIND_FFN, "linear_mlp.weight"},
        Kind{attention_vtable("linear"), TS_KIND_ATTENTION, "linear_attn.weight"}}) {
    auto make_grads = [&](TestGrads& g) {
      if (k.name == "swiglu")
        model.add_swiglu_grads(g);
      else
        g.add(k.name, {48, 48});
    };
    TrainBlock single(k.vt, model.setup(k.kind, nullptr), model.params());
    TestGrads grads;
    make_grads(grads);
    TrainBatch b = batch;
    const StepResult full = train_step(single, b, x, dy, grads, TS_RECOMPUTE_NONE);
    constexpr int32_t world = 3;
    const std::vector<StepResult> ranks = run_ranks(world, [&](int32_t rank) {
      LocalComm comm("dense-backward-" + k.name, world, rank);
      TrainBlock block(k.vt, model.setup(k.kind, nullptr, comm.abi()), model.params());
      if (!block.ok()) throw std::runtime_error(block.create_error());
      TestGrads g;
      make_grads(g);
      TrainBatch local = batch;
      return train_step(block, local, x, dy, g, TS_RECOMPUTE_CORE);
    });
    for (int32_t r = 0; r < world; ++r) {
      const std::string what = k.name + " rank " + std::to_string(r);
      const StepResult& got = ranks[static_cast<size_t>(r)];
      EXPECT_LE(max_abs_diff(got.dx, full.dx), 2e-5f * std::max(1.0f, max_abs(full.dx))) << what;
      if (k.name == "swiglu") {
        const int64_t i0 = share(40, r, world), i1 = share(40, r + 1, world);
        expect_shard(got.grads.at("gate_proj.weight"), full.grads.at("gate_proj.weight"), 48, i0,
                     i1, 0, 48, what + " gate");
        expect_shard(got.grads.at("up_proj.weight"), full.grads.at("up_proj.weight"), 48, i0, i1, 0,
                     48, what + " up");
        expect_shard(got.grads.at("down_proj.weight"), full.grads.at("down_proj.weight"), 40, 0, 48,
                     i0, i1, what + " down");
      } else {
        expect_shard(got.grads.at(k.name), full.grads.at(k.name), 48, 0, 48, share(48, r, world),
                     share(48, r + 1, world), what);
      }
    }
  }
}

// ----------------------------------------------------------------- errors

TEST(CpuBackwardErrors, BadCallsAreRefusedWithTheFacts) {
  GqaTrainModel model({32, 4, 2, 8}, 1000);
  TrainBlock block(attention_vtable("gqa"), model.setup(nullptr), model.params());
  ASSERT_TRUE(block.ok());
  TestGrads grads;
  model.add_grads(grads);
  TrainBatch batch;
  batch.add(4);
  const ts_batch& b = batch.abi();
  const auto x = random_vector(4 * 32, 1001);
  const auto dy = random_vector(4 * 32, 1002);
  std::vector<float> y(4 * 32), dx(4 * 32);
  std::string error;
  const ts_tensor xt = f32_matrix(x.data(), 4, 32), dyt = f32_matrix(dy.data(), 4, 32);
  ts_tensor yt = f32_matrix(y.data(), 4, 32), dxt = f32_matrix(dx.data(), 4, 32);

  // An unknown policy, in every entry.
  uint64_t bytes = 0;
  EXPECT_EQ(block.workspace_bytes(b, 3, bytes, &error), TS_ERROR);
  EXPECT_HAS(error, "recompute policy 3 is not one of 0 (none), 1 (core), 2 (all)");
  EXPECT_EQ(block.forward_train(batch, x, -1, y, &error), TS_ERROR);
  EXPECT_HAS(error, "recompute policy -1");

  // forward_train with a cache.
  ts_kv_layer kv{};
  ts_block_io io{sizeof(ts_block_io), &xt, &yt, &b, &kv};
  EXPECT_EQ(block.forward_train_io(io, TS_RECOMPUTE_NONE, nullptr, &error), TS_ERROR);
  EXPECT_HAS(error, "io->kv must be NULL");
  // No workspace where one is needed.
  io.kv = nullptr;
  EXPECT_EQ(block.forward_train_io(io, TS_RECOMPUTE_NONE, nullptr, &error), TS_ERROR);
  EXPECT_HAS(error, "the workspace is NULL but this batch and policy need");
  // No workspace needed with recompute all.
  EXPECT_EQ(block.forward_train_io(io, TS_RECOMPUTE_ALL, nullptr, &error), TS_OK) << error;

  ts_backward_io bio{};
  bio.struct_size = sizeof(ts_backward_io);
  bio.x = &xt;
  bio.grad_y = &dyt;
  bio.grad_x = &dxt;
  bio.batch = &b;
  bio.recompute = TS_RECOMPUTE_ALL;
  bio.grads = grads.abi();
  EXPECT_EQ(block.backward_io(bio, &error), TS_OK) << error;
  bio.recompute = 7;
  EXPECT_EQ(block.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "recompute policy 7");
  bio.recompute = TS_RECOMPUTE_CORE;
  EXPECT_EQ(block.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "the workspace is NULL");
  bio.recompute = TS_RECOMPUTE_ALL;
  // Missing or misshapen gradients and tensors.
  bio.grads = nullptr;
  EXPECT_EQ(block.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "no gradient buffers were given for 'q_proj.weight'");
  TestGrads wrong;
  model.add_grads(wrong);
  wrong.add("k_proj.weight", {3, 32});
  bio.grads = wrong.abi();
  EXPECT_EQ(block.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "layer 2 attention gqa: gradient of 'k_proj.weight' is f32 [3, 32]");
  TestGrads missing;
  missing.add("q_proj.weight", {32, 32});
  bio.grads = missing.abi();
  EXPECT_EQ(block.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "no gradient buffer named 'k_proj.weight'");
  bio.grads = grads.abi();
  bio.grad_y = nullptr;
  EXPECT_EQ(block.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "tensor grad_y is missing");
  bio.grad_y = &dyt;
  ts_tensor short_dx = f32_matrix(dx.data(), 3, 32);
  bio.grad_x = &short_dx;
  EXPECT_EQ(block.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "tensor grad_x has shape [3, 32], expected [4, 32]");
  bio.grad_x = &dxt;
  bio.batch = nullptr;
  EXPECT_EQ(block.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "no batch was given");
  bio.batch = &b;

  // A cache-free forward checks positions as the cached one does.
  TrainBatch negative;
  negative.add(4, -2);
  EXPECT_EQ(block.forward_cache_free(negative, x, y, &error), TS_ERROR);
  EXPECT_HAS(error, "token 0 has negative position -2");
  EXPECT_EQ(block.forward_train(negative, x, TS_RECOMPUTE_ALL, y, &error), TS_ERROR);
  EXPECT_HAS(error, "negative position");
  ts_batch no_positions = b;
  no_positions.positions = nullptr;
  const ts_block_io free_io{sizeof(ts_block_io), &xt, &yt, &no_positions, nullptr};
  EXPECT_EQ(block.forward_train_io(free_io, TS_RECOMPUTE_ALL, nullptr, &error), TS_ERROR);
  EXPECT_HAS(error, "batch has no positions");

  // A batch that does not add up, in train_workspace.
  ts_batch bad = b;
  bad.n_tokens = 5;
  EXPECT_EQ(block.workspace_bytes(bad, TS_RECOMPUTE_NONE, bytes, &error), TS_ERROR);
  EXPECT_HAS(error, "batch offsets end at 4, expected 5 tokens");

  // The dense blocks check the same things.
  DenseModel dense(32, 16, 1010);
  TrainBlock swiglu(ffn_vtable("swiglu"), dense.setup(TS_KIND_FFN, nullptr), dense.params());
  TrainBlock linear(ffn_vtable("linear"), dense.setup(TS_KIND_FFN, nullptr), dense.params());
  TrainBlock noop(ffn_vtable("noop"), dense.setup(TS_KIND_FFN, nullptr), dense.params());
  TestGrads ffn_grads;
  dense.add_swiglu_grads(ffn_grads);
  bio.grads = ffn_grads.abi();
  bio.recompute = TS_RECOMPUTE_NONE;
  EXPECT_EQ(swiglu.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "layer 5 ffn swiglu: the workspace is NULL but this batch and policy need " +
                        std::to_string(2 * 4 * 16 * 4) + " bytes");
  bio.recompute = TS_RECOMPUTE_ALL;
  EXPECT_EQ(linear.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "layer 5 ffn linear: no gradient buffer named 'linear_mlp.weight'");
  bio.grad_y = nullptr;
  EXPECT_EQ(noop.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "layer 5 ffn noop: tensor grad_y is missing");
  bio.grad_y = &dyt;
  bio.recompute = 9;
  EXPECT_EQ(noop.backward_io(bio, &error), TS_ERROR);
  EXPECT_HAS(error, "recompute policy 9");
}

}  // namespace
