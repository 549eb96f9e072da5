// The search providers (exact, mip, greedy, lagrangian) on "puzzle.block_selection" with named
// costs and diversity (docs/search.md): against brute force on random small problems, ties,
// single-option layers, the reasons given for infeasible problems, diversity, and the same
// refusal of every malformed document by every provider.
#include <gtest/gtest.h>
#include <tessera/abi.h>

#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS
#endif
#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using nlohmann::json;

constexpr double kSlack = 1e-12;  // docs/search.md: a total may exceed a budget by this

struct Provider {
  const char* name;     // the provider's name
  const char* library;  // its plugin's file
  bool exact;           // proves optimality
};

const Provider kProviders[] = {
    {"exact", "libtessera-search-exact.so", true},
    {"mip", "libtessera-search-mip.so", true},
    {"greedy", "libtessera-search-greedy.so", false},
    {"lagrangian", "libtessera-search-lagrangian.so", false},
};

std::string library_path(const Provider& p) {
  return std::string(TESSERA_PLUGIN_DIR) + "/" + p.library;
}

bool available(const Provider& p) {
  return std::filesystem::exists(library_path(p));
}

// The provider's vtable; its library stays loaded for the whole run.
const ts_search_vtable& vtable(const Provider& p) {
  static std::map<std::string, std::unique_ptr<boost::dll::shared_library>> loaded;
  auto& lib = loaded[p.library];
  if (!lib)
    lib = std::make_unique<boost::dll::shared_library>(std::filesystem::path(library_path(p)));
  const auto entry = lib->get<const ts_plugin_descriptor*()>("tessera_plugin");
  const ts_plugin_descriptor* plugin = entry();
  for (int32_t i = 0; i < plugin->n_providers; ++i)
    if (plugin->providers[i].kind == TS_KIND_SEARCH &&
        std::string_view(plugin->providers[i].name) == p.name)
      return *static_cast<const ts_search_vtable*>(plugin->providers[i].vtable);
  throw std::runtime_error(std::string(p.library) + " has no search provider " + p.name);
}

struct Outcome {
  bool ok = false;
  std::string error;  // from create or solve
  std::string text;
  json solution;
};

Outcome run(const Provider& p, const std::string& problem,
            const std::vector<ts_param>& params = {}) {
  const ts_search_vtable& v = vtable(p);
  const ts_params list{params.data(), static_cast<int32_t>(params.size())};
  void* self = nullptr;
  ts_error err{};
  Outcome out;
  if (v.create(&list, nullptr, &self, &err) != TS_OK) {
    out.error = err.message;
    return out;
  }
  char* text = nullptr;
  if (v.solve(self, problem.c_str(), &text, &err) == TS_OK) {
    out.ok = true;
    out.text = text;
    out.solution = json::parse(out.text);
    v.free_string(self, text);
  } else {
    out.error = err.message;
  }
  v.destroy(self);
  return out;
}

Outcome run(const Provider& p, const json& problem) {
  return run(p, problem.dump());
}

ts_param int_param(const char* key, int64_t value) {
  ts_param param{};
  param.key = key;
  param.type = TS_PARAM_INT;
  param.i = value;
  return param;
}

ts_param float_param(const char* key, double value) {
  ts_param param{};
  param.key = key;
  param.type = TS_PARAM_FLOAT;
  param.f = value;
  return param;
}

// Only the mip plugin is optional (built when pkg-config finds COIN-OR CBC).
#define SKIP_IF_ABSENT(p)                                                                      \
  do {                                                                                         \
    if (!available(p))                                                                         \
      GTEST_SKIP() << (p).library                                                              \
                   << " was not built (COIN-OR CBC not found by pkg-config when configuring; " \
                      "Debian: coinor-libcbc-dev)";                                            \
  } while (false)

// ----------------------------------------------------------- instances

struct Variant {
  std::string name;
  double score = 0;
  std::map<std::string, double> cost;
};

struct Instance {
  std::vector<std::array<std::vector<Variant>, 2>> layers;
  std::map<std::string, double> budgets;
  int64_t max_common = -1;  // < 0: no diversity
  std::vector<std::vector<std::array<int, 2>>> earlier;
};

json to_json(const Instance& inst, std::mt19937* placement = nullptr) {
  json doc = {{"problem", "puzzle.block_selection"}, {"layers", json::array()}};
  for (const auto& layer : inst.layers) {
    json entry = json::object();
    for (int k = 0; k < 2; ++k) {
      json list = json::array();
      for (const Variant& v : layer[k]) {
        json item = {{"name", v.name}, {"score", v.score}};
        for (const auto& [name, value] : v.cost) {
          // memory_bytes and latency_s may stand as their own fields or under "costs".
          const bool own = (name == "memory_bytes" || name == "latency_s") &&
                           placement != nullptr && (*placement)() % 2 == 0;
          if (own)
            item[name] = value;
          else
            item["costs"][name] = value;
        }
        list.push_back(item);
      }
      entry[k == 0 ? "attention" : "ffn"] = list;
    }
    doc["layers"].push_back(entry);
  }
  if (!inst.budgets.empty()) doc["budgets"] = inst.budgets;
  if (inst.max_common >= 0) {
    json solutions = json::array();
    for (const auto& s : inst.earlier) {
      json one = json::array();
      for (size_t l = 0; l < s.size(); ++l)
        one.push_back({{"attention", inst.layers[l][0][s[l][0]].name},
                       {"ffn", inst.layers[l][1][s[l][1]].name}});
      solutions.push_back(one);
    }
    doc["diversity"] = {{"max_common", inst.max_common}, {"solutions", solutions}};
  }
  return doc;
}

