#include <tessera/puzzle/solution_file.hpp>

#include <algorithm>

#include "json_artefact.hpp"

namespace tessera::puzzle {

namespace {

constexpr const char* kFormat = "tessera.puzzle.solutions";

bool has_variant(const std::vector<Variant>& list, const std::string& name) {
  return std::any_of(list.begin(), list.end(), [&](const Variant& v) { return v.name == name; });
}

}  // namespace

const SolveRecord* Solutions::find(const std::string& label) const {
  for (const SolveRecord& r : records)
    if (r.label == label) return &r;
  return nullptr;
}

std::string solutions_json(const Solutions& s) {
  ojson j;
  j["format"] = kFormat;
  j["version"] = kSolutionsFormatVersion;
  j["main"] = s.main;
  ojson list = ojson::array();
  for (const SolveRecord& r : s.records) {
    ojson layers = ojson::array();
    for (const auto& [a, f] : r.choice) layers.push_back({{"attention", a}, {"ffn", f}});
    const Prediction& p = r.predicted;
    list.push_back({{"label", r.label},
                    {"provider", r.provider},
                    {"batch_size", r.batch_size},
                    {"decode_speedup", r.decode_speedup},
                    {"prefill_speedup", r.prefill_speedup},
                    {"memory_fraction", r.memory_fraction},
                    {"max_common", r.max_common},
                    {"seconds", r.seconds},
                    {"feasible", r.feasible},
                    {"reason", r.reason},
                    {"layers", std::move(layers)},
                    {"predicted",
                     {{"kl", p.kl},
                      {"decode_s", p.decode_s},
                      {"prefill_s", p.prefill_s},
                      {"memory_bytes", p.memory_bytes},
                      {"decode_speedup", p.decode_speedup},
                      {"prefill_speedup", p.prefill_speedup},
                      {"memory_fraction", p.memory_fraction}}}});
  }
  j["solutions"] = std::move(list);
  return j.dump(1) + "\n";
}

Solutions parse_solutions_json(const std::string& text, const std::string& source,
                               const std::vector<LayerVariants>& library) {
  const JsonReader r(source);
  const ojson j = parse_artefact(r, text, kFormat, kSolutionsFormatVersion, "a solutions file",
                                 "solve again with --force");
  Solutions s;
  s.main = r.string(j, "main", "the document");
  const ojson& list = r.member(j, "solutions", "the document");
  if (!list.is_array()) r.fail("solutions", "must be an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = "solutions[" + std::to_string(i) + "]";
    const ojson& e = list[i];
    SolveRecord rec;
    rec.label = r.string(e, "label", at);
    rec.provider = r.string(e, "provider", at);
    rec.batch_size = static_cast<int32_t>(r.integer(e, "batch_size", at));
    rec.decode_speedup = r.number(e, "decode_speedup", at);
    rec.prefill_speedup = r.number(e, "prefill_speedup", at);
    rec.memory_fraction = r.number(e, "memory_fraction", at);
    rec.max_common = static_cast<int32_t>(r.integer(e, "max_common", at));
    rec.seconds = r.number(e, "seconds", at);
    rec.feasible = r.boolean(e, "feasible", at);
    rec.reason = r.string(e, "reason", at);
    const ojson& layers = r.member(e, "layers", at);
    if (!layers.is_array() || (rec.feasible && layers.size() != library.size()))
      r.fail(at + ".layers", "must give one choice per layer of the " +
                                 std::to_string(library.size()) + "-layer library");
    for (size_t l = 0; l < layers.size() && l < library.size(); ++l) {
      const std::string lp = at + ".layers[" + std::to_string(l) + "]";
      std::string a = r.string(layers[l], "attention", lp), f = r.string(layers[l], "ffn", lp);
      if (!has_variant(library[l].attention, a))
        r.fail(lp + ".attention", "names '" + a + "', which layer " + std::to_string(l) +
                                      " of the library does not have");
      if (!has_variant(library[l].ffn, f))
        r.fail(lp + ".ffn", "names '" + f + "', which layer " + std::to_string(l) +
                                " of the library does not have");
      rec.choice.emplace_back(std::move(a), std::move(f));
    }
    const ojson& p = r.member(e, "predicted", at);
    const std::string pp = at + ".predicted";
    rec.predicted.kl = r.number(p, "kl", pp);
    rec.predicted.decode_s = r.number(p, "decode_s", pp);
    rec.predicted.prefill_s = r.number(p, "prefill_s", pp);
    rec.predicted.memory_bytes = r.integer(p, "memory_bytes", pp);
    rec.predicted.decode_speedup = r.number(p, "decode_speedup", pp);
    rec.predicted.prefill_speedup = r.number(p, "prefill_speedup", pp);
    rec.predicted.memory_fraction = r.number(p, "memory_fraction", pp);
    s.records.push_back(std::move(rec));
  }
  if (s.find(s.main) == nullptr) r.fail("main", "names '" + s.main + "', which no solution has");
  return s;
}

Solutions read_solutions(const std::filesystem::path& path,
                         const std::vector<LayerVariants>& library) {
  return parse_solutions_json(read_artefact(path, "the solutions file"), path.string(), library);
}

}  // namespace tessera::puzzle
