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
  ojson layers = ojson::array();
  for (size_t l = 0; l < library.size(); ++l) {
    ojson layer;
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      ojson list = ojson::array();
      const std::vector<Variant>& variants = library[l].of(part);
      for (size_t i = 0; i < variants.size(); ++i) {
        const ScoreSums& sums = s.layers[l].of(part)[i];
        list.push_back({{"name", variants[i].name},
                        {"kl", finite_or_null(mean_kl(s, sums))},
                        {"agreement", finite_or_null(agreement(s, sums))},
                        {"kl_sum", sums.kl},
                        {"agreed", sums.agreed}});
      }
      layer[part == TS_KIND_ATTENTION ? "attention" : "ffn"] = std::move(list);
    }
    layers.push_back(std::move(layer));
  }
  j["layers"] = std::move(layers);
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
  const ojson& done = r.member(j, "done", "the document");
  f.state.batches = r.integer(done, "batches", "done");
  f.state.tokens = r.integer(done, "tokens", "done");
  f.state.seconds = r.number(done, "seconds", "done");
  f.complete = r.boolean(j, "complete", "the document");
  const ojson& layers = r.member(j, "layers", "the document");
  if (!layers.is_array() || layers.size() != library.size())
    r.fail("layers", "must be an array of " + std::to_string(library.size()) +
                         " layers, one per layer of the library (were these scores made for "
                         "another library?)");
  f.state = [&] {
    ScoreState s = empty_scores(library);
    s.batches = f.state.batches;
    s.tokens = f.state.tokens;
    s.seconds = f.state.seconds;
    return s;
  }();
  for (size_t l = 0; l < library.size(); ++l) {
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::string key = part == TS_KIND_ATTENTION ? "attention" : "ffn";
      const std::string path = "layers[" + std::to_string(l) + "]." + key;
      const ojson& list = r.member(layers[l], key, "layers[" + std::to_string(l) + "]");
      const std::vector<Variant>& variants = library[l].of(part);
      if (!list.is_array() || list.size() != variants.size())
        r.fail(path, "must list the library's " + std::to_string(variants.size()) + " variants");
      for (size_t i = 0; i < variants.size(); ++i) {
        const std::string at = path + "[" + std::to_string(i) + "]";
        const std::string name = r.string(list[i], "name", at);
        if (name != variants[i].name)
          r.fail(at + ".name", "is '" + name + "' but the library's variant there is '" +
                                   variants[i].name +
                                   "' (were these scores made for another "
                                   "library?)");
        ScoreSums& sums = f.state.layers[l].of(part)[i];
        sums.kl = r.number(list[i], "kl_sum", at);
        sums.agreed = r.integer(list[i], "agreed", at);
      }
    }
  }
  return f;
}

ScoreFile read_scores(const std::filesystem::path& path,
                      const std::vector<LayerVariants>& library) {
  return parse_scores_json(read_artefact(path, "the scores file"), path.string(), library);
}

}  // namespace tessera::puzzle
