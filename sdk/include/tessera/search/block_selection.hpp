// "puzzle.block_selection" documents for search plugins (docs/search.md): reading and checking
// the problem, the constraints every solver must meet, evaluating a choice, the solution
// documents, and the reasons given when nothing fits. Every search provider of this tree
// solves the problem through these, so they accept and refuse the same documents with the
// same messages and report solutions the same way.
//
// Header-only; needs nlohmann-json (3.x) besides the C++ standard library, so a plugin that
// includes it links nlohmann_json::nlohmann_json.
#pragma once

#include <tessera/plugin.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::sdk::block_selection {

inline constexpr const char* kProblemType = "puzzle.block_selection";
// A total that exceeds a budget by less than this fraction (of max(1, budget)) still fits:
// the same costs summed in another order must not flip a choice from feasible to infeasible.
inline constexpr double kBudgetSlack = 1e-12;

// ------------------------------------------------------------------ formatting

// Twelve significant digits: 0.0123 prints as 0.0123, 250000000 as 250000000.
inline std::string format_number(double value) {
  std::ostringstream out;
  out.precision(12);
  out << value;
  return out.str();
}

// "a", "a and b", "a, b and c".
inline std::string join_and(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " and " : ", ";
    out += items[i];
  }
  return out;
}

// ------------------------------------------------------------------ the provider's front

// Reads a problem document: valid JSON, an object, with a string field "problem". `who`
// prefixes every message ("search-exact"). Throws std::invalid_argument.
inline nlohmann::json read_document(std::string_view text, const std::string& who) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(who + ": the problem is not valid JSON: " + e.what());
  }
  if (!doc.is_object())
    throw std::invalid_argument(who + ": the problem document is a JSON " + doc.type_name() +
                                ", expected an object");
  const auto kind = doc.find("problem");
  if (kind == doc.end() || !kind->is_string())
    throw std::invalid_argument(who +
                                ": the problem document needs a string field \"problem\" naming "
                                "its type; known problem types: " +
                                kProblemType);
  const std::string type = kind->get<std::string>();
  if (type != kProblemType)
    throw std::invalid_argument(who + ": unknown problem type '" + type +
                                "'; known problem types: " + kProblemType);
  return doc;
}

// Refuses parameters not in `accepted` (a misspelt parameter must not be ignored).
inline void check_parameter_names(const ts_params& params, const std::string& who,
                                  std::initializer_list<const char*> accepted) {
  std::string list;
  for (const char* name : accepted) list += std::string(list.empty() ? "" : ", ") + name;
  for (int32_t i = 0; i < params.count; ++i) {
    const std::string name = params.items[i].key != nullptr ? params.items[i].key : "";
    if (std::find(accepted.begin(), accepted.end(), name) == accepted.end())
      throw std::invalid_argument(
          who + ": unknown parameter '" + name + "'; " +
          (list.empty() ? "it accepts no parameters" : "accepted parameters: " + list));
  }
}

// An integer parameter >= `least` (`fallback` when absent).
inline int64_t int_parameter(const ts_params& params, const std::string& who, const char* key,
                             int64_t fallback, int64_t least) {
  const Params p(params);
  int64_t value = fallback;
  try {
    value = p.get_int(key, fallback);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(who + ": " + e.what());
  }
  if (value < least)
    throw std::invalid_argument(who + ": parameter '" + key + "' is " + std::to_string(value) +
                                ", expected an integer >= " + std::to_string(least));
  return value;
}

// ------------------------------------------------------------------ the problem

struct Variant {
  std::string name;
  double score = 0;
  std::vector<double> cost;             // one per budget, in Problem::budgets' order
  std::map<std::string, double> costs;  // every cost the variant gives, by name
};

struct Layer {
  std::array<std::vector<Variant>, 2> lists;  // [0] attention, [1] ffn
};

inline constexpr const char* kListNames[2] = {"attention", "ffn"};

struct Budget {
  std::string name;  // a cost name: memory_bytes, latency_s, decode_s, ...
  double limit = 0;
};

struct Diversity {
  int64_t max_common = 0;
  // Per earlier solution, per layer: the index of its attention and its FFN variant.
  std::vector<std::vector<std::array<int32_t, 2>>> solutions;
};

struct Problem {
  std::vector<Budget> budgets;  // by name, in the order of their names
  std::vector<Layer> layers;
  std::optional<Diversity> diversity;
};

