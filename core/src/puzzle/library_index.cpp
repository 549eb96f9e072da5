#include <tessera/engine/error.hpp>
#include <tessera/puzzle/library_index.hpp>

#include <cmath>

#include "json_artefact.hpp"

namespace tessera::puzzle {

namespace {

constexpr const char* kFormat = "tessera.puzzle.library";

ojson params_json(const ParamList& params) {
  ojson out = ojson::object();
  for (const Param& p : params.items()) {
    std::visit([&](const auto& v) { out[p.key] = v; }, p.value);
  }
  return out;
}

ojson variant_json(const Variant& v) {
  ojson j;
  j["name"] = v.name;
  j["kind"] = v.block.kind;
  if (!v.block.plugin.empty()) j["plugin"] = v.block.plugin;
  j["prefix"] = v.block.prefix;
  j["params"] = params_json(v.block.params);
  j["init"] = std::string(to_string(v.init));
  j["parameters"] = v.parameters;
  j["kv_heads"] = v.kv_heads;
  j["fit_nmse"] = std::isfinite(v.fit_nmse) ? ojson(v.fit_nmse) : ojson(nullptr);
  return j;
}

VariantInit init_of(const JsonReader& r, const std::string& text, const std::string& path) {
  for (const VariantInit i : {VariantInit::kParent, VariantInit::kPruned, VariantInit::kMeanPooled,
                              VariantInit::kLeastSquares, VariantInit::kNone}) {
    if (to_string(i) == text) return i;
  }
  r.fail(path, "is '" + text + "'; expected parent, pruned, mean-pooled, least-squares or none");
}

Variant parse_variant(const JsonReader& r, const ojson& j, ts_kind part, const std::string& path) {
  Variant v;
  v.part = part;
  v.name = r.string(j, "name", path);
  v.block.kind = r.string(j, "kind", path);
  if (j.contains("plugin")) v.block.plugin = r.string(j, "plugin", path);
  v.block.prefix = r.string(j, "prefix", path);
  const ojson& params = r.member(j, "params", path);
  if (!params.is_object()) r.fail(path + ".params", "must be an object");
  for (const auto& [key, value] : params.items()) {
    const std::string at = path + ".params." + key;
    if (value.is_boolean()) {
      v.block.params.set(key, value.get<bool>());
    } else if (value.is_number_integer()) {
      v.block.params.set(key, value.get<int64_t>());
    } else if (value.is_number()) {
      v.block.params.set(key, value.get<double>());
    } else if (value.is_string()) {
      v.block.params.set(key, value.get<std::string>());
    } else if (value.is_array()) {
      std::vector<int64_t> items;
      for (const ojson& e : value) {
        if (!e.is_number_integer()) r.fail(at, "must be an array of integers");
        items.push_back(e.get<int64_t>());
      }
      v.block.params.set(key, items);
    } else {
      r.fail(at, "must be a boolean, number, string or array of integers");
    }
  }
  v.init = init_of(r, r.string(j, "init", path), path + ".init");
  v.parameters = r.integer(j, "parameters", path);
  v.kv_heads = static_cast<int32_t>(r.integer(j, "kv_heads", path));
  const ojson& fit = r.member(j, "fit_nmse", path);
  if (!fit.is_null()) v.fit_nmse = r.number(j, "fit_nmse", path);
  return v;
}

}  // namespace

std::string library_json(const LibraryIndex& index) {
  ojson j;
  j["format"] = kFormat;
  j["version"] = kLibraryFormatVersion;
  j["parent"] = {{"path", index.parent_path},
                 {"name", index.parent_name},
                 {"layers", index.layers.size()},
                 {"hidden_size", index.hidden_size}};
  j["calibration"] = {{"tokens", index.calibration_tokens}, {"seconds", index.calibration_seconds}};
  const LibraryOptions& o = index.options;
  j["options"] = {{"ffn_fractions", o.ffn_fractions},
                  {"ffn_width_multiple", o.ffn_width_multiple},
                  {"kv_heads", o.kv_heads},
                  {"attention_linear", o.attention_linear},
                  {"attention_noop", o.attention_noop},
                  {"ffn_linear", o.ffn_linear},
                  {"ffn_noop", o.ffn_noop},
                  {"ridge", o.ridge}};
  ojson layers = ojson::array();
  for (const LayerVariants& lv : index.layers) {
    ojson layer;
    layer["attention"] = ojson::array();
    layer["ffn"] = ojson::array();
    for (const Variant& v : lv.attention) layer["attention"].push_back(variant_json(v));
    for (const Variant& v : lv.ffn) layer["ffn"].push_back(variant_json(v));
    layers.push_back(std::move(layer));
  }
  j["layers"] = std::move(layers);
  return j.dump(1) + "\n";
}

LibraryIndex parse_library_json(const std::string& text, const std::string& source) {
  const JsonReader r(source);
  const ojson j = parse_artefact(r, text, kFormat, kLibraryFormatVersion, "a block library",
                                 "rebuild the library");
  LibraryIndex index;
  const ojson& parent = r.member(j, "parent", "the document");
  index.parent_path = r.string(parent, "path", "parent");
  index.parent_name = r.string(parent, "name", "parent");
  index.hidden_size = r.integer(parent, "hidden_size", "parent");
  const ojson& cal = r.member(j, "calibration", "the document");
  index.calibration_tokens = r.integer(cal, "tokens", "calibration");
  index.calibration_seconds = r.number(cal, "seconds", "calibration");
  const ojson& o = r.member(j, "options", "the document");
  LibraryOptions& opt = index.options;
  opt.ffn_fractions.clear();
  for (const ojson& f : r.member(o, "ffn_fractions", "options")) {
    if (!f.is_number()) r.fail("options.ffn_fractions", "must hold numbers");
    opt.ffn_fractions.push_back(f.get<double>());
  }
  opt.ffn_width_multiple = r.integer(o, "ffn_width_multiple", "options");
  for (const ojson& k : r.member(o, "kv_heads", "options")) {
    if (!k.is_number_integer()) r.fail("options.kv_heads", "must hold integers");
    opt.kv_heads.push_back(k.get<int32_t>());
  }
  opt.attention_linear = r.boolean(o, "attention_linear", "options");
  opt.attention_noop = r.boolean(o, "attention_noop", "options");
  opt.ffn_linear = r.boolean(o, "ffn_linear", "options");
  opt.ffn_noop = r.boolean(o, "ffn_noop", "options");
  opt.ridge = r.number(o, "ridge", "options");
  const ojson& layers = r.member(j, "layers", "the document");
  if (!layers.is_array() || layers.empty()) r.fail("layers", "must be a non-empty array");
  if (r.integer(parent, "layers", "parent") != static_cast<int64_t>(layers.size()))
    r.fail("parent.layers",
           "disagrees with the " + std::to_string(layers.size()) + " entries of layers");
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::string path = "layers[" + std::to_string(l) + "]";
    LayerVariants lv;
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::string key = part == TS_KIND_ATTENTION ? "attention" : "ffn";
      const ojson& list = r.member(layers[l], key, path);
      if (!list.is_array() || list.empty()) r.fail(path + "." + key, "must be a non-empty array");
      for (size_t i = 0; i < list.size(); ++i) {
        (part == TS_KIND_ATTENTION ? lv.attention : lv.ffn)
            .push_back(
                parse_variant(r, list[i], part, path + "." + key + "[" + std::to_string(i) + "]"));
      }
    }
    index.layers.push_back(std::move(lv));
  }
  return index;
}

LibraryIndex read_library_index(const std::filesystem::path& path) {
  return parse_library_json(read_artefact(path, "the library index"), path.string());
}

}  // namespace tessera::puzzle