struct Evaluated {
  double score = 0;
  std::map<std::string, double> total;
  std::vector<int64_t> common;
  bool fits = true;
};

Evaluated evaluate(const Instance& inst, const std::vector<std::array<int, 2>>& choice) {
  Evaluated e;
  for (size_t l = 0; l < inst.layers.size(); ++l) {
    const Variant& a = inst.layers[l][0][choice[l][0]];
    const Variant& f = inst.layers[l][1][choice[l][1]];
    e.score += a.score + f.score;
    for (const auto& [name, budget] : inst.budgets)
      e.total[name] += a.cost.at(name) + f.cost.at(name);
  }
  for (const auto& [name, budget] : inst.budgets)
    e.fits = e.fits && e.total[name] <= budget + kSlack * std::max(1.0, budget);
  if (inst.max_common >= 0)
    for (const auto& s : inst.earlier) {
      int64_t common = 0;
      for (size_t l = 0; l < s.size(); ++l)
        common += (s[l][0] == choice[l][0]) + (s[l][1] == choice[l][1]);
      e.common.push_back(common);
      e.fits = e.fits && common <= inst.max_common;
    }
  return e;
}

struct Best {
  bool feasible = false;
  double objective = std::numeric_limits<double>::infinity();
};

// Every combination, enumerated.
Best brute_force(const Instance& inst) {
  const size_t n = inst.layers.size();
  std::vector<std::array<int, 2>> choice(n, {0, 0});
  Best best;
  while (true) {
    const Evaluated e = evaluate(inst, choice);
    if (e.fits && e.score < best.objective) best = {true, e.score};
    size_t l = 0;
    for (; l < n; ++l) {
      if (++choice[l][0] < static_cast<int>(inst.layers[l][0].size())) break;
      choice[l][0] = 0;
      if (++choice[l][1] < static_cast<int>(inst.layers[l][1].size())) break;
      choice[l][1] = 0;
    }
    if (l == n) return best;
  }
}

std::vector<std::array<int, 2>> read_choice(const Instance& inst, const json& solution) {
  const json& layers = solution.at("layers");
  if (layers.size() != inst.layers.size()) throw std::runtime_error("not one entry per layer");
  std::vector<std::array<int, 2>> choice(inst.layers.size());
  for (size_t l = 0; l < inst.layers.size(); ++l)
    for (int k = 0; k < 2; ++k) {
      const auto& list = inst.layers[l][k];
      const std::string name = layers[l].at(k == 0 ? "attention" : "ffn");
      const auto it =
          std::find_if(list.begin(), list.end(), [&](const Variant& v) { return v.name == name; });
      if (it == list.end()) throw std::runtime_error("unknown variant " + name);
      choice[l][k] = static_cast<int>(it - list.begin());
    }
  return choice;
}

// Random: 2-5 layers, 1-4 variants per list, 1-3 cost names, budgets anywhere from below
// the least reachable total to above the most, diversity in a third of the problems.
Instance random_instance(std::mt19937& rng) {
  const auto uniform_int = [&](int low, int high) {
    return std::uniform_int_distribution<int>(low, high)(rng);
  };
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  static const char* kNames[] = {"memory_bytes", "latency_s", "decode_s"};
  std::vector<std::string> names;
  const int count = uniform_int(1, 3);
  for (int i = 0; i < 3 && static_cast<int>(names.size()) < count; ++i)
    if (uniform_int(0, 2) > 0 || 3 - i == count - static_cast<int>(names.size()))
      names.push_back(kNames[i]);
  const bool integral = uniform_int(0, 1) == 0;
  Instance inst;
  const int layers = uniform_int(2, 5);
  for (int l = 0; l < layers; ++l) {
    std::array<std::vector<Variant>, 2> layer;
    for (int k = 0; k < 2; ++k) {
      const int variants = uniform_int(1, 4);
      for (int v = 0; v < variants; ++v) {
        Variant variant{
            (k == 0 ? "attn" : "ffn") + std::to_string(v), std::round(unit(rng) * 1e6) / 1e6, {}};
        for (const std::string& name : names)
          variant.cost[name] = integral ? uniform_int(0, 20) : unit(rng) * 1e-3;
        layer[k].push_back(variant);
      }
    }
    inst.layers.push_back(layer);
  }
  for (const std::string& name : names) {
    double least = 0, most = 0;
    for (const auto& layer : inst.layers)
      for (const auto& list : layer) {
        double low = INFINITY, high = 0;
        for (const Variant& v : list) {
          low = std::min(low, v.cost.at(name));
          high = std::max(high, v.cost.at(name));
        }
        least += low;
        most += high;
      }
    const double budget = least + (unit(rng) * 1.1 - 0.05) * (most - least);
    inst.budgets[name] = std::max(0.0, integral ? std::floor(budget) : budget);
  }
  if (uniform_int(0, 2) == 0) {
    const int earlier = uniform_int(1, 2);
    for (int s = 0; s < earlier; ++s) {
      std::vector<std::array<int, 2>> pick;
      for (const auto& layer : inst.layers)
        pick.push_back({uniform_int(0, static_cast<int>(layer[0].size()) - 1),
                        uniform_int(0, static_cast<int>(layer[1].size()) - 1)});
      inst.earlier.push_back(pick);
    }
    inst.max_common = uniform_int(0, 2 * layers);
  }
  return inst;
}