// Per layer: the index of the chosen attention variant and of the chosen FFN variant.
using Choice = std::vector<std::array<int32_t, 2>>;

namespace detail {

inline std::string where(const std::string& who, const std::string& path) {
  return who + ": " + kProblemType + ": " + path;
}

inline double read_number(const nlohmann::json& value, const std::string& who,
                          const std::string& path, bool non_negative) {
  if (!value.is_number())
    throw std::invalid_argument(where(who, path) + " is a " + value.type_name() +
                                ", expected a number" + (non_negative ? " >= 0" : ""));
  const double x = value.get<double>();
  if (!std::isfinite(x))
    throw std::invalid_argument(where(who, path) + " is " + format_number(x) +
                                ", expected a finite number");
  if (non_negative && x < 0)
    throw std::invalid_argument(where(who, path) + " is " + format_number(x) +
                                ", expected a number >= 0");
  return x;
}

// "runtime" is another name of "latency_s".
inline std::string canonical_cost(const std::string& name) {
  return name == "runtime" ? "latency_s" : name;
}

// Reads the costs a variant gives as its own fields (memory_bytes, latency_s or runtime) and
// in its "costs" object. Returns name -> (value, the JSON path it came from).
inline std::map<std::string, std::pair<double, std::string>> read_costs(
    const nlohmann::json& object, const std::string& who, const std::string& path) {
  std::map<std::string, std::pair<double, std::string>> out;
  const auto add = [&](const std::string& given, const nlohmann::json& value,
                       const std::string& value_path) {
    if (given.empty())
      throw std::invalid_argument(where(who, value_path) + " has an empty cost name");
    if (given == "score")
      throw std::invalid_argument(where(who, value_path) +
                                  ": score is the objective, not a cost; name the cost otherwise");
    const std::string name = canonical_cost(given);
    const double x = read_number(value, who, value_path, true);
    const auto [it, fresh] = out.try_emplace(name, x, value_path);
    if (!fresh)
      throw std::invalid_argument(where(who, value_path) + " repeats " + it->second.second +
                                  (given == "runtime" || it->second.second.ends_with("runtime")
                                       ? ": latency_s and runtime name the same cost"
                                       : "") +
                                  "; give each cost once");
  };
  for (const char* key : {"memory_bytes", "latency_s", "runtime"})
    if (const auto it = object.find(key); it != object.end()) add(key, *it, path + "." + key);
  if (const auto nested = object.find("costs"); nested != object.end()) {
    if (!nested->is_object())
      throw std::invalid_argument(where(who, path + ".costs") + " is a " + nested->type_name() +
                                  ", expected an object {NAME: number >= 0, ...}");
    for (const auto& [key, value] : nested->items()) add(key, value, path + ".costs." + key);
  }
  return out;
}

inline std::vector<Variant> read_variants(const nlohmann::json& layer, int list_index,
                                          const std::string& layer_path, const Problem& problem,
                                          const std::string& who) {
  const char* key = kListNames[list_index];
  const std::string path = layer_path + "." + key;
  const auto list = layer.find(key);
  if (list == layer.end())
    throw std::invalid_argument(where(who, path) +
                                " is missing, expected a non-empty array of variants");
  if (!list->is_array() || list->empty())
    throw std::invalid_argument(
        where(who, path) + " is " +
        (list->is_array() ? std::string("empty") : "a " + std::string(list->type_name())) +
        ", expected a non-empty array of variants");
  std::vector<Variant> variants;
  for (size_t i = 0; i < list->size(); ++i) {
    const nlohmann::json& item = (*list)[i];
    const std::string item_path = path + "[" + std::to_string(i) + "]";
    if (!item.is_object())
      throw std::invalid_argument(where(who, item_path) + " is a " + item.type_name() +
                                  ", expected an object {name, score, costs}");
    Variant v;
    const auto name = item.find("name");
    if (name == item.end() || !name->is_string() || name->get<std::string>().empty())
      throw std::invalid_argument(
          where(who, item_path + ".name") +
          (name == item.end() ? " is missing" : " is not a non-empty string") +
          ", expected the variant's name");
    v.name = name->get<std::string>();
    for (size_t j = 0; j < variants.size(); ++j)
      if (variants[j].name == v.name)
        throw std::invalid_argument(where(who, item_path + ".name") + " '" + v.name + "' repeats " +
                                    path + "[" + std::to_string(j) +
                                    "].name; names must be unique within a list");
    const auto score = item.find("score");
    if (score == item.end())
      throw std::invalid_argument(where(who, item_path + ".score") +
                                  " is missing, expected the variant's quality loss");
    v.score = read_number(*score, who, item_path + ".score", false);
    const auto given = read_costs(item, who, item_path);
    for (const auto& [cost_name, value] : given) v.costs[cost_name] = value.first;
    for (const Budget& budget : problem.budgets) {
      const auto it = given.find(budget.name);
      if (it != given.end()) {
        v.cost.push_back(it->second.first);
        continue;
      }
      const bool own_field = budget.name == "memory_bytes" || budget.name == "latency_s";
      std::string message = where(who, item_path + (own_field ? "." : ".costs.") + budget.name) +
                            " is missing, expected a number >= 0 (budgets." + budget.name +
                            " is set";
      if (!given.empty()) {
        std::vector<std::string> names;
        names.reserve(given.size());
        for (const auto& entry : given) names.push_back(entry.first);
        message += "; this variant's costs are " + join_and(names);
      }
      throw std::invalid_argument(message + ")");
    }
    variants.push_back(std::move(v));
  }
  return variants;
}

inline std::string variant_names(const std::vector<Variant>& list) {
  std::vector<std::string> names;
  names.reserve(list.size());
  for (const Variant& v : list) names.push_back(v.name);
  return join_and(names);
}

inline Diversity read_diversity(const nlohmann::json& doc, const std::vector<Layer>& layers,
                                const std::string& who) {
  if (!doc.is_object())
    throw std::invalid_argument(where(who, "diversity") + " is a " + doc.type_name() +
                                ", expected an object {max_common, solutions}");
  for (const auto& [key, value] : doc.items())
    if (key != "max_common" && key != "solutions")
      throw std::invalid_argument(where(who, "diversity." + key) +
                                  " is not a known field; expected max_common, solutions");
  Diversity diversity;
  const auto max_common = doc.find("max_common");
  const std::string expected_count = ", expected an integer >= 0 (sub-blocks in common)";
  if (max_common == doc.end())
    throw std::invalid_argument(where(who, "diversity.max_common") + " is missing" +
                                expected_count);
  if (max_common->is_number()) {
    const double x = max_common->get<double>();
    if (!std::isfinite(x) || x < 0 || x != std::floor(x) || x > 1e15)
      throw std::invalid_argument(where(who, "diversity.max_common") + " is " + format_number(x) +
                                  expected_count);
    diversity.max_common = static_cast<int64_t>(x);
  } else {
    throw std::invalid_argument(where(who, "diversity.max_common") + " is a " +
                                max_common->type_name() + expected_count);
  }
  const auto solutions = doc.find("solutions");
  if (solutions == doc.end() || !solutions->is_array())
    throw std::invalid_argument(
        where(who, "diversity.solutions") +
        (solutions == doc.end() ? std::string(" is missing")
                                : " is a " + std::string(solutions->type_name())) +
        ", expected an array of earlier solutions, each one {attention, ffn} per layer");
  for (size_t s = 0; s < solutions->size(); ++s) {
    const nlohmann::json& solution = (*solutions)[s];
    const std::string path = "diversity.solutions[" + std::to_string(s) + "]";
    if (!solution.is_array())
      throw std::invalid_argument(where(who, path) + " is a " + solution.type_name() +
                                  ", expected an array of {attention, ffn}, one per layer");
    if (solution.size() != layers.size())
      throw std::invalid_argument(where(who, path) + " has " + std::to_string(solution.size()) +
                                  " entries, expected one per layer (" +
                                  std::to_string(layers.size()) + ")");
    std::vector<std::array<int32_t, 2>> picks(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      const nlohmann::json& entry = solution[l];
      const std::string entry_path = path + "[" + std::to_string(l) + "]";
      if (!entry.is_object())
        throw std::invalid_argument(where(who, entry_path) + " is a " + entry.type_name() +
                                    ", expected an object {attention, ffn}");
      for (const auto& [key, value] : entry.items())
        if (key != "attention" && key != "ffn")
          throw std::invalid_argument(where(who, entry_path + "." + key) +
                                      " is not a known field; expected attention, ffn");
      for (int k = 0; k < 2; ++k) {
        const std::string name_path = entry_path + "." + kListNames[k];
        const std::string list_path = "layers[" + std::to_string(l) + "]." + kListNames[k];
        const auto name = entry.find(kListNames[k]);
        if (name == entry.end() || !name->is_string())
          throw std::invalid_argument(where(who, name_path) +
                                      (name == entry.end()
                                           ? std::string(" is missing")
                                           : " is a " + std::string(name->type_name())) +
                                      ", expected the name of a variant of " + list_path);
        const std::vector<Variant>& list = layers[l].lists[k];
        const std::string wanted = name->get<std::string>();
        const auto it = std::find_if(list.begin(), list.end(),
                                     [&](const Variant& v) { return v.name == wanted; });
        if (it == list.end())
          throw std::invalid_argument(where(who, name_path) + " '" + wanted +
                                      "' is not a variant of " + list_path +
                                      " (its variants: " + variant_names(list) + ")");
        picks[l][k] = static_cast<int32_t>(it - list.begin());
      }
    }
    diversity.solutions.push_back(std::move(picks));
  }
  return diversity;
}

}  // namespace detail

