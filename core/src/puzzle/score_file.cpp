#include <tessera/puzzle/score_file.hpp>

#include <cmath>

#include "json_artefact.hpp"

namespace tessera::puzzle {

namespace {

constexpr const char* kFormat = "tessera.puzzle.scores";

ojson finite_or_null(double v) {
  return std::isfinite(v) ? ojson(v) : ojson(nullptr);
}

}  // namespace

std::string scores_json(const ScoreFile& scores, const std::vector<LayerVariants>& library) {
  const ScoreState& s = scores.state;
  ojson j;
  j["format"] = kFormat;
  j["version"] = kScoresFormatVersion;
  j["plan"] = {{"seq_len", scores.plan.seq_len},
               {"batch_size", scores.plan.batch_size},
               {"batches", scores.plan.batches}};
  j["done"] = {{"batches", s.batches}, {"tokens", s.tokens}, {"seconds", s.seconds}};
  j["complete"] = scores.complete;
  j["layers"] = per_variant_json(library, [&](size_t l, ts_kind part, size_t i) {
    const ScoreSums& sums = s.layers[l].of(part)[i];
    return ojson{{"kl", finite_or_null(mean_kl(s, sums))},
                 {"agreement", finite_or_null(agreement(s, sums))},
                 {"kl_sum", sums.kl},
                 {"agreed", sums.agreed}};
  });
  return j.dump(1) + "\n";
}

ScoreFile parse_scores_json(const std::string& text, const std::string& source,
                            const std::vector<LayerVariants>& library) {
  const JsonReader r(source);
  const ojson j = parse_artefact(r, text, kFormat, kScoresFormatVersion, "a scores file",
                                 "score again with --force");
  ScoreFile f;
  const ojson& plan = r.member(j, "plan", "the document");
  f.plan.seq_len = static_cast<int32_t>(r.integer(plan, "seq_len", "plan"));
  f.plan.batch_size = static_cast<int32_t>(r.integer(plan, "batch_size", "plan"));
  f.plan.batches = r.integer(plan, "batches", "plan");
  f.state = empty_scores(library);
  const ojson& done = r.member(j, "done", "the document");
  f.state.batches = r.integer(done, "batches", "done");
  f.state.tokens = r.integer(done, "tokens", "done");
  f.state.seconds = r.number(done, "seconds", "done");
  f.complete = r.boolean(j, "complete", "the document");
  const std::string hint = "(were these scores made for another library?)";
  read_per_variant(r, r.member(j, "layers", "the document"), library, hint, " " + hint,
                   [&](size_t l, ts_kind part, size_t i, const ojson& e, const std::string& at) {
                     ScoreSums& sums = f.state.layers[l].of(part)[i];
                     sums.kl = r.number(e, "kl_sum", at);
                     sums.agreed = r.integer(e, "agreed", at);
                   });
  return f;
}

ScoreFile read_scores(const std::filesystem::path& path,
                      const std::vector<LayerVariants>& library) {
  return parse_scores_json(read_artefact(path, "the scores file"), path.string(), library);
}

}  // namespace tessera::puzzle
