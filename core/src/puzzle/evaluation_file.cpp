#include <tessera/puzzle/evaluation_file.hpp>

#include <cmath>

#include "json_artefact.hpp"

namespace tessera::puzzle {

namespace {

constexpr const char* kFormat = "tessera.puzzle.evaluation";

std::optional<MmluFigures> read_mmlu(const JsonReader& r, const ojson& object,
                                     const std::string& path) {
  if (!object.contains("mmlu")) return std::nullopt;
  const ojson& m = object["mmlu"];
  const std::string at = path + ".mmlu";
  return MmluFigures{r.integer(m, "questions", at), r.number(m, "accuracy", at)};
}

std::vector<MeasuredSpeed> read_speed(const JsonReader& r, const ojson& object,
                                      const std::string& path) {
  const ojson& list = r.member(object, "speed", path);
  if (!list.is_array()) r.fail(path + ".speed", "must be an array");
  std::vector<MeasuredSpeed> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = path + ".speed[" + std::to_string(i) + "]";
    MeasuredSpeed s;
    s.batch = static_cast<int32_t>(r.integer(list[i], "batch", at));
    s.parent_prefill_s = r.number(list[i], "parent_prefill_s", at);
    s.child_prefill_s = r.number(list[i], "child_prefill_s", at);
    s.parent_decode_s = r.number(list[i], "parent_decode_s", at);
    s.child_decode_s = r.number(list[i], "child_decode_s", at);
    s.prefill_speedup = r.number(list[i], "prefill_speedup", at);
    s.decode_speedup = r.number(list[i], "decode_speedup", at);
    out.push_back(s);
  }
  return out;
}

std::optional<PredictedFigures> read_predicted(const JsonReader& r, const ojson& object,
                                               const std::string& path) {
  if (!object.contains("predicted")) return std::nullopt;
  const ojson& p = object["predicted"];
  const std::string at = path + ".predicted";
  PredictedFigures f;
  f.batch = static_cast<int32_t>(r.integer(p, "batch", at));
  f.kl = r.number(p, "kl", at);
  f.decode_speedup = r.number(p, "decode_speedup", at);
  f.prefill_speedup = r.number(p, "prefill_speedup", at);
  return f;
}

// An optional string member: empty when absent.
std::string optional_string(const JsonReader& r, const ojson& object, const std::string& key,
                            const std::string& path) {
  return object.contains(key) ? r.string(object, key, path) : std::string{};
}

}  // namespace

const MeasuredSpeed* EvaluatedChild::speed_at(int32_t batch) const {
  for (const MeasuredSpeed& s : speed)
    if (s.batch == batch) return &s;
  return nullptr;
}

Evaluation parse_evaluation_json(const std::string& text, const std::string& source) {
  const JsonReader r(source);
  const ojson j = parse_json(r, text);
  if (!j.is_object()) r.fail("the document", "must be an object");
  if (r.string(j, "format", "the document") != kFormat)
    r.fail("format", std::string("must be \"") + kFormat + "\" (is this an evaluation?)");
  Evaluation e;
  const int64_t version = r.integer(j, "version", "the document");
  if (version != 1 && version != 2)
    r.fail("version", "is " + std::to_string(version) +
                          "; this build reads versions 1 and 2 (evaluate again with --force)");
  e.version = static_cast<int32_t>(version);

  if (version == 1) {
    const ojson& q = r.member(j, "quality", "the document");
    e.tokens = r.integer(q, "tokens", "quality");
    e.parent_perplexity = r.number(q, "parent_perplexity", "quality");
    EvaluatedChild c;
    c.solution = r.string(j, "solution", "the document");
    c.label = c.solution;
    c.folder = "child";
    c.kl = r.number(q, "kl", "quality");
    c.agreement = r.number(q, "agreement", "quality");
    c.perplexity = r.number(q, "child_perplexity", "quality");
    c.mmlu = read_mmlu(r, j, "the document");
    c.speed = read_speed(r, j, "the document");
    c.predicted = read_predicted(r, j, "the document");
    e.children.push_back(std::move(c));
    return e;
  }

  e.tokens = r.integer(j, "tokens", "the document");
  const ojson& parent = r.member(j, "parent", "the document");
  // A run that evaluated no child measured no perplexity of the parent either.
  e.parent_perplexity =
      parent.contains("perplexity") ? r.number(parent, "perplexity", "parent") : NAN;
  e.parent_mmlu = read_mmlu(r, parent, "parent");
  const ojson& children = r.member(j, "children", "the document");
  if (!children.is_array()) r.fail("children", "must be an array");
  for (size_t i = 0; i < children.size(); ++i) {
    const std::string at = "children[" + std::to_string(i) + "]";
    const ojson& o = children[i];
    EvaluatedChild c;
    c.label = r.string(o, "label", at);
    c.folder = optional_string(r, o, "folder", at);
    c.solution = optional_string(r, o, "solution", at);
    c.provider = optional_string(r, o, "provider", at);
    const ojson& q = r.member(o, "quality", at);
    c.kl = r.number(q, "kl", at + ".quality");
    c.agreement = r.number(q, "agreement", at + ".quality");
    c.perplexity = r.number(q, "perplexity", at + ".quality");
    c.mmlu = read_mmlu(r, o, at);
    c.speed = read_speed(r, o, at);
    c.predicted = read_predicted(r, o, at);
    e.children.push_back(std::move(c));
  }
  return e;
}

Evaluation read_evaluation(const std::filesystem::path& path) {
  return parse_evaluation_json(read_artefact(path, "the evaluation"), path.string());
}

}  // namespace tessera::puzzle