// Reads and checks a "puzzle.block_selection" document (see docs/search.md). Throws
// std::invalid_argument naming the JSON path of the fault, prefixed with `who`.
inline Problem read_problem(const nlohmann::json& doc, const std::string& who) {
  using detail::where;
  for (const auto& [key, value] : doc.items())
    if (key != "problem" && key != "layers" && key != "budgets" && key != "description" &&
        key != "diversity")
      throw std::invalid_argument(where(who, key) +
                                  " is not a known field; expected problem, layers, budgets, "
                                  "diversity, description");
  Problem problem;
  if (const auto budgets = doc.find("budgets"); budgets != doc.end()) {
    if (!budgets->is_object())
      throw std::invalid_argument(where(who, "budgets") + " is a " + budgets->type_name() +
                                  ", expected an object {COST NAME: the most total allowed}");
    for (const auto& [key, value] : budgets->items()) {
      if (key.empty())
        throw std::invalid_argument(where(who, "budgets") + " has an empty cost name");
      if (key == "score")
        throw std::invalid_argument(where(who, "budgets.score") +
                                    " is not a budget: score is the objective, not a cost");
    }
    if (budgets->contains("latency_s") && budgets->contains("runtime"))
      throw std::invalid_argument(where(who, "budgets") +
                                  " gives both latency_s and runtime; give one of them");
    for (const auto& [key, value] : budgets->items())
      problem.budgets.push_back(
          {detail::canonical_cost(key), detail::read_number(value, who, "budgets." + key, true)});
    std::sort(problem.budgets.begin(), problem.budgets.end(),
              [](const Budget& a, const Budget& b) { return a.name < b.name; });
  }
  const auto layers = doc.find("layers");
  if (layers == doc.end() || !layers->is_array() || layers->empty())
    throw std::invalid_argument(
        where(who, "layers") + (layers == doc.end() ? " is missing" : " is not a non-empty array") +
        ", expected a non-empty array of {attention, ffn}");
  for (size_t l = 0; l < layers->size(); ++l) {
    const nlohmann::json& layer = (*layers)[l];
    const std::string path = "layers[" + std::to_string(l) + "]";
    if (!layer.is_object())
      throw std::invalid_argument(where(who, path) + " is a " + layer.type_name() +
                                  ", expected an object {attention, ffn}");
    Layer parsed;
    for (int k = 0; k < 2; ++k)
      parsed.lists[k] = detail::read_variants(layer, k, path, problem, who);
    problem.layers.push_back(std::move(parsed));
  }
  if (const auto diversity = doc.find("diversity"); diversity != doc.end())
    problem.diversity = detail::read_diversity(*diversity, problem.layers, who);
  return problem;
}

