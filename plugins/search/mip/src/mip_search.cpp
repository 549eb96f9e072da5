// The "mip" search provider: "puzzle.block_selection" (docs/search.md) as a mixed-integer
// programme solved by COIN-OR CBC, as Puzzle states it. One binary per variant of every list
// (layer x attention / FFN), exactly one per list; one row per budget (costs scaled by the
// budget) and one per earlier solution of "diversity" (the variants it chose, at most
// max_common). Single-threaded, fixed seed and silent: the same document gives the same
// answer.
#include <CbcModel.hpp>
#include <CoinMessageHandler.hpp>
#include <CoinPackedMatrix.hpp>
#include <OsiClpSolverInterface.hpp>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tessera/plugin.hpp>
#include <tessera/search/block_selection.hpp>
#include <utility>
#include <vector>

namespace tessera::search {
namespace {

namespace bs = sdk::block_selection;

constexpr const char* kWho = "search-mip";
constexpr const char* kName = "mip";
// (No digit separators in call arguments: they crash clang-tidy 14's argument-comment check.)
constexpr int64_t kDefaultMaxNodes = 10000000;
constexpr int64_t kCbcMaxNodes = 2000000000;  // CBC counts nodes in an int

// Swallows every message of CBC and CLP: nothing may reach stdout.
class Silent : public CoinMessageHandler {
 public:
  Silent() { setLogLevel(0); }
  int print() override { return 0; }
};

struct Outcome {
  enum Status { kOptimal, kInfeasible } status = kInfeasible;
  bs::Choice choice;
  double bound = 0;
  int64_t nodes = 0;
};

class Mip {
 public:
  Mip(const bs::Model& model, int64_t max_nodes) : model_(model), max_nodes_(max_nodes) {
    for (const auto& layer : model.lists)
      for (const auto& list : layer) {
        first_.push_back(columns_);
        columns_ += static_cast<int>(list.size());
      }
    for (const bs::Constraint& c : model.constraints) {
      scale_.push_back(c.limit > 0 ? c.limit : 1.0);
      rhs_.push_back(c.allowed / scale_.back());
    }
  }

  Outcome solve() {
    // A solution CBC accepts within its feasibility tolerance may exceed a budget by more
    // than docs/search.md's slack: tighten the rows it exceeds and solve again.
    for (int attempt = 0; attempt < 6; ++attempt) {
      Outcome out = solve_once();
      if (out.status != Outcome::kOptimal) return out;
      std::vector<double> total(model_.constraints.size(), 0.0);
      for (size_t l = 0; l < model_.lists.size(); ++l)
        for (int k = 0; k < 2; ++k) {
          const auto& list = model_.lists[l][k];
          const auto it = std::find_if(list.begin(), list.end(), [&](const bs::Item& item) {
            return item.index == out.choice[l][k];
          });
          for (size_t d = 0; d < total.size(); ++d) total[d] += it->cost[d];
        }
      bool fits = true;
      for (size_t d = 0; d < total.size(); ++d) {
        const double over = total[d] - model_.constraints[d].allowed;
        if (over <= 0) continue;
        fits = false;
        rhs_[d] -= over / scale_[d] + 1e-12;
      }
      if (fits) return out;
    }
    throw std::runtime_error(std::string(kWho) +
                             ": CBC's solutions keep exceeding a budget beyond its tolerance");
  }

