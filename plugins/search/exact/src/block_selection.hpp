// "puzzle.block_selection": pick one attention and one FFN variant per layer, minimising
// the summed score under budgets on any named costs and an optional diversity constraint.
// See docs/search.md.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

namespace tessera::search {

// Solves the problem exactly (branch and bound with Lagrangian bounds). Returns the solution
// document; an infeasible problem gives {"status": "infeasible", "reason": ...}. Throws
// std::invalid_argument naming the JSON path of a malformed field, and std::runtime_error
// when the search visits more than max_nodes nodes without proving optimality.
nlohmann::json solve_block_selection(const nlohmann::json& problem, int64_t max_nodes);

}  // namespace tessera::search