// ------------------------------------------------------------------ constraints

// What a choice must meet: each budget (its cost summed over the chosen variants) and, per
// earlier solution of "diversity", the sub-blocks the choice shares with it. Both are sums
// of a per-variant cost under a limit, so solvers treat them alike.
struct Constraint {
  bool diversity = false;
  int32_t index = 0;   // into Problem::budgets, or into Diversity::solutions
  std::string name;    // "decode_s", "diversity.solutions[0]"
  double limit = 0;    // the budget, or max_common
  double allowed = 0;  // limit, plus the slack for budgets: a total fits when <= allowed
};

inline std::vector<Constraint> constraints(const Problem& problem) {
  std::vector<Constraint> out;
  for (size_t b = 0; b < problem.budgets.size(); ++b) {
    const double limit = problem.budgets[b].limit;
    out.push_back({false, static_cast<int32_t>(b), problem.budgets[b].name, limit,
                   limit + kBudgetSlack * std::max(1.0, limit)});
  }
  if (problem.diversity)
    for (size_t s = 0; s < problem.diversity->solutions.size(); ++s) {
      const auto m = static_cast<double>(problem.diversity->max_common);
      out.push_back(
          {true, static_cast<int32_t>(s), "diversity.solutions[" + std::to_string(s) + "]", m, m});
    }
  return out;
}

