// Puzzle's replace-1-block scores (reference: puzzle.md, "Scoring"): each library variant is put
// into the otherwise unchanged parent and the whole model is measured on held-out text against
// the parent's own next-token distribution:
//
//   kl         mean over tokens of KL(p_parent || p_child)      (the paper's best metric)
//   agreement  share of tokens whose argmax is the parent's
//
// One parent pass per batch records the residual stream entering every layer; a variant of
// layer l then runs only layers l .. L-1 from it. The parent's own blocks score 0 and 1 without
// running. Sums are kept per variant so a scoring run can stop after any batch and resume.
#pragma once

#include <tessera/engine/model.hpp>
#include <tessera/puzzle/library.hpp>
#include <tessera/train/objective.hpp>

#include <cstdint>
#include <functional>
#include <vector>

namespace tessera::puzzle {

struct ScoreSums {
  double kl = 0;       // summed over tokens
  int64_t agreed = 0;  // tokens whose argmax is the parent's
};

using LayerScoreSums = PerPart<ScoreSums>;  // parallel to LayerVariants

// What a scoring run has measured so far.
struct ScoreState {
  int64_t batches = 0;  // batches done
  int64_t tokens = 0;   // tokens scored
  double seconds = 0;   // time spent
  std::vector<LayerScoreSums> layers;
};

// Empty sums shaped like the library.
ScoreState empty_scores(const std::vector<LayerVariants>& library);

// Scores every variant on one batch and adds to `state`. `model` runs the parent's manifest over
// a store holding every variant's weights (the library folder); its blocks are swapped and put
// back, so it is the parent again afterwards. It needs batch.offsets.size() - 1 slots and the
// longest sequence's capacity. `progress` (may be empty) gets the variants done in this batch
// and how many it has.
void score_batch(Model& model, const std::vector<LayerVariants>& library,
                 const train::TrainBatch& batch, ScoreState& state,
                 const std::function<void(int64_t done, int64_t total)>& progress = {});

// Mean KL and agreement of a variant; NaN before any token.
double mean_kl(const ScoreState& state, const ScoreSums& sums);
double agreement(const ScoreState& state, const ScoreSums& sums);

// Sums over rows: KL(p_teacher || p_student) at temperature 1 and the count of rows whose
// argmax agree (ties: the lowest index), both f32 logits [rows, vocab].
ScoreSums compare_logits(const ts_host* host, const float* student, const float* teacher,
                         int64_t rows, int64_t vocab);

}  // namespace tessera::puzzle
