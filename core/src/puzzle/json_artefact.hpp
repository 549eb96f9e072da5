// What every Puzzle artefact (library.json, scores.json, costs.json, ...) shares: a JSON object
// with "format" and "version", read with the JSON path of every fault in its errors.
#pragma once

#include <tessera/engine/error.hpp>

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

// Parses an artefact and checks its format and version; `what` names the artefact for a
// wrong format ("a block library"), `remedy` says what to do about another version.
ojson parse_artefact(const JsonReader& r, const std::string& text, const std::string& format,
                     int64_t version, const std::string& what, const std::string& remedy);

// The file's text; Error naming it (`what`: "the library index") when it is not a readable
// regular file.
std::string read_artefact(const std::filesystem::path& path, const std::string& what);

}  // namespace tessera::puzzle
