#include "block_selection.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::search {
namespace {

using nlohmann::json;

constexpr int kDims = 2;  // the budgeted costs: memory and latency
constexpr const char* kDimNames[kDims] = {"memory_bytes", "latency_s"};
// Sums that exceed a budget by less than this fraction still fit: the same costs summed in
// another order must not flip a choice from feasible to infeasible.
constexpr double kBudgetSlack = 1e-12;

std::string where(const std::string& path) {
  return std::string("search-exact: ") + kBlockSelection + ": " + path;
}

std::string format_number(double value) {
  std::ostringstream out;
  out.precision(17);
  out << value;
  return out.str();
}

// ------------------------------------------------------------------ parsing

struct Variant {
  std::string name;
  double score = 0;
  double cost[kDims] = {0, 0};
  bool has_cost[kDims] = {false, false};
};

struct Layer {
  std::vector<Variant> attention;
  std::vector<Variant> ffn;
};

struct Problem {
  std::vector<Layer> layers;
  bool has_budget[kDims] = {false, false};
  double budget[kDims] = {0, 0};
};

double read_number(const json& value, const std::string& path, bool non_negative) {
  if (!value.is_number())
    throw std::invalid_argument(where(path) + " is a " + value.type_name() + ", expected a number");
  const double x = value.get<double>();
  if (!std::isfinite(x))
    throw std::invalid_argument(where(path) + " is " + format_number(x) +
                                ", expected a finite number");
  if (non_negative && x < 0)
    throw std::invalid_argument(where(path) + " is " + format_number(x) +
                                ", expected a number >= 0");
  return x;
}

// Latency may be called "latency_s" or "runtime"; giving both is ambiguous.
const json* find_latency(const json& object, const std::string& path) {
  const auto latency = object.find("latency_s");
  const auto runtime = object.find("runtime");
  if (latency != object.end() && runtime != object.end())
    throw std::invalid_argument(where(path) +
                                " gives both latency_s and runtime; give one of them");
  if (latency != object.end()) return &*latency;
  if (runtime != object.end()) return &*runtime;
  return nullptr;
}

std::vector<Variant> read_variants(const json& layer, const char* key,
                                   const std::string& layer_path, const Problem& problem) {
  const std::string path = layer_path + "." + key;
  const auto list = layer.find(key);
  if (list == layer.end())
    throw std::invalid_argument(where(path) +
                                " is missing, expected a non-empty array of variants");
  if (!list->is_array() || list->empty())
    throw std::invalid_argument(
        where(path) + " is " +
        (list->is_array() ? std::string("empty") : "a " + std::string(list->type_name())) +
        ", expected a non-empty array of variants");
  std::vector<Variant> variants;
  for (size_t i = 0; i < list->size(); ++i) {
    const json& item = (*list)[i];
    const std::string item_path = path + "[" + std::to_string(i) + "]";
    if (!item.is_object())
      throw std::invalid_argument(where(item_path) + " is a " + item.type_name() +
                                  ", expected an object {name, score, memory_bytes, latency_s}");
    Variant v;
    const auto name = item.find("name");
    if (name == item.end() || !name->is_string() || name->get<std::string>().empty())
      throw std::invalid_argument(
          where(item_path + ".name") +
          (name == item.end() ? " is missing" : " is not a non-empty string") +
          ", expected the variant's name");
    v.name = name->get<std::string>();
    for (size_t j = 0; j < variants.size(); ++j)
      if (variants[j].name == v.name)
        throw std::invalid_argument(where(item_path + ".name") + " '" + v.name + "' repeats " +
                                    path + "[" + std::to_string(j) +
                                    "].name; names must be unique within a list");
    const auto score = item.find("score");
    if (score == item.end())
      throw std::invalid_argument(where(item_path + ".score") +
                                  " is missing, expected the variant's quality loss");
    v.score = read_number(*score, item_path + ".score", false);

    const json* costs[kDims] = {nullptr, find_latency(item, item_path)};
    if (const auto memory = item.find("memory_bytes"); memory != item.end()) costs[0] = &*memory;
    for (int d = 0; d < kDims; ++d) {
      const std::string cost_path = item_path + "." + kDimNames[d];
      if (costs[d] != nullptr) {
        v.cost[d] = read_number(*costs[d], cost_path, true);
        v.has_cost[d] = true;
      } else if (problem.has_budget[d]) {
        throw std::invalid_argument(where(cost_path) + " is missing, expected a number >= 0 " +
                                    "(budgets." + kDimNames[d] + " is set)");
      }
    }
    variants.push_back(std::move(v));
  }
  return variants;
}

Problem read_problem(const json& doc) {
  for (const auto& [key, value] : doc.items())
    if (key != "problem" && key != "layers" && key != "budgets" && key != "description")
      throw std::invalid_argument(where(key) +
                                  " is not a known field; expected problem, layers, budgets, "
                                  "description");
  Problem problem;
  if (const auto budgets = doc.find("budgets"); budgets != doc.end()) {
    if (!budgets->is_object())
      throw std::invalid_argument(where("budgets") + " is a " + budgets->type_name() +
                                  ", expected an object {memory_bytes, latency_s}");
    for (const auto& [key, value] : budgets->items())
      if (key != "memory_bytes" && key != "latency_s" && key != "runtime")
        throw std::invalid_argument(where("budgets." + key) +
                                    " is not a known budget; expected memory_bytes, latency_s "
                                    "(or runtime)");
    const json* limits[kDims] = {nullptr, find_latency(*budgets, "budgets")};
    if (const auto memory = budgets->find("memory_bytes"); memory != budgets->end())
      limits[0] = &*memory;
    for (int d = 0; d < kDims; ++d) {
      if (limits[d] == nullptr) continue;
      problem.has_budget[d] = true;
      problem.budget[d] = read_number(*limits[d], std::string("budgets.") + kDimNames[d], true);
    }
  }
  const auto layers = doc.find("layers");
  if (layers == doc.end() || !layers->is_array() || layers->empty())
    throw std::invalid_argument(
        where("layers") + (layers == doc.end() ? " is missing" : " is not a non-empty array") +
        ", expected a non-empty array of {attention, ffn}");
  for (size_t l = 0; l < layers->size(); ++l) {
    const json& layer = (*layers)[l];
    const std::string path = "layers[" + std::to_string(l) + "]";
    if (!layer.is_object())
      throw std::invalid_argument(where(path) + " is a " + layer.type_name() +
                                  ", expected an object {attention, ffn}");
    Layer parsed;
    parsed.attention = read_variants(layer, "attention", path, problem);
    parsed.ffn = read_variants(layer, "ffn", path, problem);
    problem.layers.push_back(std::move(parsed));
  }
  return problem;
}

// ------------------------------------------------------------------ solving

// One (attention, ffn) pair of a layer, its costs scaled by the budgets.
struct Option {
  double score;
  double cost[kDims];    // raw
  double scaled[kDims];  // cost / budget; 0 for an unbudgeted (or zero) dimension
  int32_t attention;
  int32_t ffn;
};

using Multipliers = std::array<double, kDims>;

class BranchAndBound {
 public:
  BranchAndBound(const Problem& problem, int64_t max_nodes)
      : problem_(problem), max_nodes_(max_nodes) {
    for (int d = 0; d < kDims; ++d)
      limit_[d] = problem.has_budget[d]
                      ? problem.budget[d] + kBudgetSlack * std::max(1.0, problem.budget[d])
                      : INFINITY;
  }

