// The TOML helpers of manifests and training configs; see toml_reader.hpp.
#include <tessera/engine/error.hpp>
#include <tessera/engine/toml_reader.hpp>

#include "toml_hazards.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace tessera::toml_fields {

// ------------------------------------------------------------ error helpers

SourceLocation Reader::location(const toml::source_region& region) const {
  return SourceLocation{source_, static_cast<int>(region.begin.line),
                        static_cast<int>(region.begin.column)};
}

void Reader::fail(const toml::source_region& region, const std::string& message) const {
  const int line = region.begin.line > 0 ? static_cast<int>(region.begin.line) : 1;
  const int column = region.begin.column > 0 ? static_cast<int>(region.begin.column) : 1;
  throw ManifestError(source_, line, column, message);
}

namespace {

ManifestError syntax_error(const toml::parse_error& e, const std::string& source_name) {
  return ManifestError(source_name, static_cast<int>(e.source().begin.line),
                       static_cast<int>(e.source().begin.column),
                       "TOML syntax error: " + std::string(e.description()));
}

[[noreturn]] void fail_nul(const toml::source_region& at, const std::string& source_name,
                           const std::string& what) {
  throw ManifestError(source_name, static_cast<int>(at.begin.line),
                      static_cast<int>(at.begin.column),
                      what + " holds a NUL character (\\u0000); no name, kind or path can");
}

// NUL in a key or a string would cut a path short where the system reads it (another file
// opened than the one named) and cut messages off: refused wherever it is.
void refuse_nul(const toml::node& node, const std::string& source_name) {
  if (const auto* s = node.as_string()) {
    if (s->get().find('\0') != std::string::npos) fail_nul(node.source(), source_name, "a string");
  } else if (const auto* t = node.as_table()) {
    for (const auto& [key, value] : *t) {
      if (key.str().find('\0') != std::string_view::npos)
        fail_nul(key.source(), source_name, "a key");
      refuse_nul(value, source_name);
    }
  } else if (const auto* a = node.as_array()) {
    for (const toml::node& item : *a) refuse_nul(item, source_name);
  }
}

}  // namespace

toml::table parse_document(std::string_view text, const std::string& source_name) {
  if (const Hazard hazard = find_hazard(text); hazard.at != std::string_view::npos) {
    // An earlier syntax error comes first; the statements before the hazard's parse safely.
    try {
      (void)toml::parse(text.substr(0, hazard.statement), std::string_view(source_name));
    } catch (const toml::parse_error& e) {
      throw syntax_error(e, source_name);
    }
    const size_t line_begin = text.substr(0, hazard.at).rfind('\n') + 1;  // npos + 1 == 0
    throw ManifestError(
        source_name, static_cast<int>(std::count(text.begin(), text.begin() + hazard.at, '\n')) + 1,
        static_cast<int>(hazard.at - line_begin) + 1, "TOML syntax error: " + hazard.what);
  }
  toml::table document;
  try {
    document = toml::parse(text, std::string_view(source_name));
  } catch (const toml::parse_error& e) {
    throw syntax_error(e, source_name);
  }
  refuse_nul(document, source_name);
  return document;
}

const char* type_description(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

// Edit distance, for "did you mean" hints on misspelt keys.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Rejects keys of `table` that are not in `allowed`, reporting the first one in
// document order (toml++ iterates keys sorted, not in the order written).
void check_keys(const Reader& r, const toml::table& table, const std::string& table_name,
                const std::vector<std::string>& allowed) {
  const toml::key* first = nullptr;
  for (auto&& [key, node] : table) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
    const auto& b = key.source().begin;
    if (first == nullptr || b.line < first->source().begin.line ||
        (b.line == first->source().begin.line && b.column < first->source().begin.column)) {
      first = &key;
    }
  }
  if (first == nullptr) return;
  std::string message = "unknown key '" + std::string(first->str()) + "' in " + table_name;
  // The nearest allowed key within two edits (the first of equals, in the order allowed).
  const std::string* nearest = nullptr;
  size_t best = 3;
  for (const std::string& candidate : allowed) {
    const size_t d = edit_distance(first->str(), candidate);
    if (d < best) {
      best = d;
      nearest = &candidate;
    }
  }
  if (nearest != nullptr) message += " (did you mean '" + *nearest + "'?)";
  r.fail(first->source(), message + "; allowed keys: " + join(allowed));
}

