// library-distilled/distill.json read back, for the report: what blockwise distillation did to
// every variant it trained (held-out normalised MSE against the parent's block, before and
// after; docs/puzzle.md).
//
//   {"steps": 40, "tokens": 40960, "seconds": 812.5,
//    "layers": [{"attention": [{"name": "gqa_kv1", "before": 0.21, "after": 0.08}, ...],
//                "ffn": [...]}, ...]}
//
// A layer lists only the variants that were trained; "before" is null when it was not measured.
#pragma once

#include <tessera/puzzle/library.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace tessera::puzzle {

struct DistilledVariant {
  std::string name;
  double before = 0;  // NaN: not measured
  double after = 0;
};

struct DistillSummary {
  int64_t steps = 0;
  int64_t tokens = 0;
  double seconds = 0;
  std::vector<PerPart<DistilledVariant>> layers;
};

// Throws Error naming the file and the JSON path of a fault.
DistillSummary parse_distill_json(const std::string& text, const std::string& source);
DistillSummary read_distill_summary(const std::filesystem::path& path);

}  // namespace tessera::puzzle
