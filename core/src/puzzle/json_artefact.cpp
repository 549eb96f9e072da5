#include <tessera/engine/input_file.hpp>

#include <cerrno>
#include <cstring>

#include <fstream>
#include <sstream>

#include "json_artefact.hpp"

namespace tessera::puzzle {

ojson parse_json(const JsonReader& r, const std::string& text) {
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    r.fail("the document", std::string("is not valid JSON: ") + e.what());
  }
  return j;
}

ojson parse_artefact(const JsonReader& r, const std::string& text, const std::string& format,
                     int64_t version, const std::string& what, const std::string& remedy) {
  ojson j = parse_json(r, text);
  if (!j.is_object()) r.fail("the document", "must be an object");
  if (r.string(j, "format", "the document") != format)
    r.fail("format", "must be \"" + format + "\" (is this " + what + "?)");
  const int64_t found = r.integer(j, "version", "the document");
  if (found != version)
    r.fail("version", "is " + std::to_string(found) + "; this build reads version " +
                          std::to_string(version) + " (" + remedy + ")");
  return j;
}

std::string read_artefact(const std::filesystem::path& path, const std::string& what) {
  if (const std::string kind = not_a_regular_file(path); !kind.empty())
    throw Error(path.string() + ": " + what + " is " + kind + ", not a regular file");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path.string() + ": cannot read " + what);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace tessera::puzzle