// Checks a provider's solution against brute force; `exact` providers must be optimal.
void check(const Provider& p, const Instance& inst, const json& solution, const Best& best,
           const std::string& label) {
  const std::string status = solution.at("status");
  EXPECT_EQ(solution.at("solver"), p.name) << label;
  if (status == "infeasible") {
    EXPECT_FALSE(solution.at("reason").get<std::string>().empty()) << label;
    if (p.exact) {
      EXPECT_FALSE(best.feasible) << label << ": brute force found " << best.objective;
    }
    if (best.feasible) {
      EXPECT_FALSE(solution.at("proven").get<bool>()) << label;
    }
    if (p.exact) {
      EXPECT_TRUE(solution.at("proven").get<bool>()) << label;
    }
    return;
  }
  ASSERT_TRUE(best.feasible) << label << ": nothing fits, but the status is " << status;
  if (p.exact) {
    EXPECT_EQ(status, "optimal") << label;
  } else {
    EXPECT_TRUE(status == "optimal" || status == "feasible") << label << ": " << status;
  }
  const Evaluated e = evaluate(inst, read_choice(inst, solution));
  EXPECT_TRUE(e.fits) << label << ": the choice does not fit: " << solution.dump();
  const double tolerance = 1e-9 * std::max(1.0, std::abs(best.objective));
  EXPECT_NEAR(solution.at("objective").get<double>(), e.score, tolerance) << label;
  if (status == "optimal") {
    EXPECT_NEAR(e.score, best.objective, tolerance) << label;
  } else {
    EXPECT_GE(e.score, best.objective - tolerance) << label;
  }
  for (const auto& [name, budget] : inst.budgets)
    EXPECT_NEAR(solution.at("totals").at(name).get<double>(), e.total.at(name),
                1e-9 * std::max(1.0, e.total.at(name)))
        << label << ": totals." << name;
  if (inst.max_common >= 0) {
    EXPECT_EQ(solution.at("common"), json(e.common)) << label;
  }
}

// --------------------------------------------------------------- random problems

class Providers : public ::testing::TestWithParam<Provider> {};

TEST_P(Providers, MatchBruteForceOnRandomSmallProblems) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  int infeasible = 0, with_diversity = 0, suboptimal = 0, missed = 0;
  for (int seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(static_cast<uint32_t>(seed));
    const Instance inst = random_instance(rng);
    const Best best = brute_force(inst);
    infeasible += best.feasible ? 0 : 1;
    with_diversity += inst.max_common >= 0 ? 1 : 0;
    const Outcome out = run(p, to_json(inst, &rng));
    ASSERT_TRUE(out.ok) << "seed " << seed << ": " << out.error;
    check(p, inst, out.solution, best, "seed " + std::to_string(seed));
    if (best.feasible && out.solution.at("status") != "infeasible" &&
        out.solution.at("objective").get<double>() > best.objective + 1e-9)
      ++suboptimal;
    if (best.feasible && out.solution.at("status") == "infeasible") ++missed;
    if (HasFailure()) return;
  }
  std::printf(
      "%s: 200 problems, %d with nothing that fits; %d answered above the optimum, %d "
      "answered infeasible (unproven) where something fits\n",
      p.name, infeasible, suboptimal, missed);
  // Both outcomes and the diversity constraint were exercised.
  EXPECT_GT(infeasible, 10);
  EXPECT_LT(infeasible, 150);
  EXPECT_GT(with_diversity, 30);
  if (p.exact) {
    EXPECT_EQ(suboptimal, 0);
  }
  RecordProperty("suboptimal", suboptimal);
}

TEST_P(Providers, AreDeterministic) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  std::mt19937 rng(7);
  for (int i = 0; i < 5; ++i) {
    const std::string problem = to_json(random_instance(rng)).dump();
    const Outcome first = run(p, problem), second = run(p, problem);
    ASSERT_TRUE(first.ok) << first.error;
    EXPECT_EQ(first.text, second.text);
  }
}

// --------------------------------------------------------------- small cases