// ------------------------------------------------------------ typed getters

// Each getter returns nullopt when the key is absent and fails when it has the
// wrong type. `where` names the table for messages, e.g. "[model]".
std::string key_in(std::string_view key, const std::string& where) {
  return "'" + std::string(key) + "' in " + where;
}

std::optional<int64_t> get_int(const Reader& r, const toml::table& t, std::string_view key,
                               const std::string& where) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* v = node->as_integer()) return v->get();
  r.fail(node->source(),
         key_in(key, where) + " must be an integer, got " + type_description(*node));
}

// An integer in [min, max], for the int32 fields of the specs.
std::optional<int32_t> get_int32(const Reader& r, const toml::table& t, std::string_view key,
                                 const std::string& where, int64_t min, int64_t max) {
  const std::optional<int64_t> value = get_int(r, t, key, where);
  if (!value) return std::nullopt;
  if (*value < min || *value > max) {
    std::string expected = min == 1 && max == kInt32Max   ? "a positive integer"
                           : min == 0 && max == kInt32Max ? "an integer >= 0"
                           : max == kInt32Max             ? "an integer >= " + std::to_string(min)
                                              : "an integer in [" + std::to_string(min) + ", " +
                                                    std::to_string(max) + "]";
    r.fail(t.get(key)->source(),
           key_in(key, where) + " is " + std::to_string(*value) + "; expected " + expected);
  }
  return static_cast<int32_t>(*value);
}

// A number; integers are accepted and converted.
std::optional<double> get_number(const Reader& r, const toml::table& t, std::string_view key,
                                 const std::string& where) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* v = node->as_floating_point()) return v->get();
  if (const auto* v = node->as_integer()) return static_cast<double>(v->get());
  r.fail(node->source(), key_in(key, where) + " must be a number, got " + type_description(*node));
}

std::optional<double> get_positive_number(const Reader& r, const toml::table& t,
                                          std::string_view key, const std::string& where) {
  const std::optional<double> value = get_number(r, t, key, where);
  if (value && !(*value > 0.0 && std::isfinite(*value))) {
    std::ostringstream shown;
    shown << *value;
    r.fail(t.get(key)->source(),
           key_in(key, where) + " is " + shown.str() + "; expected a finite number > 0");
  }
  return value;
}

std::optional<bool> get_bool(const Reader& r, const toml::table& t, std::string_view key,
                             const std::string& where) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* v = node->as_boolean()) return v->get();
  r.fail(node->source(),
         key_in(key, where) + " must be a boolean (true or false), got " + type_description(*node));
}

std::optional<std::string> get_string(const Reader& r, const toml::table& t, std::string_view key,
                                      const std::string& where) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* v = node->as_string()) return v->get();
  r.fail(node->source(), key_in(key, where) + " must be a string, got " + type_description(*node));
}

// A string from a fixed set of choices.
std::optional<std::string> get_choice(const Reader& r, const toml::table& t, std::string_view key,
                                      const std::string& where,
                                      const std::vector<std::string>& choices) {
  std::optional<std::string> value = get_string(r, t, key, where);
  if (value && std::find(choices.begin(), choices.end(), *value) == choices.end()) {
    std::vector<std::string> quoted;
    quoted.reserve(choices.size());
    for (const std::string& c : choices) quoted.push_back("\"" + c + "\"");
    r.fail(t.get(key)->source(),
           key_in(key, where) + " is \"" + *value + "\"; expected one of " + join(quoted));
  }
  return value;
}

const toml::table* get_table(const Reader& r, const toml::table& t, std::string_view key,
                             const std::string& where, const std::string& example) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return nullptr;
  if (const auto* v = node->as_table()) return v;
  r.fail(node->source(),
         key_in(key, where) + " must be a table" + example + ", got " + type_description(*node));
}

std::filesystem::path resolve(const std::filesystem::path& base_dir, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_relative() && !base_dir.empty()) p = base_dir / p;
  return p.lexically_normal();
}

}  // namespace tessera::toml_fields
