// The search suite: a search provider, through the host's wrapper (Search), on small random
// "puzzle.block_selection" problems (docs/search.md) against brute force: 2 to 4 layers of 2
// to 4 attention and FFN variants, random scores and costs, budgets between the cheapest
// choice and the unconstrained optimum's cost, so that they bind; then problems with named
// costs under "costs" and a diversity constraint. A solution that says "optimal" must be
// optimal (its objective within 1e-9 of the brute force's); one that says "feasible" (a
// heuristic's) must fit and may be worse; every solution must be self-consistent. Problems
// nothing fits must be reported as "infeasible" with a reason; a heuristic may also answer
// "infeasible" where something fits, but only with "proven": false. Malformed documents
// must be refused with an error. A provider that does not solve block_selection gets the
// document checks only.
#include <tessera/engine/error.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/search.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "conformance.hpp"

namespace tessera::cli {
namespace {

using nlohmann::json;

constexpr const char* kBlockSelection = "puzzle.block_selection";
constexpr double kObjectiveTolerance = 1e-9;
constexpr double kBudgetSlack = 1e-12;  // docs/search.md: a total may exceed a budget by this

struct Variant {
  std::string name;
  double score = 0, memory = 0, latency = 0;
};

struct Layer {
  std::vector<Variant> attention, ffn;
};

struct Problem {
  std::vector<Layer> layers;
  std::optional<double> memory_budget, latency_budget;
};

json to_json(const Problem& p) {
  json doc = {{"problem", kBlockSelection}, {"layers", json::array()}};
  const auto variants = [](const std::vector<Variant>& list) {
    json out = json::array();
    for (const Variant& v : list)
      out.push_back({{"name", v.name},
                     {"score", v.score},
                     {"memory_bytes", v.memory},
                     {"latency_s", v.latency}});
    return out;
  };
  for (const Layer& l : p.layers)
    doc["layers"].push_back({{"attention", variants(l.attention)}, {"ffn", variants(l.ffn)}});
  if (p.memory_budget || p.latency_budget) {
    doc["budgets"] = json::object();
    if (p.memory_budget) doc["budgets"]["memory_bytes"] = *p.memory_budget;
    if (p.latency_budget) doc["budgets"]["latency_s"] = *p.latency_budget;
  }
  return doc;
}

bool fits(double total, const std::optional<double>& budget) {
  return !budget || total <= *budget + kBudgetSlack * std::max(1.0, *budget);
}

struct Totals {
  double score = 0, memory = 0, latency = 0;
};

// Calls f(totals) for every choice of one attention and one FFN variant per layer.
template <class F>
void for_each_choice(const Problem& p, F&& f) {
  std::vector<size_t> pick(p.layers.size(), 0);
  while (true) {
    Totals t;
    for (size_t l = 0; l < p.layers.size(); ++l) {
      const Layer& layer = p.layers[l];
      const Variant& a = layer.attention[pick[l] / layer.ffn.size()];
      const Variant& f2 = layer.ffn[pick[l] % layer.ffn.size()];
      t.score += a.score + f2.score;
      t.memory += a.memory + f2.memory;
      t.latency += a.latency + f2.latency;
    }
    f(t);
    size_t l = 0;
    for (; l < p.layers.size(); ++l) {
      if (++pick[l] < p.layers[l].attention.size() * p.layers[l].ffn.size()) break;
      pick[l] = 0;
    }
    if (l == p.layers.size()) return;
  }
}

// The least summed score within the budgets; nullopt when nothing fits.
std::optional<double> brute_force(const Problem& p) {
  std::optional<double> best;
  for_each_choice(p, [&](const Totals& t) {
    if (fits(t.memory, p.memory_budget) && fits(t.latency, p.latency_budget) &&
        (!best || t.score < *best))
      best = t.score;
  });
  return best;
}

// Budgets: 0 none, 1 memory, 2 latency, 3 both.
Problem random_problem(Rng& rng, int32_t layers, int32_t budgets) {
  Problem p;
  const auto count = [&] { return 2 + static_cast<int32_t>(rng.uniform() * 3.0f) % 3; };
  const auto variant = [&](const std::string& name) {
    return Variant{name, rng.uniform() * 1.2 - 0.2, std::floor(rng.uniform() * 1e6),
                   rng.uniform() * 1e-3};
  };
  for (int32_t l = 0; l < layers; ++l) {
    Layer layer;
    for (int32_t a = 0, n = count(); a < n; ++a)
      layer.attention.push_back(variant("attn" + std::to_string(a)));
    for (int32_t f = 0, n = count(); f < n; ++f)
      layer.ffn.push_back(variant("ffn" + std::to_string(f)));
    p.layers.push_back(std::move(layer));
  }
  // Budgets between the cheapest total and the cost of the unconstrained optimum.
  Totals cheapest{0, INFINITY, INFINITY}, best{INFINITY, 0, 0};
  for_each_choice(p, [&](const Totals& t) {
    cheapest.memory = std::min(cheapest.memory, t.memory);
    cheapest.latency = std::min(cheapest.latency, t.latency);
    if (t.score < best.score) best = t;
  });
  const double u = 0.3 + 0.6 * rng.uniform();
  if (budgets & 1)
    p.memory_budget = std::floor(cheapest.memory + u * (best.memory - cheapest.memory));
  if (budgets & 2) p.latency_budget = cheapest.latency + u * (best.latency - cheapest.latency);
  return p;
}

const Variant& find_variant(const std::vector<Variant>& list, const json& name,
                            const std::string& where) {
  if (!name.is_string()) throw Error(where + " is not a variant name");
  for (const Variant& v : list)
    if (v.name == name.get<std::string>()) return v;
  throw Error(where + " names '" + name.get<std::string>() + "', which is not a variant");
}

double number(const json& doc, const char* key, const std::string& where) {
  const auto it = doc.find(key);
  if (it == doc.end() || !it->is_number()) throw Error(where + " has no number '" + key + "'");
  return it->get<double>();
}

json parse_solution(const std::string& text) {
  try {
    json doc = json::parse(text);
    if (!doc.is_object()) throw Error("the solution is not a JSON object: " + text.substr(0, 200));
    return doc;
  } catch (const json::parse_error& e) {
    throw Error(std::string("the solution is not valid JSON: ") + e.what());
  }
}

// A heuristic's "infeasible" where brute force found a choice: allowed when it does not
// claim a proof. Throws otherwise.
void check_unproven(const json& solution, double optimum, const std::string& where) {
  if (solution.value("proven", true))
    throw Error(where + ": status is infeasible (proven), but brute force found " +
                std::to_string(optimum));
  const auto reason = solution.find("reason");
  if (reason == solution.end() || !reason->is_string() || reason->get<std::string>().empty())
    throw Error(where + ": an infeasible solution without a reason");
}

// Checks one solution of p against the brute force; returns |objective - optimum| when the
// solution claims optimality, 0 for a heuristic's answer (which must fit and be no better
// than the optimum).
double check_solution(const Problem& p, const json& solution, double optimum,
                      const std::string& where) {
  const std::string status = solution.value("status", std::string("missing"));
  if (status == "infeasible") {
    check_unproven(solution, optimum, where);
    return 0;
  }
  if (status != "optimal" && status != "feasible")
    throw Error(where + ": status is " + status +
                ", expected optimal or feasible (brute force: " + std::to_string(optimum) + ")");
  const auto layers = solution.find("layers");
  if (layers == solution.end() || !layers->is_array() || layers->size() != p.layers.size())
    throw Error(where + ": the solution's layers are not one entry per layer");
  Totals t;
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const json& chosen = (*layers)[l];
    const std::string at = where + ": layers[" + std::to_string(l) + "]";
    if (!chosen.is_object()) throw Error(at + " is not an object");
    const Variant& a =
        find_variant(p.layers[l].attention, chosen.value("attention", json()), at + ".attention");
    const Variant& f = find_variant(p.layers[l].ffn, chosen.value("ffn", json()), at + ".ffn");
    t.score += a.score + f.score;
    t.memory += a.memory + f.memory;
    t.latency += a.latency + f.latency;
  }
  if (!fits(t.memory, p.memory_budget) || !fits(t.latency, p.latency_budget)) {
    std::ostringstream m;
    m.precision(17);
    m << where << ": the choice needs memory_bytes " << t.memory << " and latency_s " << t.latency
      << ", over the budgets";
    throw Error(m.str());
  }
  const double objective = number(solution, "objective", where);
  if (std::fabs(objective - t.score) > kObjectiveTolerance)
    throw Error(where + ": objective " + std::to_string(objective) +
                " is not the summed score of the choice, " + std::to_string(t.score));
  if (status == "feasible") {
    if (t.score < optimum - kObjectiveTolerance)
      throw Error(where + ": objective " + std::to_string(t.score) +
                  " is below the brute force's optimum " + std::to_string(optimum));
    return 0;
  }
  return std::fabs(t.score - optimum);
}

// ------------------------------------------- named costs and diversity

// A problem whose costs are named under "costs" (decode_s, prefill_s), with budgets on both
// and, against one earlier choice, at most max_common sub-blocks in common.
struct NamedProblem {
  json doc;
  std::vector<std::array<std::vector<std::array<double, 3>>, 2>> layers;  // score, decode, prefill
  double decode_budget = 0, prefill_budget = 0;
  std::vector<std::array<size_t, 2>> earlier;
  int64_t max_common = 0;
};

NamedProblem random_named_problem(Rng& rng, int32_t layers) {
  NamedProblem p;
  p.doc = {{"problem", kBlockSelection}, {"layers", json::array()}};
  double decode_low = 0, decode_high = 0, prefill_low = 0, prefill_high = 0;
  for (int32_t l = 0; l < layers; ++l) {
    std::array<std::vector<std::array<double, 3>>, 2> layer;
    json entry;
    for (int k = 0; k < 2; ++k) {
      const int32_t count = 2 + static_cast<int32_t>(rng.uniform() * 2.0f) % 2;
      json list = json::array();
      double dl = INFINITY, dh = 0, pl = INFINITY, ph = 0;
      for (int32_t v = 0; v < count; ++v) {
        const std::array<double, 3> x = {rng.uniform(), rng.uniform() * 1e-3, rng.uniform() * 1e-2};
        layer[k].push_back(x);
        list.push_back({{"name", "v" + std::to_string(v)},
                        {"score", x[0]},
                        {"costs", {{"decode_s", x[1]}, {"prefill_s", x[2]}}}});
        dl = std::min(dl, x[1]);
        dh = std::max(dh, x[1]);
        pl = std::min(pl, x[2]);
        ph = std::max(ph, x[2]);
      }
      decode_low += dl;
      decode_high += dh;
      prefill_low += pl;
      prefill_high += ph;
      entry[k == 0 ? "attention" : "ffn"] = list;
    }
    p.layers.push_back(std::move(layer));
    p.doc["layers"].push_back(entry);
  }
  p.decode_budget = decode_low + (0.2 + 0.6 * rng.uniform()) * (decode_high - decode_low);
  p.prefill_budget = prefill_low + (0.2 + 0.6 * rng.uniform()) * (prefill_high - prefill_low);
  p.doc["budgets"] = {{"decode_s", p.decode_budget}, {"prefill_s", p.prefill_budget}};
  json earlier = json::array();
  for (int32_t l = 0; l < layers; ++l) {
    std::array<size_t, 2> pick{};
    for (int k = 0; k < 2; ++k)
      pick[k] = static_cast<size_t>(rng.uniform() * static_cast<float>(p.layers[l][k].size())) %
                p.layers[l][k].size();
    p.earlier.push_back(pick);
    earlier.push_back(
        {{"attention", "v" + std::to_string(pick[0])}, {"ffn", "v" + std::to_string(pick[1])}});
  }
  p.max_common = static_cast<int64_t>(rng.uniform() * static_cast<float>(layers));
  p.doc["diversity"] = {{"max_common", p.max_common}, {"solutions", json::array({earlier})}};
  return p;
}

// Per choice (variant indices per layer): summed score, decode, prefill and common count.
template <class F>
void for_each_named_choice(const NamedProblem& p, F&& f) {
  std::vector<std::array<size_t, 2>> pick(p.layers.size(), {0, 0});
  while (true) {
    std::array<double, 3> t{};
    int64_t common = 0;
    for (size_t l = 0; l < p.layers.size(); ++l)
      for (int k = 0; k < 2; ++k) {
        for (int i = 0; i < 3; ++i) t[i] += p.layers[l][k][pick[l][k]][i];
        common += pick[l][k] == p.earlier[l][k] ? 1 : 0;
      }
    f(pick, t, common);
    size_t l = 0;
    for (; l < p.layers.size(); ++l) {
      if (++pick[l][0] < p.layers[l][0].size()) break;
      pick[l][0] = 0;
      if (++pick[l][1] < p.layers[l][1].size()) break;
      pick[l][1] = 0;
    }
    if (l == p.layers.size()) return;
  }
}

bool named_fits(const NamedProblem& p, const std::array<double, 3>& t, int64_t common) {
  return fits(t[1], p.decode_budget) && fits(t[2], p.prefill_budget) && common <= p.max_common;
}

// Checks a solution of a named problem; returns the gap to the optimum as check_solution.
double check_named_solution(const NamedProblem& p, const json& solution,
                            std::optional<double> optimum, const std::string& where) {
  const std::string status = solution.value("status", std::string("missing"));
  if (!optimum) {
    if (status != "infeasible")
      throw Error(where + ": no choice fits, but the status is " + status);
    return 0;
  }
  if (status == "infeasible") {
    check_unproven(solution, *optimum, where);
    return 0;
  }
  if (status != "optimal" && status != "feasible")
    throw Error(where + ": status is " + status + ", expected optimal or feasible");
  const auto layers = solution.find("layers");
  if (layers == solution.end() || !layers->is_array() || layers->size() != p.layers.size())
    throw Error(where + ": the solution's layers are not one entry per layer");
  std::array<double, 3> t{};
  int64_t common = 0;
  for (size_t l = 0; l < p.layers.size(); ++l)
    for (int k = 0; k < 2; ++k) {
      const json name = (*layers)[l].value(k == 0 ? "attention" : "ffn", json());
      size_t index = p.layers[l][k].size();
      for (size_t v = 0; v < p.layers[l][k].size(); ++v)
        if (name == "v" + std::to_string(v)) index = v;
      if (index == p.layers[l][k].size())
        throw Error(where + ": layers[" + std::to_string(l) + "] names an unknown variant");
      for (int i = 0; i < 3; ++i) t[i] += p.layers[l][k][index][i];
      common += index == p.earlier[l][k] ? 1 : 0;
    }
  if (!named_fits(p, t, common))
    throw Error(where + ": the choice exceeds a budget or has " + std::to_string(common) +
                " sub-blocks in common with the earlier solution (max_common " +
                std::to_string(p.max_common) + ")");
  if (std::fabs(number(solution, "objective", where) - t[0]) > kObjectiveTolerance)
    throw Error(where + ": the objective is not the summed score of the choice");
  if (status == "feasible") {
    if (t[0] < *optimum - kObjectiveTolerance)
      throw Error(where + ": objective below the brute force's optimum");
    return 0;
  }
  return std::fabs(t[0] - *optimum);
}

template <class F>
CaseResult yes_no(std::string name, F&& body) {
  CaseResult r;
  r.name = std::move(name);
  r.measured = false;
  try {
    body();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.passed = r.error.empty();
  return r;
}

// solve must refuse `text` with an error (TS_ERROR) and a message.
void expect_refused(const Search& search, const std::string& text) {
  try {
    const std::string solution = search.solve(text);
    throw Error("solve accepted it and returned " + solution.substr(0, 200));
  } catch (const PluginUnsupported& e) {
    throw Error(std::string("solve said unsupported, expected an error: ") + e.what());
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.rfind("solve accepted", 0) == 0) throw;
    if (message.find("the plugin reported no message") != std::string::npos)
      throw Error("solve refused it without a message");
  }
}

}  // namespace

