// The "lagrangian" search provider for "puzzle.block_selection" (docs/search.md): Lagrangian
// relaxation of the constraints (budgets and diversity), maximised by subgradient ascent
// with Polyak steps. Each relaxed problem falls apart into one minimum per list; its
// minimiser is repaired greedily into a choice that fits and improved by single
// replacements; the best choice found gets a final pass of paired replacements. The dual
// value is a lower bound, so the answer carries its gap, and is "optimal" when the gap closes.
// No randomness: the same document and parameters give the same answer.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <tessera/plugin.hpp>
#include <tessera/search/block_selection.hpp>
#include <utility>
#include <vector>

namespace tessera::search {
namespace {

namespace bs = sdk::block_selection;

constexpr const char* kWho = "search-lagrangian";
constexpr const char* kName = "lagrangian";

struct Settings {
  int64_t iterations = 300;
  double step = 2.0;
};

// Drops variants that cannot fit beside the cheapest variant of every other list, until
// nothing changes. Returns the constraints that dropped any (for the reason when a list
// empties) and whether every list kept a variant.
bool drop_unfit(bs::Model& model, std::vector<size_t>& used) {
  const size_t dims = model.constraints.size();
  std::vector<bool> dropped_by(dims, false);
  bool changed = true;
  while (changed) {
    changed = false;
    std::vector<double> cheapest(dims, 0.0);
    for (const auto& layer : model.lists)
      for (const auto& list : layer)
        for (size_t d = 0; d < dims; ++d) {
          double least = std::numeric_limits<double>::infinity();
          for (const bs::Item& item : list) least = std::min(least, item.cost[d]);
          cheapest[d] += least;
        }
    for (auto& layer : model.lists)
      for (auto& list : layer) {
        std::vector<double> least(dims, std::numeric_limits<double>::infinity());
        for (const bs::Item& item : list)
          for (size_t d = 0; d < dims; ++d) least[d] = std::min(least[d], item.cost[d]);
        std::vector<bs::Item> kept;
        for (bs::Item& item : list) {
          bool fits = true;
          for (size_t d = 0; d < dims; ++d)
            if (cheapest[d] - least[d] + item.cost[d] > model.constraints[d].allowed) {
              fits = false;
              dropped_by[d] = true;
            }
          if (fits) kept.push_back(std::move(item));
        }
        changed = changed || kept.size() != list.size();
        list = std::move(kept);
        if (list.empty()) {
          for (size_t d = 0; d < dims; ++d)
            if (dropped_by[d]) used.push_back(d);
          return false;
        }
      }
  }
  return true;
}

class Solver {
 public:
  Solver(const bs::Model& model, const Settings& settings)
      : model_(model), settings_(settings), dims_(model.constraints.size()) {
    for (const bs::Constraint& c : model.constraints) scale_.push_back(c.limit > 0 ? c.limit : 1);
    // The spread of scores sets the step while no choice that fits is known.
    for (const auto& layer : model.lists)
      for (const auto& list : layer) {
        double low = list.front().score, high = low;
        for (const bs::Item& item : list) {
          low = std::min(low, item.score);
          high = std::max(high, item.score);
        }
        spread_ += high - low;
      }
    if (!(spread_ > 0)) spread_ = 1;
  }

