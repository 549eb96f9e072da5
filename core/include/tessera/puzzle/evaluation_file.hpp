// evaluation.json read back (docs/puzzle.md has the format), for the report: what the evaluate
// stage measured of each child beside the parent.
//
// Version 1 measured one child; version 2 lists every child evaluated (the main one, the
// solutions evaluated beside it, the globally distilled one) with the parent's figures once:
//
//   {"format": "tessera.puzzle.evaluation", "version": 2, "tokens": 2048,
//    "parent": {"perplexity": 16.8, "mmlu": {"questions": 570, "accuracy": 0.31}},
//    "children": [{"label": "main", "folder": "child", "solution": "main", "provider": "mip",
//                  "quality": {"kl": 0.66, "agreement": 0.59, "perplexity": 28.9},
//                  "mmlu": {...}, "speed": [SPEED, ...],
//                  "predicted": {"batch": 1, "kl": 0.71, "decode_speedup": 1.5,
//                                "prefill_speedup": 1.45}}, ...]}
//   SPEED = {"batch", "parent_prefill_s", "child_prefill_s", "parent_decode_s",
//            "child_decode_s", "prefill_speedup", "decode_speedup"}
//
// Version 1 ({"solution", "quality": {"tokens", "kl", "agreement", "parent_perplexity",
// "child_perplexity"}, "speed", "predicted"}) reads as one child labelled by its solution.
// "mmlu" and "predicted" are optional in both.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tessera::puzzle {

struct MmluFigures {
  int64_t questions = 0;
  double accuracy = 0;  // share of questions
};

// One batch size of the scenario, parent and child alternating.
struct MeasuredSpeed {
  int32_t batch = 1;
  double parent_prefill_s = 0, child_prefill_s = 0;
  double parent_decode_s = 0, child_decode_s = 0;
  double prefill_speedup = 0, decode_speedup = 0;
};

// What the search predicted for the child's solution.
struct PredictedFigures {
  int32_t batch = 1;  // the batch size the budgets were set at
  double kl = 0;      // summed replace-1-block KL
  double decode_speedup = 0, prefill_speedup = 0;
};

struct EvaluatedChild {
  std::string label;     // "main", "greedy", "main+gkd"
  std::string folder;    // its folder in the output folder ("child"); may be empty
  std::string solution;  // the solution of solutions.json it was realised from
  std::string provider;  // may be empty
  double kl = 0;         // KL(p_parent || p_child), mean over tokens
  double agreement = 0;  // share of tokens whose argmax is the parent's
  double perplexity = 0;
  std::optional<MmluFigures> mmlu;
  std::vector<MeasuredSpeed> speed;
  std::optional<PredictedFigures> predicted;

  // The speed measured at `batch`; nullptr when that batch size was not timed.
  const MeasuredSpeed* speed_at(int32_t batch) const;
};

struct Evaluation {
  int32_t version = 2;           // of the file read
  int64_t tokens = 0;            // held-out tokens of the quality figures
  double parent_perplexity = 0;  // NaN when not measured (no child evaluated)
  std::optional<MmluFigures> parent_mmlu;
  std::vector<EvaluatedChild> children;
};

// Throws Error naming the file and the JSON path of a fault.
Evaluation parse_evaluation_json(const std::string& text, const std::string& source);
Evaluation read_evaluation(const std::filesystem::path& path);

}  // namespace tessera::puzzle