  // Returns false (with reason_) when no choice meets the budgets.
  bool solve() {
    build_options();
    // Pruning a layer can raise its cheapest cost, which may prune others: repeat until
    // nothing changes. Afterwards every option fits beside the cheapest elsewhere.
    for (size_t before = SIZE_MAX, round = 0; before != option_count(); ++round) {
      before = option_count();
      for (size_t l = 0; l < options_.size(); ++l)
        if (options_[l].empty()) {
          reason_ = "no variant pair of layer " + std::to_string(l) +
                    " fits beside the cheapest choices of the other layers within the "
                    "memory_bytes and latency_s budgets together";
          return false;
        }
      if (!check_cheapest(round > 0)) return false;
      prune_options();
    }
    choose_multipliers();
    order_layers_and_options();
    choice_.assign(options_.size(), 0);
    dfs(0, 0.0, {0.0, 0.0});
    if (!found_) {
      reason_ = "no choice of variants meets the memory_bytes and latency_s budgets together";
      return false;
    }
    return true;
  }

  size_t option_count() const {
    size_t n = 0;
    for (const auto& layer : options_) n += layer.size();
    return n;
  }

  const std::string& reason() const { return reason_; }
  int64_t nodes() const { return nodes_; }
  double root_bound() const { return root_bound_; }
  // The chosen (attention, ffn) indices of each layer, in the problem's layer order.
  std::vector<std::pair<int32_t, int32_t>> chosen() const {
    std::vector<std::pair<int32_t, int32_t>> out(options_.size());
    for (size_t depth = 0; depth < options_.size(); ++depth) {
      const Option& o = options_[depth][best_choice_[depth]];
      out[layer_order_[depth]] = {o.attention, o.ffn};
    }
    return out;
  }

