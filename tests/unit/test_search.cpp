// The exact search plugin on "puzzle.block_selection": optimum against brute force and an
// integer dynamic programme, infeasible budgets, and error messages naming JSON paths.
#include <gtest/gtest.h>
#include <tessera/abi.h>
#include <tessera/engine/error.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/search.hpp>

#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS
#endif
#include <algorithm>
#include <boost/dll/import.hpp>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using nlohmann::json;

const ts_plugin_descriptor* search_plugin() {
  static auto entry = boost::dll::import <const ts_plugin_descriptor*()>(
      std::filesystem::path(TESSERA_PLUGIN_DIR "/libtessera-search-exact.so"), "tessera_plugin");
  return entry();
}

const ts_search_vtable& exact_vtable() {
  const ts_plugin_descriptor* plugin = search_plugin();
  for (int32_t i = 0; i < plugin->n_providers; ++i)
    if (plugin->providers[i].kind == TS_KIND_SEARCH &&
        std::string_view(plugin->providers[i].name) == "exact")
      return *static_cast<const ts_search_vtable*>(plugin->providers[i].vtable);
  throw std::runtime_error("search-exact has no provider 'exact'");
}

struct Outcome {
  int status = TS_OK;
  std::string error;
  json solution;
};

// Creates the solver with max_nodes (0 = default), solves, frees.
Outcome solve_text(const std::string& problem, int64_t max_nodes = 0) {
  const ts_search_vtable& v = exact_vtable();
  ts_param param{};
  param.key = "max_nodes";
  param.type = TS_PARAM_INT;
  param.i = max_nodes;
  const ts_params params{&param, max_nodes > 0 ? 1 : 0};
  void* self = nullptr;
  ts_error err{};
  Outcome out;
  if (v.create(&params, nullptr, &self, &err) != TS_OK)
    throw std::runtime_error(std::string("create failed: ") + err.message);
  char* text = nullptr;
  out.status = v.solve(self, problem.c_str(), &text, &err);
  if (out.status == TS_OK) {
    out.solution = json::parse(text);
    v.free_string(self, text);
  } else {
    out.error = err.message;
  }
  v.destroy(self);
  return out;
}

Outcome solve(const json& problem, int64_t max_nodes = 0) {
  return solve_text(problem.dump(), max_nodes);
}

// ----------------------------------------------------------- instances

struct Variant {
  std::string name;
  double score, memory, latency;
};
struct Layer {
  std::vector<Variant> attention, ffn;
};
struct Instance {
  std::vector<Layer> layers;
  std::optional<double> memory_budget, latency_budget;
};

json to_json(const Instance& inst) {
  json doc = {{"problem", "puzzle.block_selection"}, {"layers", json::array()}};
  const auto variants = [](const std::vector<Variant>& list) {
    json out = json::array();
    for (const Variant& v : list)
      out.push_back({{"name", v.name},
                     {"score", v.score},
                     {"memory_bytes", v.memory},
                     {"latency_s", v.latency}});
    return out;
  };
  for (const Layer& layer : inst.layers)
    doc["layers"].push_back(
        {{"attention", variants(layer.attention)}, {"ffn", variants(layer.ffn)}});
  if (inst.memory_budget || inst.latency_budget) {
    doc["budgets"] = json::object();
    if (inst.memory_budget) doc["budgets"]["memory_bytes"] = *inst.memory_budget;
    if (inst.latency_budget) doc["budgets"]["latency_s"] = *inst.latency_budget;
  }
  return doc;
}

Instance random_instance(std::mt19937& rng, int layers, int n_attention, int n_ffn, int max_cost) {
  std::uniform_real_distribution<double> score(0.0, 1.0);
  std::uniform_int_distribution<int> cost(0, max_cost);
  Instance inst;
  for (int l = 0; l < layers; ++l) {
    Layer layer;
    for (int a = 0; a < n_attention; ++a)
      layer.attention.push_back(
          {"attn" + std::to_string(a), score(rng), double(cost(rng)), double(cost(rng))});
    for (int f = 0; f < n_ffn; ++f)
      layer.ffn.push_back(
          {"ffn" + std::to_string(f), score(rng), double(cost(rng)), double(cost(rng))});
    inst.layers.push_back(layer);
  }
  return inst;
}

