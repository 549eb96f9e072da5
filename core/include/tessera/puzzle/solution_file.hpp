// solutions.json: the solve stage's artefact (docs/puzzle.md has the format): every search it
// ran (the main one, the providers compared beside it, the frontier, the diverse solutions),
// each with its budgets, what the provider answered and the choice's predicted figures.
//
//   {"format": "tessera.puzzle.solutions", "version": 1, "main": "main",
//    "solutions": [{"label": "main", "provider": "mip", "batch_size": 1,
//                   "decode_speedup": 1.5, "prefill_speedup": 0, "memory_fraction": 0,
//                   "max_common": -1, "seconds": 0.2, "feasible": true, "reason": "",
//                   "layers": [{"attention": "gqa_kv3", "ffn": "swiglu_768"}, ...],
//                   "predicted": {"kl": 0.41, "decode_s": ..., "prefill_s": ...,
//                                 "memory_bytes": ..., "decode_speedup": 1.52, ...}}, ...]}
#pragma once

#include <tessera/puzzle/selection.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::puzzle {

inline constexpr int kSolutionsFormatVersion = 1;

struct SolveRecord {
  std::string label;  // "main", "greedy", "frontier-2", "diverse-1"
  std::string provider;
  int32_t batch_size = 1;
  double decode_speedup = 0, prefill_speedup = 0, memory_fraction = 0;
  int32_t max_common = -1;
  double seconds = 0;
  bool feasible = false;
  std::string reason;
  Choice choice;
  Prediction predicted;
};

struct Solutions {
  std::string main = "main";  // the label `realize` builds by default
  std::vector<SolveRecord> records;
  const SolveRecord* find(const std::string& label) const;
};

std::string solutions_json(const Solutions& solutions);
// Throws Error naming the file and the JSON path of a fault, or a choice naming a variant the
// library does not have.
Solutions parse_solutions_json(const std::string& text, const std::string& source,
                               const std::vector<LayerVariants>& library);
Solutions read_solutions(const std::filesystem::path& path,
                         const std::vector<LayerVariants>& library);

}  // namespace tessera::puzzle
