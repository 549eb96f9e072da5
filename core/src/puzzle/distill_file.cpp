#include <tessera/puzzle/distill_file.hpp>

#include <cmath>

#include "json_artefact.hpp"

namespace tessera::puzzle {

DistillSummary parse_distill_json(const std::string& text, const std::string& source) {
  const JsonReader r(source);
  const ojson j = parse_json(r, text);
  DistillSummary s;
  s.steps = r.integer(j, "steps", "the document");
  s.tokens = r.integer(j, "tokens", "the document");
  s.seconds = r.number(j, "seconds", "the document");
  const ojson& layers = r.member(j, "layers", "the document");
  if (!layers.is_array()) r.fail("layers", "must be an array");
  for (size_t l = 0; l < layers.size(); ++l) {
    PerPart<DistilledVariant> layer;
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::string key = part == TS_KIND_ATTENTION ? "attention" : "ffn";
      const std::string path = "layers[" + std::to_string(l) + "]";
      const ojson& list = r.member(layers[l], key, path);
      if (!list.is_array()) r.fail(path + "." + key, "must be an array");
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string at = path + "." + key + "[" + std::to_string(i) + "]";
        DistilledVariant v;
        v.name = r.string(list[i], "name", at);
        // A loss that was not measured (or not finite) is written as null.
        v.before =
            r.member(list[i], "before", at).is_null() ? NAN : r.number(list[i], "before", at);
        v.after = r.member(list[i], "after", at).is_null() ? NAN : r.number(list[i], "after", at);
        layer.of(part).push_back(std::move(v));
      }
    }
    s.layers.push_back(std::move(layer));
  }
  return s;
}

DistillSummary read_distill_summary(const std::filesystem::path& path) {
  return parse_distill_json(read_artefact(path, "the distillation summary"), path.string());
}

}  // namespace tessera::puzzle