 private:
  bool budgeted(int d) const { return problem_.has_budget[d]; }

  void build_options() {
    options_.resize(problem_.layers.size());
    for (size_t l = 0; l < problem_.layers.size(); ++l) {
      const Layer& layer = problem_.layers[l];
      for (size_t a = 0; a < layer.attention.size(); ++a)
        for (size_t f = 0; f < layer.ffn.size(); ++f) {
          Option o{};
          o.score = layer.attention[a].score + layer.ffn[f].score;
          for (int d = 0; d < kDims; ++d) {
            o.cost[d] = budgeted(d) ? layer.attention[a].cost[d] + layer.ffn[f].cost[d] : 0.0;
            o.scaled[d] =
                budgeted(d) && problem_.budget[d] > 0 ? o.cost[d] / problem_.budget[d] : 0;
          }
          o.attention = static_cast<int32_t>(a);
          o.ffn = static_cast<int32_t>(f);
          options_[l].push_back(o);
        }
    }
  }

  // Even the cheapest variants of every layer must fit each budget on its own.
  bool check_cheapest(bool after_pruning) {
    for (int d = 0; d < kDims; ++d) {
      if (!budgeted(d)) continue;
      double cheapest = 0;
      for (const auto& layer : options_) {
        double least = INFINITY;
        for (const Option& o : layer) least = std::min(least, o.cost[d]);
        cheapest += least;
      }
      if (cheapest > limit_[d]) {
        reason_ = std::string(after_pruning ? "no choice meets the memory_bytes and latency_s "
                                              "budgets together: the cheapest variants that "
                                              "fit the other budget need "
                                            : "the cheapest variants of every layer need ") +
                  kDimNames[d] + " " + format_number(cheapest) + ", over the budget of " +
                  format_number(problem_.budget[d]);
        return false;
      }
    }
    return true;
  }

  // Drops options that cannot fit beside the cheapest choice elsewhere, and options another
  // option of the same layer beats on score and on every budgeted cost (keeping the first
  // of exact duplicates); neither change can lose the optimum.
  void prune_options() {
    double cheapest[kDims] = {0, 0};
    std::vector<std::array<double, kDims>> least(options_.size());
    for (size_t l = 0; l < options_.size(); ++l)
      for (int d = 0; d < kDims; ++d) {
        least[l][d] = INFINITY;
        for (const Option& o : options_[l]) least[l][d] = std::min(least[l][d], o.cost[d]);
        cheapest[d] += least[l][d];
      }
    for (size_t l = 0; l < options_.size(); ++l) {
      std::vector<Option> candidates;
      for (const Option& o : options_[l]) {
        bool fits = true;
        for (int d = 0; d < kDims; ++d)
          fits = fits && (cheapest[d] - least[l][d]) + o.cost[d] <= limit_[d];
        if (fits) candidates.push_back(o);
      }
      std::stable_sort(candidates.begin(), candidates.end(), [](const Option& a, const Option& b) {
        if (a.score != b.score) return a.score < b.score;
        if (a.cost[0] != b.cost[0]) return a.cost[0] < b.cost[0];
        return a.cost[1] < b.cost[1];
      });
      std::vector<Option> front;
      for (const Option& o : candidates) {
        bool dominated = false;
        for (const Option& kept : front)
          if (kept.cost[0] <= o.cost[0] && kept.cost[1] <= o.cost[1]) {
            dominated = true;
            break;
          }
        if (!dominated) front.push_back(o);
      }
      options_[l] = std::move(front);
    }
  }

  // Lagrangian dual: g(lambda) = sum over layers of min (score + lambda . scaled cost) - sum
  // of lambda, a lower bound on the optimum for every lambda >= 0. Returns g and a
  // subgradient (scaled cost of the minimisers - 1).
  double dual(const Multipliers& lambda, Multipliers* slope) const {
    double value = 0;
    Multipliers used{0, 0};
    for (const auto& layer : options_) {
      const Option* best = &layer.front();
      double best_value = reduced(*best, lambda);
      for (const Option& o : layer) {
        const double v = reduced(o, lambda);
        // Among equal reduced costs prefer the cheaper option: the slope then tells
        // whether raising lambda could still pay.
        if (v < best_value ||
            (v == best_value && o.scaled[0] + o.scaled[1] < best->scaled[0] + best->scaled[1])) {
          best_value = v;
          best = &o;
        }
      }
      value += best_value;
      for (int d = 0; d < kDims; ++d) used[d] += best->scaled[d];
    }
    for (int d = 0; d < kDims; ++d) value -= lambda[d];
    if (slope) *slope = {used[0] - 1, used[1] - 1};
    return value;
  }