struct Best {
  bool feasible = false;
  double objective = std::numeric_limits<double>::infinity();
};

// Every combination, enumerated.
Best brute_force(const Instance& inst) {
  const size_t n = inst.layers.size();
  std::vector<size_t> pick(n, 0);  // index into attention x ffn of each layer
  Best best;
  while (true) {
    double score = 0, memory = 0, latency = 0;
    for (size_t l = 0; l < n; ++l) {
      const Layer& layer = inst.layers[l];
      const Variant& a = layer.attention[pick[l] / layer.ffn.size()];
      const Variant& f = layer.ffn[pick[l] % layer.ffn.size()];
      score += a.score + f.score;
      memory += a.memory + f.memory;
      latency += a.latency + f.latency;
    }
    const bool fits = (!inst.memory_budget || memory <= *inst.memory_budget) &&
                      (!inst.latency_budget || latency <= *inst.latency_budget);
    if (fits && score < best.objective) {
      best.feasible = true;
      best.objective = score;
    }
    size_t l = 0;
    for (; l < n; ++l) {
      if (++pick[l] < inst.layers[l].attention.size() * inst.layers[l].ffn.size()) break;
      pick[l] = 0;
    }
    if (l == n) return best;
  }
}

// Exact for integer costs: least score per (memory used, latency used), layer by layer.
Best integer_dp(const Instance& inst) {
  const int memory_cap = static_cast<int>(*inst.memory_budget);
  const int latency_cap = static_cast<int>(*inst.latency_budget);
  const double inf = std::numeric_limits<double>::infinity();
  const auto index = [&](int m, int t) { return static_cast<size_t>(m) * (latency_cap + 1) + t; };
  std::vector<double> table((memory_cap + 1) * static_cast<size_t>(latency_cap + 1), inf), next;
  table[index(0, 0)] = 0;
  for (const Layer& layer : inst.layers) {
    next.assign(table.size(), inf);
    for (int m = 0; m <= memory_cap; ++m)
      for (int t = 0; t <= latency_cap; ++t) {
        const double here = table[index(m, t)];
        if (here == inf) continue;
        for (const Variant& a : layer.attention)
          for (const Variant& f : layer.ffn) {
            const int m2 = m + static_cast<int>(a.memory + f.memory);
            const int t2 = t + static_cast<int>(a.latency + f.latency);
            if (m2 > memory_cap || t2 > latency_cap) continue;
            double& slot = next[index(m2, t2)];
            slot = std::min(slot, here + a.score + f.score);
          }
      }
    table.swap(next);
  }
  Best best;
  for (double v : table)
    if (v < best.objective) best = {true, v};
  return best;
}

// Checks a solution against the instance: names exist, totals and objective add up, the
// budgets hold, and the objective is `expected`.
void check_solution(const Instance& inst, const json& solution, const Best& expected,
                    const std::string& label) {
  ASSERT_EQ(solution.at("status"), expected.feasible ? "optimal" : "infeasible") << label;
  if (!expected.feasible) {
    EXPECT_FALSE(solution.at("reason").get<std::string>().empty()) << label;
    return;
  }
  const json& layers = solution.at("layers");
  ASSERT_EQ(layers.size(), inst.layers.size()) << label;
  double score = 0, memory = 0, latency = 0;
  for (size_t l = 0; l < inst.layers.size(); ++l) {
    const auto find = [&](const std::vector<Variant>& list, const std::string& name) {
      const auto it =
          std::find_if(list.begin(), list.end(), [&](const Variant& v) { return v.name == name; });
      if (it == list.end()) throw std::runtime_error(label + ": unknown variant " + name);
      return *it;
    };
    const Variant a = find(inst.layers[l].attention, layers[l].at("attention"));
    const Variant f = find(inst.layers[l].ffn, layers[l].at("ffn"));
    score += a.score + f.score;
    memory += a.memory + f.memory;
    latency += a.latency + f.latency;
  }
  EXPECT_NEAR(solution.at("objective").get<double>(), score, 1e-9) << label;
  EXPECT_NEAR(score, expected.objective, 1e-9) << label;
  EXPECT_NEAR(solution.at("totals").at("memory_bytes").get<double>(), memory, 1e-9) << label;
  EXPECT_NEAR(solution.at("totals").at("latency_s").get<double>(), latency, 1e-9) << label;
  if (inst.memory_budget) {
    EXPECT_LE(memory, *inst.memory_budget) << label;
  }
  if (inst.latency_budget) {
    EXPECT_LE(latency, *inst.latency_budget) << label;
  }
  EXPECT_LE(solution.at("lower_bound").get<double>(), score + 1e-9) << label;
}