// The cost of variant `v` of list `k` (0 attention, 1 ffn) of layer `l` in a constraint.
inline double cost(const Problem& problem, const Constraint& c, size_t l, int k, size_t v) {
  if (!c.diversity) return problem.layers[l].lists[k][v].cost[c.index];
  return problem.diversity->solutions[c.index][l][k] == static_cast<int32_t>(v) ? 1.0 : 0.0;
}

// The least total a constraint alone can reach: the sum of every list's cheapest variant
// (exact, as the lists are chosen independently when nothing else binds).
inline double least_total(const Problem& problem, const Constraint& c) {
  double total = 0;
  for (size_t l = 0; l < problem.layers.size(); ++l)
    for (int k = 0; k < 2; ++k) {
      double least = std::numeric_limits<double>::infinity();
      for (size_t v = 0; v < problem.layers[l].lists[k].size(); ++v)
        least = std::min(least, cost(problem, c, l, k, v));
      total += least;
    }
  return total;
}

// ------------------------------------------------------------------ the solvers' view

// One variant as a solver sees it: its index in the problem's list, score and cost in every
// constraint (in constraints()' order).
struct Item {
  int32_t index = 0;
  double score = 0;
  std::vector<double> cost;
};

struct Model {
  std::vector<Constraint> constraints;
  std::vector<std::array<std::vector<Item>, 2>> lists;  // [layer][0 attention, 1 ffn]
};

// The solvers' view of a problem, over the constraints whose `active` flag is set (all when
// `active` is empty). Of variants equal in score and in every active constraint's cost
// (diversity included: a variant an earlier solution chose differs from one it did not), only
// the first listed is kept: ties go to the first listed variant, whatever the solver.
inline Model make_model(const Problem& problem, const std::vector<bool>& active = {}) {
  Model model;
  const std::vector<Constraint> all = constraints(problem);
  for (size_t i = 0; i < all.size(); ++i)
    if (active.empty() || active[i]) model.constraints.push_back(all[i]);
  model.lists.resize(problem.layers.size());
  for (size_t l = 0; l < problem.layers.size(); ++l)
    for (int k = 0; k < 2; ++k) {
      const std::vector<Variant>& list = problem.layers[l].lists[k];
      for (size_t v = 0; v < list.size(); ++v) {
        Item item;
        item.index = static_cast<int32_t>(v);
        item.score = list[v].score;
        for (const Constraint& c : model.constraints)
          item.cost.push_back(cost(problem, c, l, k, v));
        const auto& kept = model.lists[l][k];
        const bool repeat = std::any_of(kept.begin(), kept.end(), [&](const Item& other) {
          return other.score == item.score && other.cost == item.cost;
        });
        if (!repeat) model.lists[l][k].push_back(std::move(item));
      }
    }
  return model;
}

// ------------------------------------------------------------------ evaluating a choice

struct Evaluation {
  double score = 0;
  std::vector<double> total;  // per constraint, in constraints()' order
  bool fits = true;
  std::vector<std::string> over;  // the constraints it exceeds
};

// Sums in layer order, each layer's attention then FFN.
inline Evaluation evaluate(const Problem& problem, const Choice& choice) {
  const std::vector<Constraint> all = constraints(problem);
  Evaluation e;
  e.total.assign(all.size(), 0.0);
  for (size_t l = 0; l < problem.layers.size(); ++l) {
    const Variant& a = problem.layers[l].lists[0][choice[l][0]];
    const Variant& f = problem.layers[l].lists[1][choice[l][1]];
    e.score += a.score + f.score;
    for (size_t c = 0; c < all.size(); ++c)
      e.total[c] +=
          cost(problem, all[c], l, 0, choice[l][0]) + cost(problem, all[c], l, 1, choice[l][1]);
  }
  for (size_t c = 0; c < all.size(); ++c)
    if (e.total[c] > all[c].allowed) {
      e.fits = false;
      e.over.push_back(all[c].name);
    }
  return e;
}

// ------------------------------------------------------------------ solution documents