TEST_P(Providers, TakeTheOnlyOptionOfALayer) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  const json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"decode_s": 5},
    "layers": [
      {"attention": [{"name": "only", "score": 0.5, "costs": {"decode_s": 2}}],
       "ffn": [{"name": "only-ffn", "score": 0.25, "costs": {"decode_s": 1}}]},
      {"attention": [{"name": "big", "score": 0, "costs": {"decode_s": 3}},
                     {"name": "small", "score": 0.5, "costs": {"decode_s": 1}}],
       "ffn": [{"name": "f", "score": 0, "costs": {"decode_s": 0}}]}
    ]})");
  const Outcome out = run(p, problem);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.solution["layers"][0], (json{{"attention", "only"}, {"ffn", "only-ffn"}}));
  EXPECT_EQ(out.solution["layers"][1], (json{{"attention", "small"}, {"ffn", "f"}}));
  EXPECT_NEAR(out.solution["objective"].get<double>(), 1.25, 1e-12);
  EXPECT_NEAR(out.solution["totals"]["decode_s"].get<double>(), 4.0, 1e-12);
}

TEST_P(Providers, BreakTiesToTheFirstListedVariant) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  // "z-first" and "a-second" are equal in score and every cost; "wide" does not fit.
  json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"memory_bytes": 5, "decode_s": 5},
    "layers": [
      {"attention": [{"name": "wide", "score": 0, "memory_bytes": 9, "costs": {"decode_s": 1}},
                     {"name": "z-first", "score": 0.1, "memory_bytes": 2, "costs": {"decode_s": 1}},
                     {"name": "a-second", "score": 0.1, "memory_bytes": 2, "costs": {"decode_s": 1}}],
       "ffn": [{"name": "f1", "score": 0.2, "memory_bytes": 1, "costs": {"decode_s": 2}},
               {"name": "f2", "score": 0.2, "memory_bytes": 1, "costs": {"decode_s": 2}}]}
    ]})");
  Outcome out = run(p, problem);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.solution["layers"][0], (json{{"attention", "z-first"}, {"ffn", "f1"}}));
  // Listed the other way round, the other one is chosen.
  std::swap(problem["layers"][0]["attention"][1], problem["layers"][0]["attention"][2]);
  std::swap(problem["layers"][0]["ffn"][0], problem["layers"][0]["ffn"][1]);
  out = run(p, problem);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.solution["layers"][0], (json{{"attention", "a-second"}, {"ffn", "f2"}}));
}

TEST_P(Providers, NameTheTightestBudgetAndItsLeastReachableTotal) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  const json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"decode_s": 0.01, "memory_bytes": 100, "prefill_s": 1},
    "layers": [
      {"attention": [{"name": "a", "score": 0, "memory_bytes": 80, "costs": {"decode_s": 0.007, "prefill_s": 0.1}},
                     {"name": "b", "score": 1, "memory_bytes": 60, "costs": {"decode_s": 0.0073, "prefill_s": 0.1}}],
       "ffn": [{"name": "f", "score": 0, "memory_bytes": 50, "costs": {"decode_s": 0.005, "prefill_s": 0.1}}]}
    ]})");
  const Outcome out = run(p, problem);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.solution["status"], "infeasible");
  EXPECT_TRUE(out.solution["proven"].get<bool>());
  // decode_s needs at least 0.012 (20% over), memory_bytes 110 (10% over): decode_s is the
  // tighter; prefill_s fits.
  EXPECT_EQ(out.solution["reason"],
            "decode_s: the least reachable total is 0.012, over the budget of 0.01; also "
            "memory_bytes: the least reachable total is 110, over the budget of 100");
}

TEST_P(Providers, SayWhichBudgetsCannotHoldTogether) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  // memory_bytes and latency_s each alone can be met, not both; decode_s is loose.
  const json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"memory_bytes": 10, "latency_s": 10, "decode_s": 100},
    "layers": [
      {"attention": [{"name": "a", "score": 0, "memory_bytes": 8, "latency_s": 1, "costs": {"decode_s": 1}},
                     {"name": "b", "score": 1, "memory_bytes": 1, "latency_s": 8, "costs": {"decode_s": 1}}],
       "ffn": [{"name": "f", "score": 0, "memory_bytes": 1, "latency_s": 1, "costs": {"decode_s": 1}}]},
      {"attention": [{"name": "a", "score": 0, "memory_bytes": 8, "latency_s": 1, "costs": {"decode_s": 1}},
                     {"name": "b", "score": 1, "memory_bytes": 1, "latency_s": 8, "costs": {"decode_s": 1}}],
       "ffn": [{"name": "f", "score": 0, "memory_bytes": 1, "latency_s": 1, "costs": {"decode_s": 1}}]}
    ]})");
  const Outcome out = run(p, problem);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.solution["status"], "infeasible");
  const std::string reason = out.solution["reason"];
  // The exact providers always prove it; a heuristic may, and then says the same.
  if (p.exact) {
    EXPECT_TRUE(out.solution["proven"].get<bool>());
  }
  if (out.solution["proven"].get<bool>()) {
    EXPECT_EQ(reason,
              "no choice meets latency_s and memory_bytes together; each alone can be met: the "
              "least reachable latency_s is 4 (budget 10) and the least reachable memory_bytes "
              "is 4 (budget 10)");
  } else {
    EXPECT_NE(reason.find("does not prove"), std::string::npos) << reason;
  }
}

