#include <tessera/puzzle/cost_file.hpp>

#include "json_artefact.hpp"

namespace tessera::puzzle {

namespace {

constexpr const char* kFormat = "tessera.puzzle.costs";

ojson timings_json(const std::vector<Timing>& t) {
  ojson out = ojson::array();
  for (const Timing& x : t) out.push_back({{"median", x.seconds}, {"noise", x.noise}});
  return out;
}

std::vector<Timing> parse_timings(const JsonReader& r, const ojson& object, const std::string& key,
                                  const std::string& path, size_t expected) {
  const ojson& list = r.member(object, key, path);
  if (!list.is_array() || list.size() != expected)
    r.fail(path + "." + key, "must hold " + std::to_string(expected) +
                                 " timings, one per batch size of the scenario");
  std::vector<Timing> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = path + "." + key + "[" + std::to_string(i) + "]";
    out.push_back({r.number(list[i], "median", at), r.number(list[i], "noise", at)});
  }
  return out;
}

}  // namespace

std::string costs_json(const Costs& c, const std::vector<LayerVariants>& library) {
  ojson j;
  j["format"] = kFormat;
  j["version"] = kCostsFormatVersion;
  j["scenario"] = {{"prefill_len", c.scenario.prefill_len},
                   {"decode_len", c.scenario.decode_len},
                   {"batch_sizes", c.scenario.batch_sizes},
                   {"repeats", c.scenario.repeats}};
  j["device"] = {{"threads", c.threads}, {"weight_dtype", c.weight_dtype}};
  j["measurements"] = c.measurements;
  j["seconds"] = c.seconds;
  j["fixed"] = {{"prefill_s", timings_json(c.fixed_prefill)},
                {"decode_s", timings_json(c.fixed_decode)}};
  j["whole"] = {{"prefill_s", timings_json(c.whole_prefill)},
                {"decode_s", timings_json(c.whole_decode)}};
  j["layers"] = per_variant_json(library, [&](size_t l, ts_kind part, size_t i) {
    const VariantCost& v = c.layers[l].of(part)[i];
    return ojson{{"prefill_s", timings_json(v.prefill)},
                 {"decode_s", timings_json(v.decode)},
                 {"weight_bytes", v.weight_bytes},
                 {"kv_bytes_per_token", v.kv_bytes_per_token},
                 {"measured_in", v.measured_in}};
  });
  return j.dump(1) + "\n";
}

Costs parse_costs_json(const std::string& text, const std::string& source,
                       const std::vector<LayerVariants>& library) {
  const JsonReader r(source);
  const ojson j = parse_artefact(r, text, kFormat, kCostsFormatVersion, "a costs file",
                                 "measure again with --force");
  Costs c;
  const ojson& s = r.member(j, "scenario", "the document");
  c.scenario.prefill_len = static_cast<int32_t>(r.integer(s, "prefill_len", "scenario"));
  c.scenario.decode_len = static_cast<int32_t>(r.integer(s, "decode_len", "scenario"));
  c.scenario.repeats = static_cast<int32_t>(r.integer(s, "repeats", "scenario"));
  c.scenario.batch_sizes.clear();
  const ojson& sizes = r.member(s, "batch_sizes", "scenario");
  if (!sizes.is_array() || sizes.empty())
    r.fail("scenario.batch_sizes", "must be a non-empty array of integers");
  for (const ojson& b : sizes) {
    if (!b.is_number_integer()) r.fail("scenario.batch_sizes", "must hold integers");
    c.scenario.batch_sizes.push_back(b.get<int32_t>());
  }
  const size_t nb = c.scenario.batch_sizes.size();
  const ojson& d = r.member(j, "device", "the document");
  c.threads = static_cast<int32_t>(r.integer(d, "threads", "device"));
  c.weight_dtype = r.string(d, "weight_dtype", "device");
  c.measurements = r.integer(j, "measurements", "the document");
  c.seconds = r.number(j, "seconds", "the document");
  const ojson& fixed = r.member(j, "fixed", "the document");
  c.fixed_prefill = parse_timings(r, fixed, "prefill_s", "fixed", nb);
  c.fixed_decode = parse_timings(r, fixed, "decode_s", "fixed", nb);
  const ojson& whole = r.member(j, "whole", "the document");
  c.whole_prefill = parse_timings(r, whole, "prefill_s", "whole", nb);
  c.whole_decode = parse_timings(r, whole, "decode_s", "whole", nb);
  c.layers = shaped_like<VariantCost>(library);
  read_per_variant(r, r.member(j, "layers", "the document"), library,
                   "(were these costs measured for another library?)", "",
                   [&](size_t l, ts_kind part, size_t i, const ojson& e, const std::string& at) {
                     VariantCost& v = c.layers[l].of(part)[i];
                     v.prefill = parse_timings(r, e, "prefill_s", at, nb);
                     v.decode = parse_timings(r, e, "decode_s", at, nb);
                     v.weight_bytes = r.integer(e, "weight_bytes", at);
                     v.kv_bytes_per_token = r.integer(e, "kv_bytes_per_token", at);
                     v.measured_in = static_cast<int32_t>(r.integer(e, "measured_in", at));
                   });
  return c;
}

Costs read_costs(const std::filesystem::path& path, const std::vector<LayerVariants>& library) {
  return parse_costs_json(read_artefact(path, "the costs file"), path.string(), library);
}

}  // namespace tessera::puzzle
