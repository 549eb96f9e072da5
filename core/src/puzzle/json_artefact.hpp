// What every Puzzle artefact (library.json, scores.json, costs.json, ...) shares: a JSON object
// with "format" and "version", read with the JSON path of every fault in its errors.
#pragma once

#include <tessera/engine/error.hpp>
#include <tessera/puzzle/library.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace tessera::puzzle {

using ojson = nlohmann::ordered_json;

// Reading, with the JSON path of every fault.
class JsonReader {
 public:
  explicit JsonReader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw Error(source_ + ": " + path + " " + what);
  }
  const ojson& member(const ojson& object, const std::string& key, const std::string& path) const {
    if (!object.is_object()) fail(path, "must be an object");
    const auto it = object.find(key);
    if (it == object.end()) fail(path, "is missing '" + key + "'");
    return *it;
  }
  std::string string(const ojson& object, const std::string& key, const std::string& path) const {
    const ojson& v = member(object, key, path);
    if (!v.is_string()) fail(path + "." + key, "must be a string");
    return v.get<std::string>();
  }
  int64_t integer(const ojson& object, const std::string& key, const std::string& path) const {
    const ojson& v = member(object, key, path);
    if (!v.is_number_integer()) fail(path + "." + key, "must be an integer");
    return v.get<int64_t>();
  }
  double number(const ojson& object, const std::string& key, const std::string& path) const {
    const ojson& v = member(object, key, path);
    if (!v.is_number()) fail(path + "." + key, "must be a number");
    return v.get<double>();
  }
  bool boolean(const ojson& object, const std::string& key, const std::string& path) const {
    const ojson& v = member(object, key, path);
    if (!v.is_boolean()) fail(path + "." + key, "must be true or false");
    return v.get<bool>();
  }

 private:
  std::string source_;
};

// [{"attention": [entry, ...], "ffn": [...]}, ...]: one entry per variant of the library, each
// {"name": the variant's name} followed by what entry(layer, part, index) gives.
template <typename Entry>
ojson per_variant_json(const std::vector<LayerVariants>& library, Entry&& entry) {
  ojson layers = ojson::array();
  for (size_t l = 0; l < library.size(); ++l) {
    ojson layer;
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      ojson list = ojson::array();
      const std::vector<Variant>& variants = library[l].of(part);
      for (size_t i = 0; i < variants.size(); ++i) {
        ojson e = {{"name", variants[i].name}};
        e.update(entry(l, part, i));
        list.push_back(std::move(e));
      }
      layer[part == TS_KIND_ATTENTION ? "attention" : "ffn"] = std::move(list);
    }
    layers.push_back(std::move(layer));
  }
  return layers;
}

// Reads what per_variant_json wrote, checking that it lists the library's layers and variants
// in order (`hint` ends the message of a layer count or a name that differs, and
// `layers_hint` that of the layer count); read(layer, part, index, entry, json path) reads
// each entry.
template <typename Read>
void read_per_variant(const JsonReader& r, const ojson& layers,
                      const std::vector<LayerVariants>& library, const std::string& layers_hint,
                      const std::string& name_hint, Read&& read) {
  if (!layers.is_array() || layers.size() != library.size())
    r.fail("layers", "must be an array of " + std::to_string(library.size()) +
                         " layers, one per layer of the library " + layers_hint);
  for (size_t l = 0; l < library.size(); ++l)
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
                                   variants[i].name + "'" + name_hint);
        read(l, part, i, list[i], at);
      }
    }
}

// Parses JSON text; invalid JSON fails through `r` ("the document is not valid JSON: ...").
ojson parse_json(const JsonReader& r, const std::string& text);

// Parses an artefact and checks its format and version; `what` names the artefact for a
// wrong format ("a block library"), `remedy` says what to do about another version.
ojson parse_artefact(const JsonReader& r, const std::string& text, const std::string& format,
                     int64_t version, const std::string& what, const std::string& remedy);

// The file's text; Error naming it (`what`: "the library index") when it is not a readable
// regular file.
std::string read_artefact(const std::filesystem::path& path, const std::string& what);

}  // namespace tessera::puzzle