// The solution document of a choice that fits: status ("optimal" when proven, "feasible"
// otherwise), objective, the chosen names per layer, totals (score, every budgeted cost, and
// every other cost all chosen variants give), "common" (with diversity: the sub-blocks shared
// with each earlier solution) and the solver's name. Providers add their diagnostics.
inline nlohmann::json solution_document(const Problem& problem, const Choice& choice,
                                        const std::string& status, const std::string& solver) {
  const Evaluation e = evaluate(problem, choice);
  nlohmann::json layers = nlohmann::json::array();
  std::map<std::string, std::pair<double, size_t>> given;  // cost -> (total, variants giving it)
  for (size_t l = 0; l < problem.layers.size(); ++l) {
    const Variant& a = problem.layers[l].lists[0][choice[l][0]];
    const Variant& f = problem.layers[l].lists[1][choice[l][1]];
    layers.push_back({{"attention", a.name}, {"ffn", f.name}});
    for (const Variant* v : {&a, &f})
      for (const auto& [name, value] : v->costs) {
        auto& slot = given[name];
        slot.first += value;
        ++slot.second;
      }
  }
  nlohmann::json totals = {{"score", e.score}};
  for (const auto& [name, sum] : given)
    if (sum.second == 2 * problem.layers.size()) totals[name] = sum.first;
  const std::vector<Constraint> all = constraints(problem);
  nlohmann::json common = nlohmann::json::array();
  for (size_t c = 0; c < all.size(); ++c) {
    if (all[c].diversity)
      common.push_back(static_cast<int64_t>(e.total[c]));
    else
      totals[all[c].name] = e.total[c];  // budgeted costs, summed in layer order
  }
  nlohmann::json doc = {{"problem", kProblemType},     {"status", status},
                        {"objective", e.score},        {"layers", std::move(layers)},
                        {"totals", std::move(totals)}, {"solver", solver}};
  if (problem.diversity) doc["common"] = std::move(common);
  return doc;
}

// An infeasible answer. `proven`: no choice fits (a bound or an exhaustive search says so);
// false when a heuristic found none without proving that none exists.
inline nlohmann::json infeasible_document(const std::string& reason, bool proven,
                                          const std::string& solver) {
  return {{"problem", kProblemType},
          {"status", "infeasible"},
          {"reason", reason},
          {"proven", proven},
          {"solver", solver}};
}

// ------------------------------------------------------------------ reasons

namespace detail {

inline std::string alone_value(const Problem& problem, const Constraint& c, double least) {
  if (c.diversity)
    return "the fewest sub-blocks in common with " + c.name + " is " + format_number(least) +
           " (max_common " + std::to_string(problem.diversity->max_common) + ")";
  return "the least reachable " + c.name + " is " + format_number(least) + " (budget " +
         format_number(c.limit) + ")";
}

}  // namespace detail

// When one constraint alone cannot be met (its least reachable total is over its limit),
// the reason, naming the tightest such constraint first; nullopt when each alone can be.
inline std::optional<std::string> infeasible_alone(const Problem& problem) {
  struct Over {
    const Constraint* c;
    double least, ratio;
  };
  const std::vector<Constraint> all = constraints(problem);
  std::vector<Over> over;
  for (const Constraint& c : all) {
    const double least = least_total(problem, c);
    if (least > c.allowed)
      over.push_back(
          {&c, least, c.limit > 0 ? least / c.limit : std::numeric_limits<double>::infinity()});
  }
  if (over.empty()) return std::nullopt;
  std::stable_sort(over.begin(), over.end(),
                   [](const Over& a, const Over& b) { return a.ratio > b.ratio; });
  const auto say = [&](const Over& o) {
    if (o.c->diversity)
      return o.c->name + ": every choice has at least " + format_number(o.least) +
             " sub-blocks in common with it (lists with a single variant), over max_common " +
             std::to_string(problem.diversity->max_common);
    return o.c->name + ": the least reachable total is " + format_number(o.least) +
           ", over the budget of " + format_number(o.c->limit);
  };
  std::string reason = say(over.front());
  if (over.size() > 1) {
    std::vector<std::string> also;
    for (size_t i = 1; i < over.size(); ++i) also.push_back(say(over[i]));
    reason += "; also ";
    for (size_t i = 0; i < also.size(); ++i) reason += (i ? "; " : "") + also[i];
  }
  return reason;
}