  void run() {
    std::vector<double> lambda(dims_, 0.0), slope(dims_);
    double theta = settings_.step;
    int64_t stale = 0;
    for (iterations_ = 0; iterations_ < settings_.iterations;) {
      ++iterations_;
      bs::Pick relaxed = relaxed_minimum(lambda);
      double value = 0;  // the dual: sum of the lists' reduced minima - lambda . allowed
      for (size_t l = 0; l < model_.lists.size(); ++l)
        for (int k = 0; k < 2; ++k) value += reduced(model_.lists[l][k][relaxed.at[l][k]], lambda);
      for (size_t d = 0; d < dims_; ++d)
        value -= lambda[d] * model_.constraints[d].allowed / scale_[d];
      if (iterations_ == 1 || value > bound_ + 1e-12 * (1 + std::abs(bound_))) {
        bound_ = value;
        stale = 0;
      } else if (++stale >= 10) {
        theta /= 2;
        stale = 0;
      }
      for (size_t d = 0; d < dims_; ++d)
        slope[d] = (relaxed.total[d] - model_.constraints[d].allowed) / scale_[d];
      consider(std::move(relaxed));
      if (closed()) break;
      double norm = 0;
      for (size_t d = 0; d < dims_; ++d)
        if (lambda[d] > 0 || slope[d] > 0) norm += slope[d] * slope[d];
      if (!(norm > 0) || theta < 1e-6) break;  // a stationary point, or no step left
      const double target = found_ ? best_.score : value + 0.1 * spread_;
      const double step = theta * std::max(target - value, 1e-9 * spread_) / norm;
      for (size_t d = 0; d < dims_; ++d) lambda[d] = std::max(0.0, lambda[d] + step * slope[d]);
    }
    if (found_) improve_by_pairs(best_);
  }

  bool found() const { return found_; }
  const bs::Pick& best() const { return best_; }
  double bound() const { return bound_; }
  int64_t iterations() const { return iterations_; }
  bool closed() const {
    return found_ && best_.score - bound_ <= 1e-9 * std::max(1.0, std::abs(best_.score));
  }

 private:
  double reduced(const bs::Item& item, const std::vector<double>& lambda) const {
    double v = item.score;
    for (size_t d = 0; d < dims_; ++d) v += lambda[d] * item.cost[d] / scale_[d];
    return v;
  }

  // Each list's least reduced cost (ties: the first listed).
  bs::Pick relaxed_minimum(const std::vector<double>& lambda) const {
    bs::Pick pick;
    pick.at.resize(model_.lists.size());
    for (size_t l = 0; l < model_.lists.size(); ++l)
      for (int k = 0; k < 2; ++k) {
        const auto& list = model_.lists[l][k];
        size_t best = 0;
        double best_value = reduced(list[0], lambda);
        for (size_t i = 1; i < list.size(); ++i) {
          const double v = reduced(list[i], lambda);
          if (v < best_value) {
            best_value = v;
            best = i;
          }
        }
        pick.at[l][k] = best;
      }
    bs::recount(model_, pick);
    return pick;
  }

  // Repairs a relaxed minimiser into a choice that fits, improves it, keeps the best.
  void consider(bs::Pick pick) {
    if (!bs::fits(model_, pick.total)) {
      const std::vector<double> scale = bs::excess_scales(model_, pick);
      int64_t moves = 0;
      if (!bs::reduce_excess(model_, scale, pick, moves)) return;
    }
    bs::improve_by_replacements(model_, pick);
    if (!found_ || pick.score < best_.score) {
      found_ = true;
      best_ = std::move(pick);
    }
  }

  // Replaces two variants of two lists at once where that lowers the score and still fits,
  // the best pair first, until no pair does (then single replacements again).
  void improve_by_pairs(bs::Pick& pick) const {
    struct Move {
      size_t l;
      int k;
      size_t i;
      double gain;
      std::vector<double> delta;
    };
    for (int round = 0; round < 100; ++round) {
      std::vector<Move> moves;
      for (size_t l = 0; l < model_.lists.size(); ++l)
        for (int k = 0; k < 2; ++k) {
          const auto& list = model_.lists[l][k];
          const bs::Item& current = list[pick.at[l][k]];
          for (size_t i = 0; i < list.size(); ++i) {
            if (i == pick.at[l][k]) continue;
            Move m{l, k, i, current.score - list[i].score, std::vector<double>(dims_)};
            for (size_t d = 0; d < dims_; ++d) m.delta[d] = list[i].cost[d] - current.cost[d];
            moves.push_back(std::move(m));
          }
        }
      double best_gain = 1e-12 * std::max(1.0, std::abs(pick.score));
      const Move* first = nullptr;
      const Move* second = nullptr;
      std::vector<double> next(dims_);
      for (size_t a = 0; a < moves.size(); ++a)
        for (size_t b = a + 1; b < moves.size(); ++b) {
          const Move& x = moves[a];
          const Move& y = moves[b];
          if (x.l == y.l && x.k == y.k) continue;
          if (!(x.gain + y.gain > best_gain)) continue;
          for (size_t d = 0; d < dims_; ++d) next[d] = pick.total[d] + x.delta[d] + y.delta[d];
          if (!bs::fits(model_, next)) continue;
          best_gain = x.gain + y.gain;
          first = &x;
          second = &y;
        }
      if (first == nullptr) return;
      bs::Pick next_pick = pick;
      next_pick.at[first->l][first->k] = first->i;
      next_pick.at[second->l][second->k] = second->i;
      bs::recount(model_, next_pick);
      if (!bs::fits(model_, next_pick.total) || !(next_pick.score < pick.score)) return;
      bs::improve_by_replacements(model_, next_pick);
      pick = std::move(next_pick);
    }
  }