 private:
  Outcome solve_once() const {
    CoinPackedMatrix matrix(false, 0, 0);  // row-ordered
    matrix.setDimensions(0, columns_);
    std::vector<double> objective(columns_), lower(columns_, 0.0), upper(columns_, 1.0);
    std::vector<double> row_lower, row_upper;
    std::vector<std::vector<std::pair<int, double>>> cost_rows(model_.constraints.size());
    size_t list_index = 0;
    for (const auto& layer : model_.lists)
      for (const auto& list : layer) {
        std::vector<int> indices;
        std::vector<double> ones;
        for (size_t i = 0; i < list.size(); ++i) {
          const int column = first_[list_index] + static_cast<int>(i);
          objective[column] = list[i].score;
          indices.push_back(column);
          ones.push_back(1.0);
          for (size_t d = 0; d < model_.constraints.size(); ++d)
            if (list[i].cost[d] != 0)
              cost_rows[d].emplace_back(column, list[i].cost[d] / scale_[d]);
        }
        matrix.appendRow(static_cast<int>(indices.size()), indices.data(), ones.data());
        row_lower.push_back(1.0);
        row_upper.push_back(1.0);
        ++list_index;
      }
    for (size_t d = 0; d < model_.constraints.size(); ++d) {
      std::vector<int> indices;
      std::vector<double> values;
      for (const auto& [column, value] : cost_rows[d]) {
        indices.push_back(column);
        values.push_back(value);
      }
      matrix.appendRow(static_cast<int>(indices.size()), indices.data(), values.data());
      row_lower.push_back(-COIN_DBL_MAX);
      row_upper.push_back(rhs_[d]);
    }

    Silent silent;
    OsiClpSolverInterface solver;
    solver.passInMessageHandler(&silent);
    solver.setHintParam(OsiDoReducePrint, true, OsiHintTry);
    solver.loadProblem(matrix, lower.data(), upper.data(), objective.data(), row_lower.data(),
                       row_upper.data());
    for (int c = 0; c < columns_; ++c) solver.setInteger(c);

    CbcModel model(solver);
    model.passInMessageHandler(&silent);
    model.solver()->passInMessageHandler(&silent);
    model.setLogLevel(0);
    model.setNumberThreads(0);
    model.setRandomSeed(1);
    model.setMaximumNodes(static_cast<int>(std::min(max_nodes_, kCbcMaxNodes)));
    // Prove optimality to the last digit the scores carry: no cut-off increment or gap.
    model.setDblParam(CbcModel::CbcCutoffIncrement, 1e-12);
    model.setAllowableGap(1e-12);
    model.setAllowableFractionGap(0.0);
    model.setIntegerTolerance(1e-9);
    model.branchAndBound();

    Outcome out;
    out.nodes = model.getNodeCount();
    if (model.isProvenInfeasible() || (model.isProvenOptimal() && model.bestSolution() == nullptr))
      return out;
    if (!model.isProvenOptimal()) {
      const bool limit = model.isNodeLimitReached();
      std::string message =
          std::string(kWho) + ": " + bs::kProblemType + ": CBC stopped " +
          (limit ? "at the node limit of " + std::to_string(max_nodes_)
                 : std::string("without an answer (status ") + std::to_string(model.status()) +
                       ", secondary " + std::to_string(model.secondaryStatus()) + ")") +
          " without proving optimality (best objective so far: ";
      message += model.bestSolution() != nullptr ? bs::format_number(model.getObjValue())
                                                 : std::string("none");
      message += limit ? "); raise the parameter max_nodes or simplify the problem" : ")";
      throw std::runtime_error(message);
    }
    const double* x = model.bestSolution();
    out.status = Outcome::kOptimal;
    out.bound = model.getBestPossibleObjValue();
    out.choice.resize(model_.lists.size());
    list_index = 0;
    for (size_t l = 0; l < model_.lists.size(); ++l)
      for (int k = 0; k < 2; ++k, ++list_index) {
        const auto& list = model_.lists[l][k];
        size_t best = 0;
        for (size_t i = 1; i < list.size(); ++i)
          if (x[first_[list_index] + i] > x[first_[list_index] + best]) best = i;
        out.choice[l][k] = list[best].index;
      }
    return out;
  }

  const bs::Model& model_;
  int64_t max_nodes_;
  int columns_ = 0;
  std::vector<int> first_;  // per list (layer-major, attention then FFN): its first column
  std::vector<double> scale_, rhs_;
};

nlohmann::json solve_mip(const bs::Problem& problem, int64_t max_nodes) {
  if (const auto reason = bs::infeasible_alone(problem))
    return bs::infeasible_document(*reason, true, kName);
  const bs::Model model = bs::make_model(problem);
  const Outcome out = Mip(model, max_nodes).solve();
  if (out.status == Outcome::kInfeasible) {
    const auto conflict =
        bs::minimal_conflict(model.constraints.size(), [&](const std::vector<bool>& active) {
          const bs::Model part = bs::make_model(problem, active);
          return Mip(part, max_nodes).solve().status == Outcome::kOptimal;
        });
    return bs::infeasible_document(bs::infeasible_together(problem, conflict), true, kName);
  }
  nlohmann::json doc = bs::solution_document(problem, out.choice, "optimal", kName);
  doc["lower_bound"] = out.bound;
  doc["nodes"] = out.nodes;
  return doc;
}

class MipSearch {
 public:
  MipSearch(const ts_params& params, const ts_host*)
      : max_nodes_(bs::int_parameter(params, kWho, "max_nodes", kDefaultMaxNodes, 1)) {
    bs::check_parameter_names(params, kWho, {"max_nodes"});
  }

  std::string solve(std::string_view problem_json) const {
    const nlohmann::json doc = bs::read_document(problem_json, kWho);
    return solve_mip(bs::read_problem(doc, kWho), max_nodes_).dump();
  }

 private:
  int64_t max_nodes_;
};

const ts_search_vtable kVtable = sdk::search_vtable<MipSearch>();
const ts_provider kProviders[] = {sdk::provider(TS_KIND_SEARCH, kName, TS_DEVICE_CPU, &kVtable)};

}  // namespace
}  // namespace tessera::search

TESSERA_PLUGIN("tessera-search-mip", "0.1.0", tessera::search::kProviders)