// Sum of each layer's cheapest (or dearest) pair in one cost.
double extreme_total(const Instance& inst, bool memory, bool cheapest) {
  double total = 0;
  for (const Layer& layer : inst.layers) {
    double best = cheapest ? std::numeric_limits<double>::infinity() : 0;
    for (const Variant& a : layer.attention)
      for (const Variant& f : layer.ffn) {
        const double c = memory ? a.memory + f.memory : a.latency + f.latency;
        best = cheapest ? std::min(best, c) : std::max(best, c);
      }
    total += best;
  }
  return total;
}

// --------------------------------------------------------------- tests

TEST(SearchPlugin, DescribesTheExactSolver) {
  const ts_plugin_descriptor* plugin = search_plugin();
  EXPECT_EQ(plugin->abi_major, TS_ABI_MAJOR);
  EXPECT_STREQ(plugin->name, "tessera-search-exact");
  ASSERT_EQ(plugin->n_providers, 1);
  EXPECT_EQ(plugin->providers[0].kind, TS_KIND_SEARCH);
  EXPECT_STREQ(plugin->providers[0].name, "exact");
}

TEST(SearchExact, MatchesBruteForceOnRandomSmallInstances) {
  std::mt19937 rng(2024);
  int infeasible = 0;
  for (int trial = 0; trial < 240; ++trial) {
    Instance inst = random_instance(rng, 4, 3, 3, 50);
    const int mode = trial % 4;  // none, memory, latency, both
    std::uniform_real_distribution<double> where(-0.1, 1.0);
    const auto budget = [&](bool memory) {
      const double low = extreme_total(inst, memory, true),
                   high = extreme_total(inst, memory, false);
      return std::floor(low + where(rng) * (high - low));
    };
    if (mode == 1 || mode == 3) inst.memory_budget = budget(true);
    if (mode == 2 || mode == 3) inst.latency_budget = budget(false);
    const Best expected = brute_force(inst);
    infeasible += expected.feasible ? 0 : 1;
    const Outcome out = solve(to_json(inst));
    ASSERT_EQ(out.status, TS_OK) << out.error;
    check_solution(inst, out.solution, expected, "trial " + std::to_string(trial));
    if (HasFailure()) return;
  }
  EXPECT_GT(infeasible, 5);  // the infeasible path was exercised
}

TEST(SearchExact, MatchesBruteForceOnSixLayersWithRealValuedCosts) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 3; ++trial) {
    Instance inst = random_instance(rng, 6, 3, 3, 1000);
    std::uniform_real_distribution<double> jitter(0.0, 1.0);
    for (Layer& layer : inst.layers)
      for (auto* list : {&layer.attention, &layer.ffn})
        for (Variant& v : *list) v.latency = v.latency * 1e-3 + jitter(rng) * 1e-4;
    inst.memory_budget =
        std::floor(0.5 * (extreme_total(inst, true, true) + extreme_total(inst, true, false)));
    inst.latency_budget =
        0.6 * extreme_total(inst, false, true) + 0.4 * extreme_total(inst, false, false);
    const Outcome out = solve(to_json(inst));
    ASSERT_EQ(out.status, TS_OK) << out.error;
    check_solution(inst, out.solution, brute_force(inst), "trial " + std::to_string(trial));
  }
}

TEST(SearchExact, MatchesAnIntegerDynamicProgrammeOnLargerInstances) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 4; ++trial) {
    Instance inst = random_instance(rng, 16, 4, 4, 10);
    inst.memory_budget = std::floor(0.55 * extreme_total(inst, true, true) +
                                    0.45 * extreme_total(inst, true, false));
    inst.latency_budget = std::floor(0.7 * extreme_total(inst, false, true) +
                                     0.3 * extreme_total(inst, false, false));
    const Outcome out = solve(to_json(inst));
    ASSERT_EQ(out.status, TS_OK) << out.error;
    check_solution(inst, out.solution, integer_dp(inst), "trial " + std::to_string(trial));
  }
}

