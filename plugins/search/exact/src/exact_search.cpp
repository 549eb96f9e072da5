// The "exact" search provider: reads the problem document and returns the solution document.
#include <string>
#include <string_view>
#include <tessera/plugin.hpp>
#include <tessera/search/block_selection.hpp>

#include "block_selection.hpp"

namespace tessera::search {
namespace {

namespace bs = sdk::block_selection;

constexpr const char* kWho = "search-exact";
// (No digit separators in call arguments: they crash clang-tidy 14's argument-comment check.)
constexpr int64_t kDefaultMaxNodes = 50000000;

class ExactSearch {
 public:
  ExactSearch(const ts_params& params, const ts_host*)
      : max_nodes_(bs::int_parameter(params, kWho, "max_nodes", kDefaultMaxNodes, 1)) {
    bs::check_parameter_names(params, kWho, {"max_nodes"});
  }

  std::string solve(std::string_view problem_json) const {
    return solve_block_selection(bs::read_document(problem_json, kWho), max_nodes_).dump();
  }

 private:
  int64_t max_nodes_;
};

const ts_search_vtable kVtable = sdk::search_vtable<ExactSearch>();
const ts_provider kProviders[] = {sdk::provider(TS_KIND_SEARCH, "exact", TS_DEVICE_CPU, &kVtable)};

}  // namespace
}  // namespace tessera::search

TESSERA_PLUGIN("tessera-search-exact", "0.1.0", tessera::search::kProviders)