// The reason when the constraints `conflict` (indices into constraints()) cannot hold
// together although each alone can: their names and the best each reaches alone.
inline std::string infeasible_together(const Problem& problem,
                                       const std::vector<size_t>& conflict) {
  const std::vector<Constraint> all = constraints(problem);
  std::vector<std::string> names, values;
  for (size_t i : conflict) {
    names.push_back(all[i].name);
    values.push_back(detail::alone_value(problem, all[i], least_total(problem, all[i])));
  }
  return "no choice meets " + join_and(names) +
         " together; each alone can be met: " + join_and(values);
}

// A smallest set of constraints (by deletion: none of its members can be dropped) that no
// choice meets together, given `feasible(active)` deciding whether some choice meets the
// constraints flagged in `active`, and that all of them together are infeasible.
template <class Feasible>
std::vector<size_t> minimal_conflict(size_t count, Feasible&& feasible) {
  std::vector<bool> active(count, true);
  for (size_t i = 0; i < count; ++i) {
    active[i] = false;
    if (feasible(active)) active[i] = true;  // needed for the conflict
  }
  std::vector<size_t> out;
  for (size_t i = 0; i < count; ++i)
    if (active[i]) out.push_back(i);
  return out;
}

// ------------------------------------------------------------------ heuristics' parts

// A choice as positions into a Model's lists, with its score and its total per constraint.
struct Pick {
  std::vector<std::array<size_t, 2>> at;  // [layer][0 attention, 1 ffn]
  double score = 0;
  std::vector<double> total;  // per model constraint
};

// Recomputes score and totals, summed as evaluate() does (layer order, attention + FFN).
inline void recount(const Model& model, Pick& pick) {
  pick.score = 0;
  pick.total.assign(model.constraints.size(), 0.0);
  for (size_t l = 0; l < model.lists.size(); ++l) {
    const Item& a = model.lists[l][0][pick.at[l][0]];
    const Item& f = model.lists[l][1][pick.at[l][1]];
    pick.score += a.score + f.score;
    for (size_t d = 0; d < pick.total.size(); ++d) pick.total[d] += a.cost[d] + f.cost[d];
  }
}

inline bool fits(const Model& model, const std::vector<double>& total) {
  for (size_t d = 0; d < total.size(); ++d)
    if (total[d] > model.constraints[d].allowed) return false;
  return true;
}

inline Choice to_choice(const Model& model, const Pick& pick) {
  Choice choice(model.lists.size());
  for (size_t l = 0; l < model.lists.size(); ++l)
    for (int k = 0; k < 2; ++k) choice[l][k] = model.lists[l][k][pick.at[l][k]].index;
  return choice;
}

// The lowest-score variant of every list (ties: the first listed).
inline Pick best_scores(const Model& model) {
  Pick pick;
  pick.at.resize(model.lists.size());
  for (size_t l = 0; l < model.lists.size(); ++l)
    for (int k = 0; k < 2; ++k) {
      const std::vector<Item>& list = model.lists[l][k];
      size_t best = 0;
      for (size_t i = 1; i < list.size(); ++i)
        if (list[i].score < list[best].score) best = i;
      pick.at[l][k] = best;
    }
  recount(model, pick);
  return pick;
}

// How excess is measured per constraint: its limit; for a limit of 0, the starting choice's
// total (1 when that is 0 too).
inline std::vector<double> excess_scales(const Model& model, const Pick& start) {
  std::vector<double> scale;
  for (size_t d = 0; d < model.constraints.size(); ++d) {
    const double limit = model.constraints[d].limit;
    scale.push_back(limit > 0 ? limit : start.total[d] > 0 ? start.total[d] : 1.0);
  }
  return scale;
}

// The normalised excess: the sum over constraints of max(0, total - allowed) / scale.
inline double excess(const Model& model, const std::vector<double>& scale,
                     const std::vector<double>& total) {
  double e = 0;
  for (size_t d = 0; d < total.size(); ++d)
    e += std::max(0.0, total[d] - model.constraints[d].allowed) / scale[d];
  return e;
}

