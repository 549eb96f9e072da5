#include "block_selection.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <tessera/search/block_selection.hpp>
#include <utility>
#include <vector>

namespace tessera::search {
namespace {

using nlohmann::json;
namespace bs = sdk::block_selection;

// One (attention, ffn) pair of a layer: its score and its cost in every constraint (the
// budgets, then one per earlier solution of "diversity"), the costs also scaled by the limits.
struct Option {
  double score = 0;
  std::vector<double> cost;    // raw
  std::vector<double> scaled;  // cost / limit; 0 where the limit is 0
  int32_t attention = 0;       // indices into the problem's lists
  int32_t ffn = 0;
};

using Multipliers = std::vector<double>;

class BranchAndBound {
 public:
  BranchAndBound(const bs::Model& model, int64_t max_nodes)
      : model_(model), dims_(model.constraints.size()), max_nodes_(max_nodes) {}

  // Returns false when no choice meets the constraints.
  bool solve() {
    build_options();
    // Pruning a layer can raise its cheapest cost, which may prune others: repeat until
    // nothing changes. Afterwards every option fits beside the cheapest elsewhere.
    for (size_t before = SIZE_MAX; before != option_count();) {
      before = option_count();
      for (const auto& layer : options_)
        if (layer.empty()) return false;
      if (!cheapest_fits()) return false;
      prune_options();
    }
    choose_multipliers();
    order_layers_and_options();
    choice_.assign(options_.size(), 0);
    dfs(0, 0.0, std::vector<double>(dims_, 0.0));
    return found_;
  }

  int64_t nodes() const { return nodes_; }
  double root_bound() const { return root_bound_; }
  // The chosen (attention, ffn) indices of each layer, in the problem's layer order.
  bs::Choice chosen() const {
    bs::Choice out(options_.size());
    for (size_t depth = 0; depth < options_.size(); ++depth) {
      const Option& o = options_[depth][best_choice_[depth]];
      out[layer_order_[depth]] = {o.attention, o.ffn};
    }
    return out;
  }

 private:
  double allowed(size_t d) const { return model_.constraints[d].allowed; }
  double limit(size_t d) const { return model_.constraints[d].limit; }

  size_t option_count() const {
    size_t n = 0;
    for (const auto& layer : options_) n += layer.size();
    return n;
  }

  void build_options() {
    options_.resize(model_.lists.size());
    for (size_t l = 0; l < model_.lists.size(); ++l)
      for (const bs::Item& a : model_.lists[l][0])
        for (const bs::Item& f : model_.lists[l][1]) {
          Option o;
          o.score = a.score + f.score;
          o.cost.resize(dims_);
          o.scaled.resize(dims_);
          for (size_t d = 0; d < dims_; ++d) {
            o.cost[d] = a.cost[d] + f.cost[d];
            o.scaled[d] = limit(d) > 0 ? o.cost[d] / limit(d) : 0;
          }
          o.attention = a.index;
          o.ffn = f.index;
          options_[l].push_back(std::move(o));
        }
  }

  // Even the cheapest options of every layer must fit each constraint on its own.
  bool cheapest_fits() const {
    for (size_t d = 0; d < dims_; ++d) {
      double cheapest = 0;
      for (const auto& layer : options_) {
        double least = INFINITY;
        for (const Option& o : layer) least = std::min(least, o.cost[d]);
        cheapest += least;
      }
      if (cheapest > allowed(d)) return false;
    }
    return true;
  }

  // Drops options that cannot fit beside the cheapest choice elsewhere, and options another
  // option of the same layer beats on score and on every constraint's cost (keeping the
  // first of exact duplicates); neither change can lose the optimum.
  void prune_options() {
    std::vector<double> cheapest(dims_, 0.0);
    std::vector<std::vector<double>> least(options_.size(), std::vector<double>(dims_, INFINITY));
    for (size_t l = 0; l < options_.size(); ++l)
      for (size_t d = 0; d < dims_; ++d) {
        for (const Option& o : options_[l]) least[l][d] = std::min(least[l][d], o.cost[d]);
        cheapest[d] += least[l][d];
      }
    for (size_t l = 0; l < options_.size(); ++l) {
      std::vector<Option> candidates;
      for (const Option& o : options_[l]) {
        bool fits = true;
        for (size_t d = 0; d < dims_; ++d)
          fits = fits && (cheapest[d] - least[l][d]) + o.cost[d] <= allowed(d);
        if (fits) candidates.push_back(o);
      }
      std::stable_sort(candidates.begin(), candidates.end(), [](const Option& a, const Option& b) {
        if (a.score != b.score) return a.score < b.score;
        return a.cost < b.cost;
      });
      std::vector<Option> front;
      for (Option& o : candidates) {
        bool dominated = false;
        for (const Option& kept : front) {
          bool cheaper = true;
          for (size_t d = 0; d < dims_ && cheaper; ++d) cheaper = kept.cost[d] <= o.cost[d];
          if (cheaper) {
            dominated = true;
            break;
          }
        }
        if (!dominated) front.push_back(std::move(o));
      }
      options_[l] = std::move(front);
    }
  }