void check_search(const ProviderRef& provider, const ConformanceOptions& options,
                  ConformanceReport& report) {
  const std::string label = std::string("search ") + provider.provider->name;
  std::unique_ptr<Search> search;
  report.cases.push_back(yes_no(label + " creates without parameters", [&] {
    search = std::make_unique<Search>(provider, ParamList(), nullptr, label);
  }));
  if (search == nullptr) return;

  // Documents every search provider must refuse.
  const std::pair<const char*, const char*> generic[] = {
      {"text that is not JSON", "{\"problem\": "},
      {"a document that is not an object", "[1, 2, 3]"},
      {"a document without a problem field", "{\"layers\": []}"},
      {"an unknown problem type", "{\"problem\": \"no.such.problem\"}"},
  };
  for (const auto& [what, text] : generic)
    report.cases.push_back(yes_no(label + " refuses " + what,
                                  [&, t = std::string(text)] { expect_refused(*search, t); }));

  // Does it solve block_selection at all?
  Rng rng(2024);
  const Problem probe = random_problem(rng, 2, 0);
  try {
    parse_solution(search->solve(to_json(probe).dump()));
  } catch (const std::exception& e) {
    const std::string message = e.what();
    if (dynamic_cast<const PluginUnsupported*>(&e) != nullptr ||
        message.find("unknown problem type") != std::string::npos) {
      report.skipped.push_back(label + ": does not solve " + kBlockSelection + " (" + message +
                               "); its checks do not apply");
      return;
    }
  }

  // Optimal solutions against brute force.
  const char* budget_names[] = {"no budget", "memory budget", "latency budget", "both budgets"};
  const int32_t per_case = options.quick ? 2 : 5;
  for (int32_t layers = 2; layers <= 4; ++layers)
    for (int32_t budgets = 0; budgets < 4; ++budgets) {
      CaseResult r;
      std::ostringstream name;
      name << label << " " << kBlockSelection << " layers=" << layers << " "
           << budget_names[budgets] << ": " << per_case << " random problems against brute force";
      r.name = name.str();
      r.tolerance = kObjectiveTolerance;
      try {
        for (int32_t i = 0; i < per_case; ++i) {
          const Problem p = random_problem(rng, layers, budgets);
          const std::optional<double> optimum = brute_force(p);
          const json solution = parse_solution(search->solve(to_json(p).dump()));
          const std::string where = "problem " + std::to_string(i);
          if (!optimum) {
            if (solution.value("status", "") != "infeasible")
              throw Error(where + ": no choice fits, but the status is " +
                          solution.value("status", std::string("missing")));
            continue;
          }
          r.max_abs = std::max(r.max_abs, check_solution(p, solution, *optimum, where));
        }
      } catch (const std::exception& e) {
        r.error = e.what();
      }
      r.max_rel = r.max_abs;  // scores are O(1): the absolute difference
      r.passed = r.error.empty() && r.max_abs <= r.tolerance;
      report.cases.push_back(r);
    }

  // Named costs and diversity against brute force.
  for (int32_t layers = 2; layers <= 4; ++layers) {
    CaseResult r;
    std::ostringstream name;
    name << label << " " << kBlockSelection << " layers=" << layers
         << " named costs and diversity: " << per_case << " random problems against brute force";
    r.name = name.str();
    r.tolerance = kObjectiveTolerance;
    try {
      for (int32_t i = 0; i < per_case; ++i) {
        const NamedProblem p = random_named_problem(rng, layers);
        std::optional<double> optimum;
        for_each_named_choice(p, [&](const auto&, const std::array<double, 3>& t, int64_t common) {
          if (named_fits(p, t, common) && (!optimum || t[0] < *optimum)) optimum = t[0];
        });
        const json solution = parse_solution(search->solve(p.doc.dump()));
        r.max_abs = std::max(
            r.max_abs, check_named_solution(p, solution, optimum, "problem " + std::to_string(i)));
      }
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    r.max_rel = r.max_abs;
    r.passed = r.error.empty() && r.max_abs <= r.tolerance;
    report.cases.push_back(r);
  }

  report.cases.push_back(yes_no(label + " reports budgets nothing fits as infeasible", [&] {
    std::vector<Problem> problems;
    for (int32_t budgets = 1; budgets < 4; ++budgets) {
      Problem p = random_problem(rng, 3, budgets);
      // Half of the cheapest choice's cost.
      double memory = INFINITY, latency = INFINITY;
      for_each_choice(p, [&](const Totals& t) {
        memory = std::min(memory, t.memory);
        latency = std::min(latency, t.latency);
      });
      if (p.memory_budget) p.memory_budget = std::floor(memory / 2);
      if (p.latency_budget) p.latency_budget = latency / 2;
      problems.push_back(std::move(p));
    }
    // Two budgets that each fit alone but not together: every variant pair of a layer is
    // cheap in one cost and dear in the other.
    Problem both;
    for (int32_t l = 0; l < 2; ++l)
      both.layers.push_back(Layer{{{"a", 0.1, 0, 10}, {"b", 0.2, 10, 0}}, {{"f", 0.0, 0, 0}}});
    both.memory_budget = 5;
    both.latency_budget = 5;
    problems.push_back(both);
    for (size_t i = 0; i < problems.size(); ++i) {
      if (brute_force(problems[i])) throw Error("internal: problem " + std::to_string(i) + " fits");
      const json solution = parse_solution(search->solve(to_json(problems[i]).dump()));
      const std::string where = "problem " + std::to_string(i);
      if (solution.value("status", "") != "infeasible")
        throw Error(where + ": no choice fits, but the status is " +
                    solution.value("status", std::string("missing")));
      const auto reason = solution.find("reason");
      if (reason == solution.end() || !reason->is_string() || reason->get<std::string>().empty())
        throw Error(where + ": an infeasible solution without a reason");
    }
  }));

  // Malformed block_selection documents.
  const json valid = to_json(probe);
  const auto spoiled = [&](const std::function<void(json&)>& spoil) {
    json doc = valid;
    spoil(doc);
    return doc.dump();
  };
  const std::pair<std::string, std::string> malformed[] = {
      {"no layers", spoiled([](json& d) { d.erase("layers"); })},
      {"an empty list of variants",
       spoiled([](json& d) { d["layers"][0]["ffn"] = json::array(); })},
      {"a negative cost", spoiled([](json& d) { d["layers"][0]["ffn"][0]["memory_bytes"] = -5; })},
      {"a score that is not a number",
       spoiled([](json& d) { d["layers"][1]["attention"][0]["score"] = "low"; })},
      {"a repeated variant name", spoiled([](json& d) {
         d["layers"][0]["attention"][1]["name"] = d["layers"][0]["attention"][0]["name"];
       })},
      {"an unknown budget", spoiled([](json& d) {
         d["budgets"] = {{"memory", 5}};
       })},
      {"a missing cost under a budget", spoiled([](json& d) {
         d["budgets"] = {{"latency_s", 1.0}};
         d["layers"][0]["attention"][0].erase("latency_s");
       })},
      {"a named cost that is negative", spoiled([](json& d) {
         d["layers"][0]["ffn"][0]["costs"] = {{"decode_s", -1}};
       })},
      {"a diversity solution naming an unknown variant", spoiled([](json& d) {
         json earlier = json::array();
         for (size_t l = 0; l < d["layers"].size(); ++l)
           earlier.push_back({{"attention", "no-such-variant"}, {"ffn", "ffn0"}});
         d["diversity"] = {{"max_common", 1}, {"solutions", json::array({earlier})}};
       })},
      {"a diversity solution of the wrong length", spoiled([](json& d) {
         json entry = {{"attention", "attn0"}, {"ffn", "ffn0"}};
         json earlier = json::array();
         earlier.push_back(entry);  // one entry, for two layers
         json solutions = json::array();
         solutions.push_back(earlier);
         d["diversity"] = {{"max_common", 1}, {"solutions", solutions}};
       })},
  };
  for (const auto& [what, text] : malformed)
    report.cases.push_back(yes_no(label + " " + kBlockSelection + " refuses " + what,
                                  [&, t = text] { expect_refused(*search, t); }));
}

}  // namespace tessera::cli