TEST_P(Providers, HonourDiversityAgainstAnEarlierSolution) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  std::mt19937 rng(11);
  Instance inst;
  for (int l = 0; l < 4; ++l) {
    std::array<std::vector<Variant>, 2> layer;
    for (int k = 0; k < 2; ++k)
      for (int v = 0; v < 3; ++v)
        layer[k].push_back({"v" + std::to_string(v),
                            std::uniform_real_distribution<double>(0, 1)(rng),
                            {{"decode_s", std::uniform_real_distribution<double>(0, 1)(rng)}}});
    inst.layers.push_back(layer);
  }
  inst.budgets["decode_s"] = 3.5;
  const Outcome first = run(p, to_json(inst));
  ASSERT_TRUE(first.ok) << first.error;
  ASSERT_NE(first.solution["status"], "infeasible");
  const auto chosen = read_choice(inst, first.solution);
  // Again, at most 2 of the 8 sub-blocks in common with the first answer.
  inst.earlier.push_back(chosen);
  inst.max_common = 2;
  const json problem = to_json(inst);
  EXPECT_EQ(problem["diversity"]["solutions"][0], first.solution["layers"]);
  const Outcome second = run(p, problem);
  ASSERT_TRUE(second.ok) << second.error;
  const Best best = brute_force(inst);
  ASSERT_TRUE(best.feasible);
  check(p, inst, second.solution, best, "second solve");
  ASSERT_NE(second.solution["status"], "infeasible") << second.solution.dump() << "\n"
                                                     << problem.dump();
  EXPECT_NE(read_choice(inst, second.solution), chosen);
  EXPECT_LE(second.solution["common"][0].get<int64_t>(), 2);
}

TEST_P(Providers, ExplainDiversityThatCannotBeMet) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  // Every list of layer 0 has one variant: any choice shares 2 sub-blocks with the earlier one.
  json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "layers": [
      {"attention": [{"name": "a", "score": 0}], "ffn": [{"name": "f", "score": 0}]},
      {"attention": [{"name": "a", "score": 0, "memory_bytes": 1}, {"name": "b", "score": 1, "memory_bytes": 5}],
       "ffn": [{"name": "f", "score": 0, "memory_bytes": 1}, {"name": "g", "score": 1, "memory_bytes": 5}]}
    ],
    "diversity": {"max_common": 1, "solutions": [[{"attention": "a", "ffn": "f"}, {"attention": "a", "ffn": "f"}]]}
  })");
  problem["layers"][0]["attention"][0]["memory_bytes"] = 0;
  problem["layers"][0]["ffn"][0]["memory_bytes"] = 0;
  Outcome out = run(p, problem);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.solution["status"], "infeasible");
  EXPECT_EQ(out.solution["reason"],
            "diversity.solutions[0]: every choice has at least 2 sub-blocks in common with it "
            "(lists with a single variant), over max_common 1");
  // Room for diversity, but not within the memory budget: both are named.
  problem["diversity"]["max_common"] = 2;
  problem["budgets"] = {{"memory_bytes", 6}};
  out = run(p, problem);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.solution["status"], "infeasible");
  if (p.exact) {
    EXPECT_EQ(out.solution["reason"],
              "no choice meets memory_bytes and diversity.solutions[0] together; each alone can "
              "be met: the least reachable memory_bytes is 2 (budget 6) and the fewest "
              "sub-blocks in common with diversity.solutions[0] is 2 (max_common 2)");
  }
}

TEST_P(Providers, ReportTotalsOfEveryBudgetedAndCompleteCost) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  const json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"runtime": 10},
    "layers": [
      {"attention": [{"name": "a", "score": 0, "runtime": 2, "memory_bytes": 5, "costs": {"flops": 7}}],
       "ffn": [{"name": "f", "score": 0.5, "costs": {"latency_s": 3, "flops": 1}}]}
    ]})");
  const Outcome out = run(p, problem);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.solution["status"], "optimal");
  EXPECT_EQ(out.solution["solver"], p.name);
  const json& totals = out.solution["totals"];
  EXPECT_EQ(totals["latency_s"], 5.0);            // "runtime" is latency_s
  EXPECT_EQ(totals["flops"], 8.0);                // given by every chosen variant
  EXPECT_FALSE(totals.contains("memory_bytes"));  // not given by the FFN
  EXPECT_EQ(totals["score"], 0.5);
  EXPECT_FALSE(out.solution.contains("common"));
}

// --------------------------------------------------------------- malformed documents

std::string strip_provider(const std::string& message) {
  const size_t colon = message.find(": ");
  return colon == std::string::npos ? message : message.substr(colon + 2);
}

struct Malformed {
  std::string what;
  json document;
  std::vector<std::string> fragments;
};

