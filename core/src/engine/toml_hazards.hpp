// A scan of TOML text for what the packaged toml++ cannot refuse by itself.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tessera::toml_fields {

// Text that toml++ 3.3 (the packaged version) does not turn into a parse_error but asserts on
// (debug builds: abort) or assumes away (release builds: undefined behaviour):
//   - a table header whose key starts with neither a key character nor a quote ("[#", "[" at
//     the end of a line, "[ =", "[[[": marzer/tomlplusplus#301);
//   - '}' where an array expects a value ("[}", "[1, }");
//   - a value, a space and a single digit ("1979-05-27 1", read as the start of a date-time);
//   - a date, 'T' and no digit ("1979-05-27T:", a date-time without its time);
//   - a non-ASCII character where whitespace may appear: outside strings and comments, after a
//     backslash in a multi-line basic string, or first after a line-ending backslash (its
//     whitespace table reaches TOML_UNREACHABLE for U+00A1-U+0499 and other ranges:
//     marzer/tomlplusplus#190, #305).
// Strings, comments and values are read as toml++ reads them (a value that starts with a digit
// or a sign runs to the next space, line break, ']', '}', ',' or '#', quotes and all), so the
// scan agrees with it on any text it reads without error up to the hazard.
struct Hazard {
  size_t at = std::string_view::npos;  // offset of the offending character
  size_t statement = 0;                // where its statement (a line at the top level) begins
  std::string what;
};

// The first hazard in `text`, or one whose `at` is npos.
Hazard find_hazard(std::string_view text);

}  // namespace tessera::toml_fields
