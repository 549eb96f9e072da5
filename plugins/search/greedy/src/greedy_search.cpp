// The "greedy" search provider: Puzzle's greedy baseline for "puzzle.block_selection"
// (docs/search.md). It starts from the lowest-score variant of every list and, while a
// constraint is exceeded, applies the single replacement with the least score increase per
// unit of normalised excess removed. Diversity counts as one more constraint per earlier
// solution. A choice it reaches fits but is not proven optimal (unless the start fits: the
// unconstrained optimum); when it gets stuck it answers "infeasible" without a proof.
#include <string>
#include <string_view>
#include <tessera/plugin.hpp>
#include <tessera/search/block_selection.hpp>
#include <vector>

namespace tessera::search {
namespace {

namespace bs = sdk::block_selection;

constexpr const char* kWho = "search-greedy";
constexpr const char* kName = "greedy";

nlohmann::json solve_greedy(const bs::Problem& problem) {
  if (const auto reason = bs::infeasible_alone(problem))
    return bs::infeasible_document(*reason, true, kName);
  const bs::Model model = bs::make_model(problem);
  bs::Pick pick = bs::best_scores(model);
  const bool start_fits = bs::fits(model, pick.total);
  const std::vector<double> scale = bs::excess_scales(model, pick);
  const double start_excess = bs::excess(model, scale, pick.total);
  int64_t moves = 0;
  if (!bs::reduce_excess(model, scale, pick, moves)) {
    std::vector<std::string> over;
    for (size_t d = 0; d < model.constraints.size(); ++d)
      if (pick.total[d] > model.constraints[d].allowed)
        over.push_back(model.constraints[d].name + " at " + bs::format_number(pick.total[d]) +
                       " (limit " + bs::format_number(model.constraints[d].limit) + ")");
    nlohmann::json doc = bs::infeasible_document(
        "greedy stopped after " + std::to_string(moves) + " replacements with " +
            bs::join_and(over) +
            ": no single replacement lowers the excess. This does not prove that no choice "
            "fits; the exact and mip providers decide",
        false, kName);
    doc["moves"] = moves;
    return doc;
  }
  nlohmann::json doc = bs::solution_document(problem, bs::to_choice(model, pick),
                                             start_fits ? "optimal" : "feasible", kName);
  doc["moves"] = moves;
  doc["start_excess"] = start_excess;
  return doc;
}

class GreedySearch {
 public:
  GreedySearch(const ts_params& params, const ts_host*) {
    bs::check_parameter_names(params, kWho, {});
  }

  std::string solve(std::string_view problem_json) const {
    const nlohmann::json doc = bs::read_document(problem_json, kWho);
    return solve_greedy(bs::read_problem(doc, kWho)).dump();
  }
};

const ts_search_vtable kVtable = sdk::search_vtable<GreedySearch>();
const ts_provider kProviders[] = {sdk::provider(TS_KIND_SEARCH, kName, TS_DEVICE_CPU, &kVtable)};

}  // namespace
}  // namespace tessera::search

TESSERA_PLUGIN("tessera-search-greedy", "0.1.0", tessera::search::kProviders)
