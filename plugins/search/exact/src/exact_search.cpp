// The "exact" search provider: parses the problem document, dispatches on its "problem"
// field and returns the solution document.
#include <stdexcept>
#include <string>
#include <string_view>
#include <tessera/plugin.hpp>

#include "block_selection.hpp"

namespace tessera::search {
namespace {

constexpr const char* kKnownProblems = "puzzle.block_selection";

class ExactSearch {
 public:
  ExactSearch(const ts_params& params, const ts_host*) {
    const sdk::Params p(params);
    for (int32_t i = 0; i < params.count; ++i) {
      const char* key = params.items[i].key;
      const std::string name = key ? key : "";
      if (name != "max_nodes")
        throw std::invalid_argument("search-exact: unknown parameter '" + name +
                                    "'; accepted parameters: max_nodes");
    }
    max_nodes_ = p.get_int("max_nodes", max_nodes_);
    if (max_nodes_ < 1)
      throw std::invalid_argument("search-exact: parameter 'max_nodes' is " +
                                  std::to_string(max_nodes_) + ", expected an integer >= 1");
  }

  std::string solve(std::string_view problem_json) const {
    nlohmann::json problem;
    try {
      problem = nlohmann::json::parse(problem_json);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::invalid_argument(std::string("search-exact: the problem is not valid JSON: ") +
                                  e.what());
    }
    if (!problem.is_object())
      throw std::invalid_argument(std::string("search-exact: the problem document is a JSON ") +
                                  problem.type_name() + ", expected an object");
    const auto kind = problem.find("problem");
    if (kind == problem.end() || !kind->is_string())
      throw std::invalid_argument(
          std::string("search-exact: the problem document needs a string field \"problem\" "
                      "naming its type; known problem types: ") +
          kKnownProblems);
    const std::string type = kind->get<std::string>();
    if (type == kBlockSelection) return solve_block_selection(problem, max_nodes_).dump();
    throw std::invalid_argument("search-exact: unknown problem type '" + type +
                                "'; known problem types: " + kKnownProblems);
  }

 private:
  int64_t max_nodes_ = 50'000'000;
};

const ts_search_vtable kVtable = sdk::search_vtable<ExactSearch>();
const ts_provider kProviders[] = {sdk::provider(TS_KIND_SEARCH, "exact", TS_DEVICE_CPU, &kVtable)};

}  // namespace
}  // namespace tessera::search

TESSERA_PLUGIN("tessera-search-exact", "0.1.0", tessera::search::kProviders)