std::vector<Malformed> malformed_documents() {
  const json base = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"decode_s": 1},
    "layers": [
      {"attention": [{"name": "a", "score": 0, "costs": {"decode_s": 0.1}},
                     {"name": "b", "score": 1, "costs": {"decode_s": 0.05}}],
       "ffn": [{"name": "f", "score": 0, "costs": {"decode_s": 0.1}}]},
      {"attention": [{"name": "a", "score": 0, "costs": {"decode_s": 0.1}}],
       "ffn": [{"name": "f", "score": 0, "costs": {"decode_s": 0.1}},
               {"name": "g", "score": 0.5, "costs": {"decode_s": 0.01}}]}
    ],
    "diversity": {"max_common": 2, "solutions": [[{"attention": "a", "ffn": "f"}, {"attention": "a", "ffn": "g"}]]}
  })");
  std::vector<Malformed> out;
  const auto add = [&](std::string what, auto&& spoil, std::vector<std::string> fragments) {
    json doc = base;
    spoil(doc);
    out.push_back({std::move(what), doc, std::move(fragments)});
  };
  add("costs not an object", [](json& d) { d["layers"][0]["attention"][1]["costs"] = 3; },
      {"layers[0].attention[1].costs is a number", "expected an object"});
  add("a negative named cost",
      [](json& d) { d["layers"][1]["ffn"][1]["costs"]["decode_s"] = -0.5; },
      {"layers[1].ffn[1].costs.decode_s is -0.5, expected a number >= 0"});
  add("a named cost that is not a number",
      [](json& d) { d["layers"][1]["ffn"][1]["costs"]["decode_s"] = "fast"; },
      {"layers[1].ffn[1].costs.decode_s is a string, expected a number >= 0"});
  add("a budgeted cost missing",
      [](json& d) { d["layers"][1]["ffn"][0]["costs"].erase("decode_s"); },
      {"layers[1].ffn[0].costs.decode_s is missing", "(budgets.decode_s is set)"});
  add("a misspelt budget",
      [](json& d) {
        d["budgets"] = {{"decode", 1}};
      },
      {"layers[0].attention[0].costs.decode is missing", "budgets.decode is set",
       "this variant's costs are decode_s"});
  add("a cost given twice",
      [](json& d) {
        d["layers"][0]["ffn"][0]["memory_bytes"] = 1;
        d["layers"][0]["ffn"][0]["costs"]["memory_bytes"] = 1;
      },
      {"layers[0].ffn[0].costs.memory_bytes repeats layers[0].ffn[0].memory_bytes"});
  add("runtime beside latency_s",
      [](json& d) {
        d["layers"][0]["ffn"][0]["latency_s"] = 1;
        d["layers"][0]["ffn"][0]["costs"]["runtime"] = 1;
      },
      {"layers[0].ffn[0].costs.runtime repeats layers[0].ffn[0].latency_s",
       "latency_s and runtime name the same cost"});
  add("a cost named score", [](json& d) { d["layers"][0]["ffn"][0]["costs"]["score"] = 1; },
      {"layers[0].ffn[0].costs.score", "score is the objective"});
  add("a budget named score", [](json& d) { d["budgets"]["score"] = 1; },
      {"budgets.score is not a budget"});
  add("a negative budget", [](json& d) { d["budgets"]["decode_s"] = -1; },
      {"budgets.decode_s is -1, expected a number >= 0"});
  add("budgets not an object", [](json& d) { d["budgets"] = json::array(); },
      {"budgets is a array", "expected an object"});
  add("both latency_s and runtime budgets",
      [](json& d) {
        d["budgets"] = {{"latency_s", 1}, {"runtime", 1}};
      },
      {"budgets gives both latency_s and runtime"});
  add("diversity not an object", [](json& d) { d["diversity"] = 2; },
      {"diversity is a number, expected an object {max_common, solutions}"});
  add("an unknown diversity field", [](json& d) { d["diversity"]["alpha"] = 0.5; },
      {"diversity.alpha is not a known field; expected max_common, solutions"});
  add("max_common missing", [](json& d) { d["diversity"].erase("max_common"); },
      {"diversity.max_common is missing, expected an integer >= 0"});
  add("max_common negative", [](json& d) { d["diversity"]["max_common"] = -1; },
      {"diversity.max_common is -1, expected an integer >= 0"});
  add("max_common fractional", [](json& d) { d["diversity"]["max_common"] = 1.5; },
      {"diversity.max_common is 1.5, expected an integer >= 0"});
  add("max_common a string", [](json& d) { d["diversity"]["max_common"] = "2"; },
      {"diversity.max_common is a string, expected an integer >= 0"});
  add("solutions missing", [](json& d) { d["diversity"].erase("solutions"); },
      {"diversity.solutions is missing, expected an array of earlier solutions"});
  add("solutions not an array", [](json& d) { d["diversity"]["solutions"] = json::object(); },
      {"diversity.solutions is a object, expected an array"});
  add("a solution not an array",
      [](json& d) {
        d["diversity"]["solutions"][0] = {{"attention", "a"}};
      },
      {"diversity.solutions[0] is a object, expected an array of {attention, ffn}"});
  add("a solution of the wrong length", [](json& d) { d["diversity"]["solutions"][0].erase(1); },
      {"diversity.solutions[0] has 1 entries, expected one per layer (2)"});
  add("an entry not an object", [](json& d) { d["diversity"]["solutions"][0][1] = "a"; },
      {"diversity.solutions[0][1] is a string, expected an object {attention, ffn}"});
  add("an entry with an unknown field",
      [](json& d) { d["diversity"]["solutions"][0][1]["attn"] = "a"; },
      {"diversity.solutions[0][1].attn is not a known field; expected attention, ffn"});
  add("an entry without its FFN", [](json& d) { d["diversity"]["solutions"][0][0].erase("ffn"); },
      {"diversity.solutions[0][0].ffn is missing, expected the name of a variant of "
       "layers[0].ffn"});
  add("an entry naming with a number",
      [](json& d) { d["diversity"]["solutions"][0][0]["attention"] = 1; },
      {"diversity.solutions[0][0].attention is a number, expected the name of a variant"});
  add("an entry naming an unknown variant",
      [](json& d) { d["diversity"]["solutions"][0][1]["ffn"] = "h"; },
      {"diversity.solutions[0][1].ffn 'h' is not a variant of layers[1].ffn (its variants: f "
       "and g)"});
  add("an unknown top-level field", [](json& d) { d["diversity_"] = 1; },
      {"diversity_ is not a known field"});
  return out;
}

