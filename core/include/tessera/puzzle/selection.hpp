// Puzzle's search problem (reference: puzzle.md, "The MIP"): one attention and one FFN variant
// per layer, minimising the summed replace-1-block KL, under budgets taken from the measured
// costs at one batch size of the scenario:
//
//   decode_s      sum of the blocks' decode-step times <= parent's step / decode_speedup - head
//   prefill_s     the same for the prefill of the scenario's prompt
//   memory_bytes  sum of weight bytes + batch * (prefill_len + decode_len) * KV bytes per token
//                 <= memory_fraction * the parent's
//   diversity     at most max_common sub-block choices in common with each earlier solution
//
// The parent's time is the sum of its measured parts (the same measurements the budgets
// constrain), so a speedup of 1 admits the parent. The problem goes to a search provider as a
// "puzzle.block_selection" document (docs/search.md); its solution comes back as a Choice.
#pragma once

#include <tessera/puzzle/costs.hpp>
#include <tessera/puzzle/library.hpp>
#include <tessera/puzzle/scoring.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tessera::puzzle {

// Per layer: {attention variant, FFN variant}.
using Choice = std::vector<std::pair<std::string, std::string>>;

struct Constraints {
  size_t batch = 0;             // index into the scenario's batch sizes
  double decode_speedup = 0;    // 0: no decode budget
  double prefill_speedup = 0;   // 0: no prefill budget
  double memory_fraction = 0;   // 0: no memory budget
  std::vector<Choice> earlier;  // for diversity
  int32_t max_common = -1;      // < 0: no diversity constraint
};

// What a choice is predicted to give, from the scores and the measured parts.
struct Prediction {
  double kl = 0;             // summed replace-1-block KL (the objective)
  double decode_s = 0;       // a decode step: the blocks plus the head
  double prefill_s = 0;      // the prompt's prefill: the blocks plus the head
  int64_t memory_bytes = 0;  // the blocks' weights and KV cache at the batch size
  double decode_speedup = 0, prefill_speedup = 0, memory_fraction = 0;  // against the parent
};

// The problem document. Throws Error for a batch index outside the scenario or a speedup or
// fraction that is negative.
std::string selection_problem(const std::vector<LayerVariants>& library, const ScoreState& scores,
                              const Costs& costs, const Constraints& constraints,
                              const std::string& description);

// Why no choice of blocks can meet the constraints' speedups: the model outside its blocks
// (embedding, norms, head) alone takes longer than the target allows. Empty when it does not.
std::string unreachable_target(const std::vector<LayerVariants>& library, const ScoreState& scores,
                               const Costs& costs, const Constraints& constraints);

struct Selection {
  bool feasible = false;
  std::string reason;  // why not, as the provider says it
  Choice choice;
};

// Reads a provider's solution; throws Error when it is not a solution of this library.
Selection parse_selection(const std::string& solution_json,
                          const std::vector<LayerVariants>& library);

// The parent's own choice.
Choice parent_choice(const std::vector<LayerVariants>& library);

Prediction predict(const Choice& choice, const std::vector<LayerVariants>& library,
                   const ScoreState& scores, const Costs& costs, size_t batch);

// Sub-block choices two architectures have in common.
int32_t common_choices(const Choice& a, const Choice& b);

}  // namespace tessera::puzzle