TEST(SearchExact, WithoutBudgetsPicksTheBestScoreOfEveryLayer) {
  const json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "layers": [
      {"attention": [{"name": "gqa", "score": 0}, {"name": "noop", "score": 0.5}],
       "ffn": [{"name": "swiglu", "score": 0}, {"name": "linear", "score": 0.2}]},
      {"attention": [{"name": "gqa", "score": 0.3}, {"name": "linear", "score": 0.1}],
       "ffn": [{"name": "swiglu", "score": 0.05}, {"name": "noop", "score": 0.01}]}
    ]})");
  const Outcome out = solve(problem);
  ASSERT_EQ(out.status, TS_OK) << out.error;
  EXPECT_EQ(out.solution["status"], "optimal");
  EXPECT_NEAR(out.solution["objective"].get<double>(), 0.11, 1e-12);
  EXPECT_EQ(out.solution["layers"][0], (json{{"attention", "gqa"}, {"ffn", "swiglu"}}));
  EXPECT_EQ(out.solution["layers"][1], (json{{"attention", "linear"}, {"ffn", "noop"}}));
  EXPECT_FALSE(out.solution["totals"].contains("memory_bytes"));  // no variant gave it
}

TEST(SearchExact, AcceptsRuntimeAsTheLatencyName) {
  const json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"runtime": 3},
    "layers": [
      {"attention": [{"name": "big", "score": 0, "runtime": 3}, {"name": "small", "score": 1, "runtime": 1}],
       "ffn": [{"name": "big", "score": 0, "runtime": 2}, {"name": "small", "score": 0.5, "runtime": 1}]}
    ]})");
  const Outcome out = solve(problem);
  ASSERT_EQ(out.status, TS_OK) << out.error;
  // Pairs within 3: big+? no (3+1=4); small+big = 1 (score 1), small+small = 1.5.
  EXPECT_EQ(out.solution["layers"][0], (json{{"attention", "small"}, {"ffn", "big"}}));
  EXPECT_NEAR(out.solution["totals"]["latency_s"].get<double>(), 3.0, 1e-12);
}

TEST(SearchExact, ReportsInfeasibleBudgets) {
  json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"memory_bytes": 10, "latency_s": 10},
    "layers": [
      {"attention": [{"name": "a", "score": 0, "memory_bytes": 8, "latency_s": 1},
                     {"name": "b", "score": 1, "memory_bytes": 1, "latency_s": 8}],
       "ffn": [{"name": "f", "score": 0, "memory_bytes": 1, "latency_s": 1}]},
      {"attention": [{"name": "a", "score": 0, "memory_bytes": 8, "latency_s": 1},
                     {"name": "b", "score": 1, "memory_bytes": 1, "latency_s": 8}],
       "ffn": [{"name": "f", "score": 0, "memory_bytes": 1, "latency_s": 1}]}
    ]})");
  // Each budget alone can be met, both together cannot.
  Outcome out = solve(problem);
  ASSERT_EQ(out.status, TS_OK) << out.error;
  EXPECT_EQ(out.solution["status"], "infeasible");
  EXPECT_EQ(out.solution["reason"],
            "no choice meets latency_s and memory_bytes together; each alone can be met: the "
            "least reachable latency_s is 4 (budget 10) and the least reachable memory_bytes is 4 "
            "(budget 10)");
  EXPECT_EQ(out.solution["proven"], true);
  // The cheapest choice already exceeds the memory budget.
  problem["budgets"] = {{"memory_bytes", 3}};
  out = solve(problem);
  ASSERT_EQ(out.status, TS_OK) << out.error;
  EXPECT_EQ(out.solution["status"], "infeasible");
  const std::string reason = out.solution["reason"];
  EXPECT_EQ(reason, "memory_bytes: the least reachable total is 4, over the budget of 3");
}

TEST(SearchExact, StopsAtTheNodeLimitWithAClearError) {
  std::mt19937 rng(1);
  Instance inst = random_instance(rng, 10, 3, 3, 20);
  inst.memory_budget =
      std::floor(0.5 * (extreme_total(inst, true, true) + extreme_total(inst, true, false)));
  const Outcome out = solve(to_json(inst), 3);
  EXPECT_EQ(out.status, TS_ERROR);
  EXPECT_NE(out.error.find("max_nodes"), std::string::npos) << out.error;
  EXPECT_NE(out.error.find("more than 3 nodes"), std::string::npos) << out.error;
}