TEST_P(Providers, RefuseMalformedDocumentsNamingTheFault) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  const std::string prefix = std::string("search-") + p.name + ": puzzle.block_selection: ";
  for (const Malformed& m : malformed_documents()) {
    const Outcome out = run(p, m.document);
    ASSERT_FALSE(out.ok) << m.what << ": accepted";
    EXPECT_EQ(out.error.rfind(prefix, 0), 0u) << m.what << ": " << out.error;
    for (const std::string& fragment : m.fragments)
      EXPECT_NE(out.error.find(fragment), std::string::npos)
          << m.what << ": '" << fragment << "' not in: " << out.error;
  }
  // The valid base document is accepted.
  json base = malformed_documents().front().document;
  base["layers"][0]["attention"][1]["costs"] = {{"decode_s", 0.05}};
  const Outcome ok = run(p, base);
  EXPECT_TRUE(ok.ok) << ok.error;
}

TEST_P(Providers, RefuseGenericBadDocuments) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  const std::pair<std::string, std::string> cases[] = {
      {"{\"problem\": ", "the problem is not valid JSON"},
      {"[1, 2]", "the problem document is a JSON array, expected an object"},
      {R"({"layers": []})", "needs a string field \"problem\""},
      {R"({"problem": "x.y"})",
       "unknown problem type 'x.y'; known problem types: "
       "puzzle.block_selection"},
  };
  for (const auto& [text, fragment] : cases) {
    const Outcome out = run(p, text);
    ASSERT_FALSE(out.ok) << text;
    EXPECT_EQ(out.error.rfind(std::string("search-") + p.name + ": ", 0), 0u) << out.error;
    EXPECT_NE(out.error.find(fragment), std::string::npos) << out.error;
  }
}

TEST_P(Providers, RefuseUnknownParameters) {
  const Provider& p = GetParam();
  SKIP_IF_ABSENT(p);
  const Outcome out = run(p, "{}", {int_param("depth", 3)});
  ASSERT_FALSE(out.ok);
  EXPECT_NE(out.error.find(std::string("search-") + p.name + ": unknown parameter 'depth'"),
            std::string::npos)
      << out.error;
}

TEST(SearchProviders, EveryProviderRefusesTheSameDocumentsWithTheSameMessages) {
  std::vector<const Provider*> present;
  for (const Provider& p : kProviders)
    if (available(p)) present.push_back(&p);
  ASSERT_GE(present.size(), 3u);
  for (const Malformed& m : malformed_documents()) {
    const std::string first = strip_provider(run(*present[0], m.document).error);
    for (const Provider* p : present)
      EXPECT_EQ(strip_provider(run(*p, m.document).error), first) << p->name << ": " << m.what;
  }
}