  // Maximises g along one coordinate (g is concave): bisection on the slope's sign.
  void maximise_along(Multipliers& lambda, int d) const {
    Multipliers slope;
    lambda[d] = 0;
    dual(lambda, &slope);
    // Slopes within rounding of 0 count as flat: a budget met exactly by the cheapest
    // choice would otherwise push lambda towards infinity.
    constexpr double kFlat = 1e-12;
    if (slope[d] <= kFlat) return;
    double low = 0, high = 1;
    // Doubling up to 2^200 reaches any sensible scale of scores; the slope must turn since
    // the cheapest choice fits every budget (checked before), else keep the best found.
    for (int i = 0;; ++i) {
      lambda[d] = high;
      dual(lambda, &slope);
      if (slope[d] <= kFlat) break;
      if (i == 200) {
        lambda[d] = low;
        return;
      }
      low = high;
      high *= 2;
    }
    for (int i = 0; i < 100; ++i) {
      lambda[d] = 0.5 * (low + high);
      dual(lambda, &slope);
      (slope[d] > kFlat ? low : high) = lambda[d];
    }
    lambda[d] = low;  // the side where the bound is still valid and largest found
    const double g_low = dual(lambda, nullptr);
    lambda[d] = high;
    if (dual(lambda, nullptr) < g_low) lambda[d] = low;
  }

  void choose_multipliers() {
    multipliers_.push_back({0, 0});
    bool scaled[kDims];
    for (int d = 0; d < kDims; ++d) {
      scaled[d] = budgeted(d) && problem_.budget[d] > 0;
      if (!scaled[d]) continue;
      Multipliers single{0, 0};
      maximise_along(single, d);
      multipliers_.push_back(single);
    }
    Multipliers joint{0, 0};
    if (scaled[0] && scaled[1]) {
      // Coordinate ascent; any multipliers give a valid bound, these are just good ones.
      for (int round = 0; round < 8; ++round)
        for (int d = 0; d < kDims; ++d) maximise_along(joint, d);
      multipliers_.push_back(joint);
    } else if (multipliers_.size() > 1) {
      joint = multipliers_.back();
    }
    ordering_ = joint;
    // Deep in the tree the remaining budget differs from the root's, and so do the best
    // multipliers: keep scaled copies too, so each node can take the best of a small grid.
    constexpr double kFactors[] = {0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0};
    const size_t bases = multipliers_.size();
    for (size_t b = 1; b < bases; ++b)
      for (double f0 : kFactors)
        for (double f1 : kFactors) {
          const Multipliers m{multipliers_[b][0] * f0, multipliers_[b][1] * f1};
          if (std::find(multipliers_.begin(), multipliers_.end(), m) == multipliers_.end())
            multipliers_.push_back(m);
        }
  }

  double reduced(const Option& o, const Multipliers& lambda) const {
    return o.score + lambda[0] * o.scaled[0] + lambda[1] * o.scaled[1];
  }

  // Branch first on the layers whose choice matters most; try each layer's options best
  // reduced cost first, so the first leaf reached is usually near the optimum.
  void order_layers_and_options() {
    const size_t n = options_.size();
    std::vector<double> spread(n, 0);
    for (size_t l = 0; l < n; ++l) {
      auto& layer = options_[l];
      std::stable_sort(layer.begin(), layer.end(), [&](const Option& a, const Option& b) {
        return reduced(a, ordering_) < reduced(b, ordering_);
      });
      spread[l] = reduced(layer.back(), ordering_) - reduced(layer.front(), ordering_);
    }
    layer_order_.resize(n);
    std::iota(layer_order_.begin(), layer_order_.end(), size_t{0});
    std::stable_sort(layer_order_.begin(), layer_order_.end(),
                     [&](size_t a, size_t b) { return spread[a] > spread[b]; });
    std::vector<std::vector<Option>> ordered(n);
    for (size_t depth = 0; depth < n; ++depth)
      ordered[depth] = std::move(options_[layer_order_[depth]]);
    options_ = std::move(ordered);

    // Suffix sums from each depth: least reduced cost per multiplier set, least raw cost.
    suffix_.assign(multipliers_.size(), std::vector<double>(n + 1, 0));
    least_cost_.assign(n + 1, {0, 0});
    for (size_t depth = n; depth-- > 0;) {
      for (size_t m = 0; m < multipliers_.size(); ++m) {
        double least = INFINITY;
        for (const Option& o : options_[depth])
          least = std::min(least, reduced(o, multipliers_[m]));
        suffix_[m][depth] = suffix_[m][depth + 1] + least;
      }
      for (int d = 0; d < kDims; ++d) {
        double least = INFINITY;
        for (const Option& o : options_[depth]) least = std::min(least, o.cost[d]);
        least_cost_[depth][d] = least_cost_[depth + 1][d] + least;
      }
    }
    root_bound_ = -INFINITY;
    for (size_t m = 0; m < multipliers_.size(); ++m)
      root_bound_ = std::max(root_bound_, suffix_[m][0] - multipliers_[m][0] - multipliers_[m][1]);
  }