  double reduced(const Option& o, const Multipliers& lambda) const {
    double v = o.score;
    for (size_t d = 0; d < dims_; ++d) v += lambda[d] * o.scaled[d];
    return v;
  }

  // Lagrangian dual: g(lambda) = sum over layers of min (score + lambda . scaled cost) - sum
  // of lambda, a lower bound on the optimum for every lambda >= 0. Returns g and a
  // subgradient (scaled cost of the minimisers - 1).
  double dual(const Multipliers& lambda, Multipliers* slope) const {
    double value = 0;
    Multipliers used(dims_, 0.0);
    for (const auto& layer : options_) {
      const Option* best = &layer.front();
      double best_value = reduced(*best, lambda);
      double best_size = std::accumulate(best->scaled.begin(), best->scaled.end(), 0.0);
      for (const Option& o : layer) {
        const double v = reduced(o, lambda);
        const double size = std::accumulate(o.scaled.begin(), o.scaled.end(), 0.0);
        // Among equal reduced costs prefer the cheaper option: the slope then tells
        // whether raising lambda could still pay.
        if (v < best_value || (v == best_value && size < best_size)) {
          best_value = v;
          best_size = size;
          best = &o;
        }
      }
      value += best_value;
      for (size_t d = 0; d < dims_; ++d) used[d] += best->scaled[d];
    }
    for (size_t d = 0; d < dims_; ++d) value -= lambda[d];
    if (slope) {
      slope->resize(dims_);
      for (size_t d = 0; d < dims_; ++d) (*slope)[d] = used[d] - 1;
    }
    return value;
  }