TEST(SearchProviders, ParametersOfEachProvider) {
  const Provider& exact = kProviders[0];
  const Provider& mip = kProviders[1];
  const Provider& greedy = kProviders[2];
  const Provider& lagrangian = kProviders[3];
  const std::string problem =
      R"({"problem": "puzzle.block_selection", "layers": [{"attention": [{"name": "a", "score": 0}], "ffn": [{"name": "f", "score": 0}]}]})";
  EXPECT_TRUE(run(exact, problem, {int_param("max_nodes", 10)}).ok);
  EXPECT_NE(run(greedy, problem, {int_param("max_nodes", 10)})
                .error.find("unknown parameter 'max_nodes'; it accepts no parameters"),
            std::string::npos);
  EXPECT_TRUE(run(lagrangian, problem, {int_param("iterations", 5), float_param("step", 1.0)}).ok);
  EXPECT_NE(
      run(lagrangian, problem, {int_param("iterations", 0)})
          .error.find("search-lagrangian: parameter 'iterations' is 0, expected an integer >= 1"),
      std::string::npos);
  EXPECT_NE(run(lagrangian, problem, {float_param("step", 3.0)})
                .error.find("parameter 'step' is 3, expected a number in (0, 2]"),
            std::string::npos);
  EXPECT_NE(run(lagrangian, problem, {int_param("seed", 1)})
                .error.find("unknown parameter 'seed'; accepted parameters: iterations, step"),
            std::string::npos);
  if (available(mip)) {
    EXPECT_TRUE(run(mip, problem, {int_param("max_nodes", 10)}).ok);
    EXPECT_NE(run(mip, problem, {int_param("max_nodes", 0)})
                  .error.find("search-mip: parameter 'max_nodes' is 0, expected an integer >= 1"),
              std::string::npos);
  }
}

TEST(SearchProviders, HeuristicsReportTheirBoundAndGap) {
  std::mt19937 rng(3);
  Instance inst;
  for (int l = 0; l < 12; ++l) {
    std::array<std::vector<Variant>, 2> layer;
    for (int k = 0; k < 2; ++k)
      for (int v = 0; v < 5; ++v) {
        const double size = std::uniform_real_distribution<double>(0, 1)(rng);
        layer[k].push_back({"v" + std::to_string(v),
                            (1 - size) * (1 - size),
                            {{"decode_s", size}, {"memory_bytes", std::round(size * 1000)}}});
      }
    inst.layers.push_back(layer);
  }
  inst.budgets = {{"decode_s", 8.0}, {"memory_bytes", 9000}};
  const Outcome exact = run(kProviders[0], to_json(inst));
  ASSERT_TRUE(exact.ok) << exact.error;
  const double optimum = exact.solution["objective"];
  const Outcome lagrangian = run(kProviders[3], to_json(inst));
  ASSERT_TRUE(lagrangian.ok) << lagrangian.error;
  EXPECT_LE(lagrangian.solution["lower_bound"].get<double>(), optimum + 1e-9);
  EXPECT_GE(lagrangian.solution["objective"].get<double>(), optimum - 1e-9);
  EXPECT_NEAR(lagrangian.solution["gap"].get<double>(),
              lagrangian.solution["objective"].get<double>() -
                  lagrangian.solution["lower_bound"].get<double>(),
              1e-12);
  const Outcome greedy = run(kProviders[2], to_json(inst));
  ASSERT_TRUE(greedy.ok) << greedy.error;
  EXPECT_EQ(greedy.solution["status"], "feasible");
  EXPECT_GT(greedy.solution["moves"].get<int64_t>(), 0);
  EXPECT_GE(greedy.solution["objective"].get<double>(), optimum - 1e-9);
}

TEST(SearchProviders, GreedySaysSoWhenItIsStuck) {
  // From a+f (12, 12: both budgets 20% over) every single replacement trades one budget's
  // excess for a larger one in the other; b+h (or c+g) fits. Greedy stops, without a proof.
  const json problem = json::parse(R"({
    "problem": "puzzle.block_selection",
    "budgets": {"memory_bytes": 10, "latency_s": 10},
    "layers": [
      {"attention": [{"name": "a", "score": 0, "memory_bytes": 6, "latency_s": 6},
                     {"name": "b", "score": 1, "memory_bytes": 0, "latency_s": 9},
                     {"name": "c", "score": 1, "memory_bytes": 9, "latency_s": 0}],
       "ffn": [{"name": "f", "score": 0, "memory_bytes": 6, "latency_s": 6},
               {"name": "g", "score": 1, "memory_bytes": 0, "latency_s": 9},
               {"name": "h", "score": 1, "memory_bytes": 9, "latency_s": 0}]}
    ]})");
  const Outcome greedy = run(kProviders[2], problem);
  ASSERT_TRUE(greedy.ok) << greedy.error;
  EXPECT_EQ(greedy.solution["status"], "infeasible");
  EXPECT_EQ(greedy.solution["proven"], false);
  EXPECT_EQ(greedy.solution["reason"],
            "greedy stopped after 0 replacements with latency_s at 12 (limit 10) and "
            "memory_bytes at 12 (limit 10): no single replacement lowers the excess. This does "
            "not prove that no choice fits; the exact and mip providers decide");
  for (const Provider* p : {&kProviders[0], &kProviders[3]}) {
    const Outcome out = run(*p, problem);
    ASSERT_TRUE(out.ok) << out.error;
    // lagrangian finds it (repairing a relaxed minimiser) but its bound stays below.
    EXPECT_EQ(out.solution["status"], p->exact ? "optimal" : "feasible") << p->name;
    EXPECT_EQ(out.solution["objective"], 2.0) << p->name;
  }
}

INSTANTIATE_TEST_SUITE_P(Search, Providers, ::testing::ValuesIn(kProviders),
                         [](const ::testing::TestParamInfo<Provider>& param) {
                           return std::string(param.param.name);
                         });

}  // namespace