  void dfs(size_t depth, double score, std::array<double, kDims> used) {
    if (++nodes_ > max_nodes_)
      throw std::runtime_error(where("") + "the search visited more than " +
                               std::to_string(max_nodes_) +
                               " nodes without proving optimality (best objective so far: " +
                               (found_ ? format_number(best_score_) : std::string("none")) +
                               "); raise the parameter max_nodes or simplify the problem");
    if (depth == options_.size()) {
      if (!found_ || score < best_score_) {
        found_ = true;
        best_score_ = score;
        best_choice_ = choice_;
      }
      return;
    }
    for (int d = 0; d < kDims; ++d)
      if (used[d] + least_cost_[depth][d] > limit_[d]) return;
    if (found_) {
      const double tolerance = 1e-12 * (1 + std::abs(best_score_));
      for (size_t m = 0; m < multipliers_.size(); ++m) {
        double bound = score + suffix_[m][depth];
        for (int d = 0; d < kDims; ++d)
          if (multipliers_[m][d] != 0)
            bound -= multipliers_[m][d] * (1 - used[d] / problem_.budget[d]);
        if (bound >= best_score_ - tolerance) return;
      }
    }
    const auto& layer = options_[depth];
    for (size_t i = 0; i < layer.size(); ++i) {
      const Option& o = layer[i];
      std::array<double, kDims> next = used;
      bool fits = true;
      for (int d = 0; d < kDims; ++d) {
        next[d] += o.cost[d];
        fits = fits && next[d] <= limit_[d];
      }
      if (!fits) continue;
      choice_[depth] = i;
      dfs(depth + 1, score + o.score, next);
    }
  }

  const Problem& problem_;
  int64_t max_nodes_;
  double limit_[kDims];
  std::vector<std::vector<Option>> options_;  // per depth once ordered
  std::vector<size_t> layer_order_;           // depth -> layer index
  std::vector<Multipliers> multipliers_;
  Multipliers ordering_{0, 0};
  std::vector<std::vector<double>> suffix_;            // [multiplier set][depth]
  std::vector<std::array<double, kDims>> least_cost_;  // [depth]
  std::vector<size_t> choice_, best_choice_;
  double best_score_ = INFINITY;
  double root_bound_ = -INFINITY;
  bool found_ = false;
  int64_t nodes_ = 0;
  std::string reason_;
};

}  // namespace

json solve_block_selection(const json& doc, int64_t max_nodes) {
  const Problem problem = read_problem(doc);
  BranchAndBound search(problem, max_nodes);
  json solution;
  solution["problem"] = kBlockSelection;
  if (!search.solve()) {
    solution["status"] = "infeasible";
    solution["reason"] = search.reason();
    return solution;
  }
  // Report from the original variants, summed in layer order.
  double objective = 0;
  double totals[kDims] = {0, 0};
  bool complete[kDims] = {true, true};
  json layers = json::array();
  const auto chosen = search.chosen();
  for (size_t l = 0; l < chosen.size(); ++l) {
    const Variant& attention = problem.layers[l].attention[chosen[l].first];
    const Variant& ffn = problem.layers[l].ffn[chosen[l].second];
    layers.push_back({{"attention", attention.name}, {"ffn", ffn.name}});
    objective += attention.score + ffn.score;
    for (int d = 0; d < kDims; ++d) {
      complete[d] = complete[d] && attention.has_cost[d] && ffn.has_cost[d];
      totals[d] += attention.cost[d] + ffn.cost[d];
    }
  }
  solution["status"] = "optimal";
  solution["objective"] = objective;
  solution["layers"] = std::move(layers);
  json totals_doc = {{"score", objective}};
  for (int d = 0; d < kDims; ++d)
    if (complete[d]) totals_doc[kDimNames[d]] = totals[d];
  solution["totals"] = std::move(totals_doc);
  solution["lower_bound"] = search.root_bound();
  solution["nodes"] = search.nodes();
  return solution;
}

}  // namespace tessera::search