void expect_problem_error(const std::string& problem,
                          std::initializer_list<std::string_view> fragments) {
  const Outcome out = solve_text(problem);
  ASSERT_EQ(out.status, TS_ERROR) << "expected an error for " << problem;
  for (std::string_view fragment : fragments)
    EXPECT_NE(out.error.find(fragment), std::string::npos)
        << "'" << fragment << "' not in: " << out.error;
}

std::string with_layers(const std::string& layers, const std::string& budgets = "") {
  return R"({"problem": "puzzle.block_selection", )" + (budgets.empty() ? "" : budgets + ", ") +
         R"("layers": )" + layers + "}";
}

TEST(SearchErrors, NameTheJsonPathOfTheFault) {
  const std::string good_variant =
      R"({"name": "x", "score": 0, "memory_bytes": 1, "latency_s": 1})";
  const std::string good_layer =
      R"({"attention": [)" + good_variant + R"(], "ffn": [)" + good_variant + "]}";
  const std::string bad_layer =
      R"({"attention": [)" + good_variant + R"(], "ffn": [)" + good_variant +
      R"(, {"name": "y", "score": 0, "memory_bytes": 1, "latency_s": 1}, {"name": "z", "score": 0, "memory_bytes": -5, "latency_s": 1}]})";
  expect_problem_error(
      with_layers("[" + good_layer + "," + good_layer + "," + good_layer + "," + bad_layer + "]"),
      {"layers[3].ffn[2].memory_bytes", "-5", ">= 0"});
  expect_problem_error(
      with_layers(R"([{"attention": [{"name": "a"}], "ffn": [{"name": "f", "score": 1}]}])"),
      {"layers[0].attention[0].score", "missing"});
  expect_problem_error(
      with_layers(R"([{"attention": [{"name": "a", "score": "low"}], "ffn": []}])"),
      {"layers[0].attention[0].score", "string", "number"});
  expect_problem_error(with_layers(R"([{"attention": [{"name": "a", "score": 1}], "ffn": []}])"),
                       {"layers[0].ffn", "empty"});
  expect_problem_error(with_layers(R"([{"attention": [{"name": "a", "score": 1}]}])"),
                       {"layers[0].ffn", "missing"});
  expect_problem_error(with_layers("[" + good_layer + "]", R"("budgets": {"memory": 5})"),
                       {"budgets.memory", "memory_bytes"});
  expect_problem_error(with_layers("[" + good_layer + "]", R"("budgets": {"latency_s": -1})"),
                       {"budgets.latency_s", "-1"});
  expect_problem_error(
      with_layers(
          R"([{"attention": [{"name": "a", "score": 0}], "ffn": [{"name": "f", "score": 0}]}])",
          R"("budgets": {"memory_bytes": 5})"),
      {"layers[0].attention[0].memory_bytes", "missing", "budgets.memory_bytes"});
  expect_problem_error(
      with_layers(
          R"([{"attention": [{"name": "a", "score": 0}, {"name": "a", "score": 1}], "ffn": [{"name": "f", "score": 0}]}])"),
      {"layers[0].attention[1].name", "'a'", "layers[0].attention[0]"});
  expect_problem_error(
      with_layers(
          R"([{"attention": [{"name": "a", "score": 0, "latency_s": 1, "runtime": 1}], "ffn": [{"name": "f", "score": 0}]}])"),
      {"layers[0].attention[0]", "latency_s and runtime"});
  expect_problem_error(with_layers("[]"), {"layers", "non-empty"});
  expect_problem_error(R"({"problem": "puzzle.block_selection", "layer": []})",
                       {"layer", "not a known field"});
}

TEST(SearchErrors, RejectsMalformedDocumentsAndUnknownProblemTypes) {
  expect_problem_error("{\"problem\": ", {"not valid JSON"});
  expect_problem_error("[1, 2]", {"array", "expected an object"});
  expect_problem_error(R"({"layers": []})", {"\"problem\"", "puzzle.block_selection"});
  expect_problem_error(R"({"problem": "parallel.configuration"})",
                       {"unknown problem type 'parallel.configuration'", "puzzle.block_selection"});
}

