// scores.json: the replace-1-block stage's artefact (docs/puzzle.md has the format). It holds
// every variant's summed KL and agreement so far, so a run stopped after any batch resumes, and
// the means the search reads.
//
//   {"format": "tessera.puzzle.scores", "version": 1,
//    "plan": {"seq_len": 256, "batch_size": 4, "batches": 2},
//    "done": {"batches": 1, "tokens": 1024, "seconds": 130.2}, "complete": false,
//    "layers": [{"attention": [{"name": "gqa_kv3", "kl": 0, "agreement": 1, "kl_sum": 0,
//                               "agreed": 1024}, ...], "ffn": [...]}, ...]}
#pragma once

#include <tessera/puzzle/library.hpp>
#include <tessera/puzzle/scoring.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::puzzle {

inline constexpr int kScoresFormatVersion = 1;

struct ScorePlan {
  int32_t seq_len = 0;
  int32_t batch_size = 0;
  int64_t batches = 0;
  bool operator==(const ScorePlan&) const = default;
};

struct ScoreFile {
  ScorePlan plan;
  ScoreState state;
  bool complete = false;
};

std::string scores_json(const ScoreFile& scores, const std::vector<LayerVariants>& library);
// Throws Error naming the file and the JSON path of a fault, or when the layers and variant
// names are not the library's (the scores were made for another library).
ScoreFile parse_scores_json(const std::string& text, const std::string& source,
                            const std::vector<LayerVariants>& library);
ScoreFile read_scores(const std::filesystem::path& path, const std::vector<LayerVariants>& library);

}  // namespace tessera::puzzle