  // Maximises g along one coordinate (g is concave): bisection on the slope's sign.
  void maximise_along(Multipliers& lambda, size_t d) const {
    Multipliers slope;
    lambda[d] = 0;
    dual(lambda, &slope);
    // Slopes within rounding of 0 count as flat: a budget met exactly by the cheapest
    // choice would otherwise push lambda towards infinity.
    constexpr double kFlat = 1e-12;
    if (slope[d] <= kFlat) return;
    double low = 0, high = 1;
    // Doubling up to 2^200 reaches any sensible scale of scores; the slope must turn since
    // the cheapest choice fits every constraint (checked before), else keep the best found.
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

  void add_multipliers(const Multipliers& m) {
    if (std::find(multipliers_.begin(), multipliers_.end(), m) == multipliers_.end())
      multipliers_.push_back(m);
  }

  void choose_multipliers() {
    multipliers_.assign(1, Multipliers(dims_, 0.0));
    std::vector<size_t> scaled;
    for (size_t d = 0; d < dims_; ++d)
      if (limit(d) > 0) scaled.push_back(d);
    for (size_t d : scaled) {
      Multipliers single(dims_, 0.0);
      maximise_along(single, d);
      add_multipliers(single);
    }
    Multipliers joint(dims_, 0.0);
    if (scaled.size() > 1) {
      // Coordinate ascent; any multipliers give a valid bound, these are just good ones.
      for (int round = 0; round < 8; ++round)
        for (size_t d : scaled) maximise_along(joint, d);
      add_multipliers(joint);
    } else if (multipliers_.size() > 1) {
      joint = multipliers_.back();
    }
    ordering_ = joint;
    // Deep in the tree the remaining budget differs from the root's, and so do the best
    // multipliers: keep scaled copies too, so each node can take the best of a small grid.
    // Every combination of factors for up to two scaled constraints; beyond, every
    // multiplier scaled alike and each scaled alone.
    constexpr double kFactors[] = {0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0};
    const std::vector<Multipliers> bases(multipliers_.begin() + 1, multipliers_.end());
    for (const Multipliers& base : bases) {
      if (scaled.size() <= 2) {
        const size_t d0 = scaled[0], d1 = scaled.size() > 1 ? scaled[1] : scaled[0];
        for (double f0 : kFactors)
          for (double f1 : kFactors) {
            Multipliers m = base;
            m[d0] = base[d0] * f0;
            if (d1 != d0) m[d1] = base[d1] * f1;
            add_multipliers(m);
          }
        continue;
      }
      for (double f : kFactors) {
        Multipliers m = base;
        for (double& x : m) x *= f;
        add_multipliers(m);
        for (size_t d : scaled) {
          Multipliers one = base;
          one[d] *= f;
          add_multipliers(one);
        }
      }
    }
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
    least_cost_.assign(n + 1, std::vector<double>(dims_, 0.0));
    for (size_t depth = n; depth-- > 0;) {
      for (size_t m = 0; m < multipliers_.size(); ++m) {
        double least = INFINITY;
        for (const Option& o : options_[depth])
          least = std::min(least, reduced(o, multipliers_[m]));
        suffix_[m][depth] = suffix_[m][depth + 1] + least;
      }
      for (size_t d = 0; d < dims_; ++d) {
        double least = INFINITY;
        for (const Option& o : options_[depth]) least = std::min(least, o.cost[d]);
        least_cost_[depth][d] = least_cost_[depth + 1][d] + least;
      }
    }
    root_bound_ = -INFINITY;
    for (size_t m = 0; m < multipliers_.size(); ++m) {
      double bound = suffix_[m][0];
      for (double x : multipliers_[m]) bound -= x;
      root_bound_ = std::max(root_bound_, bound);
    }
  }

  void dfs(size_t depth, double score, const std::vector<double>& used) {
    if (++nodes_ > max_nodes_)
      throw std::runtime_error(std::string("search-exact: ") + bs::kProblemType +
                               ": the search visited more than " + std::to_string(max_nodes_) +
                               " nodes without proving optimality (best objective so far: " +
                               (found_ ? bs::format_number(best_score_) : std::string("none")) +
                               "); raise the parameter max_nodes or simplify the problem");
    if (depth == options_.size()) {
      if (!found_ || score < best_score_) {
        found_ = true;
        best_score_ = score;
        best_choice_ = choice_;
      }
      return;
    }
    for (size_t d = 0; d < dims_; ++d)
      if (used[d] + least_cost_[depth][d] > allowed(d)) return;
    if (found_) {
      const double tolerance = 1e-12 * (1 + std::abs(best_score_));
      for (size_t m = 0; m < multipliers_.size(); ++m) {
        double bound = score + suffix_[m][depth];
        for (size_t d = 0; d < dims_; ++d)
          if (multipliers_[m][d] != 0) bound -= multipliers_[m][d] * (1 - used[d] / limit(d));
        if (bound >= best_score_ - tolerance) return;
      }
    }
    const auto& layer = options_[depth];
    std::vector<double> next(dims_);
    for (size_t i = 0; i < layer.size(); ++i) {
      const Option& o = layer[i];
      bool fits = true;
      for (size_t d = 0; d < dims_; ++d) {
        next[d] = used[d] + o.cost[d];
        fits = fits && next[d] <= allowed(d);
      }
      if (!fits) continue;
      choice_[depth] = i;
      dfs(depth + 1, score + o.score, next);
    }
  }

  const bs::Model& model_;
  size_t dims_;
  int64_t max_nodes_;
  std::vector<std::vector<Option>> options_;  // per depth once ordered
  std::vector<size_t> layer_order_;           // depth -> layer index
  std::vector<Multipliers> multipliers_;
  Multipliers ordering_;
  std::vector<std::vector<double>> suffix_;      // [multiplier set][depth]
  std::vector<std::vector<double>> least_cost_;  // [depth][constraint]
  std::vector<size_t> choice_, best_choice_;
  double best_score_ = INFINITY;
  double root_bound_ = -INFINITY;
  bool found_ = false;
  int64_t nodes_ = 0;
};

}  // namespace

json solve_block_selection(const json& doc, int64_t max_nodes) {
  constexpr const char* kWho = "search-exact";
  const bs::Problem problem = bs::read_problem(doc, kWho);
  if (const auto reason = bs::infeasible_alone(problem))
    return bs::infeasible_document(*reason, true, "exact");
  const bs::Model model = bs::make_model(problem);
  BranchAndBound search(model, max_nodes);
  if (!search.solve()) {
    // Which constraints cannot hold together: each subset decided by the same search.
    const auto conflict =
        bs::minimal_conflict(model.constraints.size(), [&](const std::vector<bool>& active) {
          const bs::Model part = bs::make_model(problem, active);
          return BranchAndBound(part, max_nodes).solve();
        });
    return bs::infeasible_document(bs::infeasible_together(problem, conflict), true, "exact");
  }
  json solution = bs::solution_document(problem, search.chosen(), "optimal", "exact");
  solution["lower_bound"] = search.root_bound();
  solution["nodes"] = search.nodes();
  return solution;
}

}  // namespace tessera::search