TEST(SearchErrors, RejectsBadSolverParameters) {
  const ts_search_vtable& v = exact_vtable();
  const auto create_error = [&](const ts_param& param) {
    const ts_params params{&param, 1};
    void* self = nullptr;
    ts_error err{};
    if (v.create(&params, nullptr, &self, &err) == TS_OK) {
      v.destroy(self);
      return std::string();
    }
    return std::string(err.message);
  };
  ts_param p{};
  p.key = "max_nodes";
  p.type = TS_PARAM_INT;
  p.i = 0;
  EXPECT_NE(create_error(p).find("'max_nodes' is 0"), std::string::npos) << create_error(p);
  p.key = "max_node";
  p.i = 5;
  EXPECT_NE(create_error(p).find("unknown parameter 'max_node'"), std::string::npos);
}

// ------------------------------------------------- through the host's wrapper

// A registry holding the exact solver only.
const tessera::PluginRegistry& search_registry() {
  static tessera::PluginRegistry* registry = [] {
    auto* r = new tessera::PluginRegistry();
    r->load(TESSERA_PLUGIN_DIR "/libtessera-search-exact.so");
    return r;
  }();
  return *registry;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

TEST(SearchWrapper, MakeSearchSolvesAsBruteForce) {
  const std::unique_ptr<tessera::Search> search =
      tessera::make_search(search_registry(), "exact", "", tessera::ParamList(), nullptr);
  EXPECT_EQ(search->label(), "search exact (tessera-search-exact)");
  EXPECT_EQ(search->provider().plugin_name(), "tessera-search-exact");
  std::mt19937 rng(77);
  std::uniform_int_distribution<int> size(2, 4);
  for (int trial = 0; trial < 24; ++trial) {
    Instance inst = random_instance(rng, size(rng), size(rng), size(rng), 20);
    // Budgets halfway between the cheapest and the dearest choice: they bind.
    if (trial % 2 == 0)
      inst.memory_budget =
          std::floor(0.5 * (extreme_total(inst, true, true) + extreme_total(inst, true, false)));
    if (trial % 3 == 0)
      inst.latency_budget =
          std::floor(0.5 * (extreme_total(inst, false, true) + extreme_total(inst, false, false)));
    const json solution = json::parse(search->solve(to_json(inst).dump()));
    check_solution(inst, solution, brute_force(inst), "trial " + std::to_string(trial));
    if (HasFailure()) return;
  }
  // The same problem twice through one object: the same answer.
  const std::string problem = to_json(random_instance(rng, 3, 3, 3, 9)).dump();
  EXPECT_EQ(search->solve(problem), search->solve(problem));
}

TEST(SearchWrapper, ErrorsNameTheProviderAndTheFault) {
  const std::unique_ptr<tessera::Search> search = tessera::make_search(
      search_registry(), "exact", "tessera-search-exact", tessera::ParamList(), nullptr);
  std::string error = error_of([&] { search->solve("{\"problem\": "); });
  EXPECT_NE(error.find("search exact (tessera-search-exact): solve: search-exact: the problem is "
                       "not valid JSON"),
            std::string::npos)
      << error;
  error = error_of([&] { search->solve(R"({"problem": "parallel.configuration"})"); });
  EXPECT_NE(error.find("unknown problem type 'parallel.configuration'"), std::string::npos)
      << error;
  error = error_of(
      [&] { tessera::make_search(search_registry(), "nope", "", tessera::ParamList(), nullptr); });
  EXPECT_NE(error.find("search 'nope'"), std::string::npos) << error;
  error = error_of([&] {
    tessera::make_search(search_registry(), "exact", "no-such-plugin", tessera::ParamList(),
                         nullptr);
  });
  EXPECT_NE(error.find("no-such-plugin"), std::string::npos) << error;
  tessera::ParamList bad;
  bad.set("max_nodes", int64_t{0});
  error = error_of([&] { tessera::make_search(search_registry(), "exact", "", bad, nullptr); });
  EXPECT_NE(error.find("search exact (tessera-search-exact): search-exact: parameter 'max_nodes' "
                       "is 0"),
            std::string::npos)
      << error;
}

}  // namespace
