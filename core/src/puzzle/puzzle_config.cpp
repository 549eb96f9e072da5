#include <tessera/engine/error.hpp>
#include <tessera/engine/input_file.hpp>
#include <tessera/engine/toml_reader.hpp>
#include <tessera/puzzle/puzzle_config.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

namespace tessera::puzzle {

namespace {

namespace fs = std::filesystem;
using namespace toml_fields;

fs::path required_path(const Reader& r, const toml::table& t, std::string_view key,
                       const std::string& where, const fs::path& base_dir,
                       const std::string& what) {
  const std::optional<std::string> s = get_string(r, t, key, where);
  if (!s)
    r.fail(t.source(), "missing required key '" + std::string(key) + "' in " + where + ": " + what);
  if (s->empty()) r.fail(t.get(key)->source(), key_in(key, where) + " is empty; expected " + what);
  return config_path(base_dir, *s);
}

std::string number_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// An array of numbers, each checked by `ok`.
template <typename T, typename Ok>
std::vector<T> number_list(const Reader& r, const toml::table& t, std::string_view key,
                           const std::string& where, const std::string& expected, Ok ok) {
  const toml::node* node = t.get(key);
  const toml::array* list = node->as_array();
  if (list == nullptr || list->empty())
    r.fail(node->source(), key_in(key, where) + " must be a non-empty array of " + expected +
                               ", got " + (list ? "an empty array" : type_description(*node)));
  std::vector<T> out;
  for (const toml::node& item : *list) {
    std::optional<double> v;
    if (const auto* i = item.as_integer()) v = static_cast<double>(i->get());
    if (const auto* f = item.as_floating_point()) v = f->get();
    if (!v || !ok(*v) || (std::is_integral_v<T> && std::floor(*v) != *v))
      r.fail(item.source(), key_in(key, where) + " holds " +
                                (v ? number_text(*v) : std::string(type_description(item))) +
                                "; expected " + expected);
    out.push_back(static_cast<T>(*v));
  }
  return out;
}

void parse_library(const Reader& r, const toml::table& root, PuzzleConfig& config) {
  const std::string where = "[library]";
  const toml::table* t = get_table(r, root, "library", "the document", " ([library])");
  if (t == nullptr) return;  // every key has a default
  check_keys(r, *t, where,
             {"ffn_fractions", "ffn_width_multiple", "kv_heads", "attention_linear",
              "attention_noop", "ffn_linear", "ffn_noop", "ridge", "calibration_tokens"});
  LibrarySection& s = config.library;
  LibraryOptions& o = s.options;
  if (t->contains("ffn_fractions")) {
    o.ffn_fractions = number_list<double>(r, *t, "ffn_fractions", where,
                                          "fractions in (0, 1] of the parent's FFN width",
                                          [](double v) { return v > 0.0 && v <= 1.0; });
  }
  o.ffn_width_multiple =
      get_int32(r, *t, "ffn_width_multiple", where, 1).value_or(o.ffn_width_multiple);
  if (t->contains("kv_heads")) {
    o.kv_heads = number_list<int32_t>(r, *t, "kv_heads", where, "KV-head counts >= 1",
                                      [](double v) { return v >= 1.0 && v <= 1 << 20; });
  }
  o.attention_linear = get_bool(r, *t, "attention_linear", where).value_or(o.attention_linear);
  o.attention_noop = get_bool(r, *t, "attention_noop", where).value_or(o.attention_noop);
  o.ffn_linear = get_bool(r, *t, "ffn_linear", where).value_or(o.ffn_linear);
  o.ffn_noop = get_bool(r, *t, "ffn_noop", where).value_or(o.ffn_noop);
  if (const std::optional<double> ridge = get_number(r, *t, "ridge", where)) {
    if (!(std::isfinite(*ridge) && *ridge > 0.0 && *ridge < 1.0))
      r.fail(t->get("ridge")->source(), key_in("ridge", where) + " is " + number_text(*ridge) +
                                            "; expected a number in (0, 1)");
    o.ridge = *ridge;
  }
  if (const std::optional<int64_t> n = get_int(r, *t, "calibration_tokens", where)) {
    if (*n < 1)
      r.fail(t->get("calibration_tokens")->source(), key_in("calibration_tokens", where) + " is " +
                                                         std::to_string(*n) +
                                                         "; expected an integer >= 1");
    s.calibration_tokens = *n;
  }
}

}  // namespace

PuzzleConfig parse_puzzle_config(std::string_view text, const std::string& source_name,
                                 const fs::path& base_dir) {
  const toml::table root = parse_document(text, source_name);
  const Reader r(source_name);
  check_keys(r, root, "the top level", {"puzzle", "data", "library"});
  PuzzleConfig config;
  config.source = source_name;
  const toml::table* p = get_table(r, root, "puzzle", "the document", " ([puzzle])");
  if (p == nullptr)
    r.fail(root.source(),
           "missing [puzzle] table; it needs parent (the model to rebuild) and "
           "output (the run's folder)");
  check_keys(r, *p, "[puzzle]", {"parent", "output"});
  config.parent = required_path(r, *p, "parent", "[puzzle]", base_dir,
                                "the parent model (a GGUF file, a Hugging Face folder or a "
                                "manifest)");
  config.output = required_path(r, *p, "output", "[puzzle]", base_dir,
                                "the run's folder, where every stage writes its artefact");
  config.data = parse_data_table(text, source_name, base_dir);
  parse_library(r, root, config);
  return config;
}

PuzzleConfig load_puzzle_config(const fs::path& path) {
  if (const std::string what = not_a_regular_file(path); !what.empty())
    throw ManifestError(path.string(), 1, 1,
                        "the puzzle config is " + what + ", not a regular file");
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::error_code ec;
    throw ManifestError(
        path.string(), 1, 1,
        fs::exists(path, ec) ? "cannot read the puzzle config" : "puzzle config does not exist");
  }
  std::ostringstream text;
  text << file.rdbuf();
  std::error_code ec;
  fs::path base_dir = fs::absolute(path, ec).parent_path();
  if (ec) base_dir = path.parent_path();
  PuzzleConfig config = parse_puzzle_config(text.str(), path.string(), base_dir);
  config.source = path;
  return config;
}

}  // namespace tessera::puzzle
