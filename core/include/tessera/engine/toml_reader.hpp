// Reading TOML documents with located errors: the helpers behind manifests (engine/manifest.cpp)
// and training configs (train/train_config.cpp). Every failure is a ManifestError at the
// file:line:column of the offending key or value, saying what was found and what was expected.
//
// Include from sources only (it brings in toml++, built header-only with exceptions).
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/engine/manifest.hpp"

namespace tessera::toml_fields {

inline constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// The document's name for messages, and failing at a position in it.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  const std::string& source() const { return source_; }
  SourceLocation location(const toml::source_region& region) const;
  // A region without a position (a node made rather than parsed) points at 1:1.
  [[noreturn]] void fail(const toml::source_region& region, const std::string& message) const;

 private:
  std::string source_;
};

// Parses TOML text; a syntax error is a ManifestError "TOML syntax error: ..." at its position.
toml::table parse_document(std::string_view text, const std::string& source_name);

// "a table", "an integer", ... for messages.
const char* type_description(const toml::node& node);
std::string join(const std::vector<std::string>& items, const std::string& separator = ", ");
// Levenshtein distance, for "did you mean" hints.
size_t edit_distance(std::string_view a, std::string_view b);
// "'key' in [where]".
std::string key_in(std::string_view key, const std::string& where);

// Rejects the first key of `table` (in document order) that is not in `allowed`, with a
// did-you-mean hint and the allowed list.
void check_keys(const Reader& r, const toml::table& table, const std::string& table_name,
                const std::vector<std::string>& allowed);

// Typed getters: nullopt (or nullptr) when the key is absent, a located error when it has the
// wrong type. `where` names the table for messages, e.g. "[model]".
std::optional<int64_t> get_int(const Reader& r, const toml::table& t, std::string_view key,
                               const std::string& where);
// An integer in [min, max].
std::optional<int32_t> get_int32(const Reader& r, const toml::table& t, std::string_view key,
                                 const std::string& where, int64_t min, int64_t max = kInt32Max);
// A number; integers are accepted and converted.
std::optional<double> get_number(const Reader& r, const toml::table& t, std::string_view key,
                                 const std::string& where);
// A finite number > 0.
std::optional<double> get_positive_number(const Reader& r, const toml::table& t,
                                          std::string_view key, const std::string& where);
std::optional<bool> get_bool(const Reader& r, const toml::table& t, std::string_view key,
                             const std::string& where);
std::optional<std::string> get_string(const Reader& r, const toml::table& t, std::string_view key,
                                      const std::string& where);
// A string from a fixed set of choices.
std::optional<std::string> get_choice(const Reader& r, const toml::table& t, std::string_view key,
                                      const std::string& where,
                                      const std::vector<std::string>& choices);
// `example` completes "must be a table<example>, got ...".
const toml::table* get_table(const Reader& r, const toml::table& t, std::string_view key,
                             const std::string& where, const std::string& example);

// A path from a document, relative ones taken from base_dir (when not empty).
std::filesystem::path resolve(const std::filesystem::path& base_dir, const std::string& path);

}  // namespace tessera::toml_fields