// One greedy phase: while a constraint of `phase` is exceeded, applies the single
// replacement (one variant of one list) with the least score increase per unit of
// normalised excess removed, counting only the constraints of `phase` and refusing
// replacements that push a constraint of `hard` over its limit; only replacements that lower
// the excess count. Replacements that do not raise the score come first, the one removing
// the most excess (then the lower score) first. Ties: the first in layer, list, variant
// order. Returns true when every constraint of `phase` fits. `moves` counts the replacements.
inline bool reduce_excess_of(const Model& model, const std::vector<double>& scale,
                             const std::vector<bool>& phase, const std::vector<bool>& hard,
                             Pick& pick, int64_t& moves) {
  const size_t dims = model.constraints.size();
  const auto phase_excess = [&](const std::vector<double>& total) {
    double e = 0;
    for (size_t d = 0; d < dims; ++d)
      if (phase[d]) e += std::max(0.0, total[d] - model.constraints[d].allowed) / scale[d];
    return e;
  };
  std::vector<double> next(dims);
  while (true) {
    const double now = phase_excess(pick.total);
    if (now == 0) return true;
    // The best so far: free (no score increase) before paid; free by most excess removed,
    // then least score; paid by least score increase per excess removed.
    bool best_free = false;
    double best_removed = 0, best_increase = 0, best_ratio = 0;
    size_t best_l = 0, best_i = 0;
    int best_k = -1;
    for (size_t l = 0; l < model.lists.size(); ++l)
      for (int k = 0; k < 2; ++k) {
        const std::vector<Item>& list = model.lists[l][k];
        const Item& current = list[pick.at[l][k]];
        for (size_t i = 0; i < list.size(); ++i) {
          if (i == pick.at[l][k]) continue;
          bool allowed = true;
          for (size_t d = 0; d < dims; ++d) {
            next[d] = pick.total[d] - current.cost[d] + list[i].cost[d];
            if (hard[d] && next[d] > model.constraints[d].allowed) allowed = false;
          }
          if (!allowed) continue;
          const double removed = now - phase_excess(next);
          if (!(removed > 1e-12 * now)) continue;
          const double increase = list[i].score - current.score;
          const bool free = increase <= 0;
          const double ratio = increase / removed;
          bool better;
          if (best_k < 0 || free != best_free)
            better = best_k < 0 || free;
          else if (free)
            better =
                removed > best_removed || (removed == best_removed && increase < best_increase);
          else
            better = ratio < best_ratio;
          if (better) {
            best_free = free;
            best_removed = removed;
            best_increase = increase;
            best_ratio = ratio;
            best_l = l;
            best_k = k;
            best_i = i;
          }
        }
      }
    if (best_k < 0) return false;
    pick.at[best_l][best_k] = best_i;
    recount(model, pick);
    ++moves;
  }
}

// Greedy repair of a pick into one that fits, in two phases: first the diversity
// constraints alone (budgets ignored), then the budgets, refusing replacements that break
// diversity again (see reduce_excess_of). Returns true when the pick fits.
inline bool reduce_excess(const Model& model, const std::vector<double>& scale, Pick& pick,
                          int64_t& moves) {
  std::vector<bool> diversity, budgets;
  for (const Constraint& c : model.constraints) {
    diversity.push_back(c.diversity);
    budgets.push_back(!c.diversity);
  }
  const std::vector<bool> none(model.constraints.size(), false);
  if (!reduce_excess_of(model, scale, diversity, none, pick, moves)) return false;
  return reduce_excess_of(model, scale, budgets, diversity, pick, moves) && fits(model, pick.total);
}

// Local improvement of a pick that fits: applies the single replacement that lowers the
// score most while the pick still fits, until none does.
inline void improve_by_replacements(const Model& model, Pick& pick) {
  const size_t dims = model.constraints.size();
  std::vector<double> next(dims);
  while (true) {
    double best_gain = 0;
    size_t best_l = 0, best_i = 0;
    int best_k = -1;
    for (size_t l = 0; l < model.lists.size(); ++l)
      for (int k = 0; k < 2; ++k) {
        const std::vector<Item>& list = model.lists[l][k];
        const Item& current = list[pick.at[l][k]];
        for (size_t i = 0; i < list.size(); ++i) {
          const double gain = current.score - list[i].score;
          if (!(gain > best_gain)) continue;
          for (size_t d = 0; d < dims; ++d)
            next[d] = pick.total[d] - current.cost[d] + list[i].cost[d];
          if (!fits(model, next)) continue;
          best_gain = gain;
          best_l = l;
          best_k = k;
          best_i = i;
        }
      }
    if (best_k < 0) return;
    const size_t before = pick.at[best_l][best_k];
    const double score = pick.score;
    pick.at[best_l][best_k] = best_i;
    recount(model, pick);
    if (!fits(model, pick.total) || !(pick.score < score)) {  // rounding at a limit: undo, stop
      pick.at[best_l][best_k] = before;
      recount(model, pick);
      return;
    }
  }
}

}  // namespace tessera::sdk::block_selection