  const bs::Model& model_;
  Settings settings_;
  size_t dims_;
  std::vector<double> scale_;
  double spread_ = 0;
  double bound_ = -std::numeric_limits<double>::infinity();
  bool found_ = false;
  bs::Pick best_;
  int64_t iterations_ = 0;
};

nlohmann::json solve_lagrangian(const bs::Problem& problem, const Settings& settings) {
  if (const auto reason = bs::infeasible_alone(problem))
    return bs::infeasible_document(*reason, true, kName);
  bs::Model model = bs::make_model(problem);
  std::vector<size_t> conflict;
  if (!drop_unfit(model, conflict))
    return bs::infeasible_document(bs::infeasible_together(problem, conflict), true, kName);
  Solver solver(model, settings);
  solver.run();
  if (!solver.found()) {
    std::vector<std::string> names;
    for (const bs::Constraint& c : model.constraints) names.push_back(c.name);
    nlohmann::json doc = bs::infeasible_document(
        "no choice found within " + std::to_string(solver.iterations()) + " iterations meets " +
            bs::join_and(names) + " together (dual bound " + bs::format_number(solver.bound()) +
            "). This does not prove that none does; the exact and mip providers decide",
        false, kName);
    doc["iterations"] = solver.iterations();
    return doc;
  }
  nlohmann::json doc = bs::solution_document(problem, bs::to_choice(model, solver.best()),
                                             solver.closed() ? "optimal" : "feasible", kName);
  doc["lower_bound"] = solver.bound();
  doc["gap"] = std::max(0.0, solver.best().score - solver.bound());
  doc["iterations"] = solver.iterations();
  return doc;
}

class LagrangianSearch {
 public:
  LagrangianSearch(const ts_params& params, const ts_host*) {
    settings_.iterations = bs::int_parameter(params, kWho, "iterations", 300, 1);
    const sdk::Params p(params);
    if (p.has("step")) {
      try {
        settings_.step = p.get_float("step");
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string(kWho) + ": " + e.what());
      }
      if (!(settings_.step > 0 && settings_.step <= 2))
        throw std::invalid_argument(std::string(kWho) + ": parameter 'step' is " +
                                    bs::format_number(settings_.step) +
                                    ", expected a number in (0, 2]");
    }
    bs::check_parameter_names(params, kWho, {"iterations", "step"});
  }

  std::string solve(std::string_view problem_json) const {
    const nlohmann::json doc = bs::read_document(problem_json, kWho);
    return solve_lagrangian(bs::read_problem(doc, kWho), settings_).dump();
  }

 private:
  Settings settings_;
};

const ts_search_vtable kVtable = sdk::search_vtable<LagrangianSearch>();
const ts_provider kProviders[] = {sdk::provider(TS_KIND_SEARCH, kName, TS_DEVICE_CPU, &kVtable)};

}  // namespace
}  // namespace tessera::search

TESSERA_PLUGIN("tessera-search-lagrangian", "0.1.0", tessera::search::kProviders)
