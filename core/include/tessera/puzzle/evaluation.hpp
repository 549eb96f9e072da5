// Puzzle's evaluation: parent and child side by side in one run.
//
//   quality  on held-out text: KL(p_parent || p_child) and next-token agreement (as the scores,
//            now for the whole child), and each model's perplexity on the next tokens
//   speed    for the scenario at each batch size: the prompt's prefill (b x prefill_len
//            tokens, logits of the last) and decode_len generation steps, through
//            Model::forward as generation runs; parent and child alternate, repeat by repeat,
//            so drift of the machine hits both, and the median of each is kept
#pragma once

#include <tessera/engine/model.hpp>
#include <tessera/puzzle/costs.hpp>
#include <tessera/train/objective.hpp>

#include <cstdint>
#include <vector>

namespace tessera::puzzle {

// A held-out batch with the next token of every position (for perplexity).
struct EvalBatch {
  train::TrainBatch inputs;
  std::vector<int32_t> targets;  // one per input token
};

struct QualityFigures {
  int64_t tokens = 0;
  double kl = 0;         // mean over tokens
  double agreement = 0;  // share of tokens
  double parent_perplexity = 0, child_perplexity = 0;
};

QualityFigures compare_quality(Model& parent, Model& child, const std::vector<EvalBatch>& batches);

struct SpeedFigures {
  int32_t batch = 1;
  Timing parent_prefill, child_prefill;  // seconds for b x prefill_len tokens
  Timing parent_decode, child_decode;    // seconds for decode_len steps of b sequences
  double prefill_speedup() const { return parent_prefill.seconds / child_prefill.seconds; }
  double decode_speedup() const { return parent_decode.seconds / child_decode.seconds; }
};

// Both models need slots >= the largest batch size and capacity >= prefill_len + decode_len.
std::vector<SpeedFigures> compare_speed(Model& parent, Model& child, const Scenario& scenario);

}  // namespace tessera::puzzle
