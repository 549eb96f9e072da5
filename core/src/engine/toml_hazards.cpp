// The hazard scan run before toml++ parses a document (toml_hazards.hpp says why).
#include "toml_hazards.hpp"

#include <algorithm>
#include <utility>

namespace tessera::toml_fields {

Hazard find_hazard(std::string_view text) {
  constexpr size_t npos = std::string_view::npos;
  const auto is = [&](size_t i, std::string_view chars) {
    return i < text.size() && chars.find(text[i]) != npos;
  };
  const auto skip = [&](size_t i, std::string_view chars) {
    while (is(i, chars)) ++i;
    return i;
  };
  const auto digit = [&](size_t i) { return i < text.size() && text[i] >= '0' && text[i] <= '9'; };
  const auto non_ascii = [&](size_t i) {
    return i < text.size() && static_cast<unsigned char>(text[i]) >= 0x80;
  };
  const auto date_ends_at = [&](size_t end) {  // YYYY-MM-DD just before `end`
    for (size_t k = 0; k < 10; ++k) {
      if (end < 10 || !(k == 4 || k == 7 ? text[end - 10 + k] == '-' : digit(end - 10 + k))) {
        return false;
      }
    }
    return true;
  };
  constexpr std::string_view kKeyStart =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-\"'";
  constexpr std::string_view kValueEnd = " \t\n\v\f\r]},#";  // toml++'s value terminators
  Hazard h;
  const auto found = [&](size_t at, std::string what) {
    h.at = at;
    h.what = std::move(what);
    return h;
  };
  std::string open;           // the [ and { open in the value being read, innermost last
  char last = 0;              // the last character of the value read, blanks and comments aside
  bool line_start = true;     // nothing but blanks since the last line break outside values
  bool expect_value = false;  // after '=', or '[' or ',' in an array
  bool in_token = false;      // in a value that started with a digit or a sign
  const size_t begin = text.starts_with("\xEF\xBB\xBF") ? 3 : 0;  // toml++ skips a byte order mark
  size_t i = begin;
  while (i < text.size()) {
    const char c = text[i];
    if (non_ascii(i)) return found(i, "a non-ASCII character outside a string or comment");
    if (in_token && c == ' ' && digit(i + 1)) {  // toml++ reads on for "YYYY-MM-DD hh:mm:ss"
      if (i + 2 < text.size() && is(i + 2, kValueEnd)) {
        return found(i + 2,
                     "a space and a single digit after a value (a date-time needs hh:mm:ss "
                     "after the space)");
      }
      i += 2;
      continue;
    }
    in_token = in_token && !is(i, kValueEnd);
    if (in_token || (expect_value && (digit(i) || c == '+' || c == '-'))) {
      if ((c == 'T' || c == 't') && date_ends_at(i) && i + 1 < text.size() && !digit(i + 1)) {
        return found(i + 1, "a date-time without a time after 'T'");
      }
      in_token = true;
      expect_value = false;
      line_start = false;
      last = c;
      ++i;
    } else if (c == '"' || c == '\'') {
      const std::string_view triple = c == '"' ? R"(""")" : "'''";
      const bool multi_line = text.substr(i, 3) == triple;
      size_t j = i + (multi_line ? 3 : 1);
      while (j < text.size() &&
             (multi_line ? text.substr(j, 3) != triple : text[j] != c && text[j] != '\n')) {
        if (c == '"' && text[j] == '\\' && multi_line) {
          if (non_ascii(j + 1)) return found(j + 1, "a non-ASCII character after a backslash");
          size_t k = skip(j + 1, " \t");
          if (is(k, "\r\n")) {  // a line-ending backslash
            k = skip(k, " \t\r\n");
            if (non_ascii(k)) {
              return found(k,
                           "a non-ASCII character first after a line-ending backslash "
                           "(write it as \\uXXXX)");
            }
            j = k;
            continue;
          }
          if (k > j + 1 && non_ascii(k)) return found(k, "a non-ASCII character after '\\ '");
        }
        j += c == '"' && text[j] == '\\' ? 2 : 1;
      }
      j += multi_line ? 3 : 1;
      for (int extra = 0; multi_line && extra < 2 && j < text.size() && text[j] == c; ++extra) ++j;
      i = j;
      expect_value = false;
      line_start = false;
      last = c;
    } else if (c == '#') {
      i = std::min(text.find('\n', i), text.size());
    } else if (c == '\n') {
      if (open.empty()) {
        line_start = true;
        expect_value = false;
        h.statement = i + 1;
      }
      ++i;
    } else if (c == '[' && open.empty() && line_start) {  // a table header
      size_t j = skip(i + 1, " \t");
      const bool blank = j > i + 1;  // "[ [" toml++ refuses by itself
      if (!blank && is(j, "[")) j = skip(j + 1, " \t");
      const bool refused = blank && is(j, "[");
      if (!refused && j < text.size() && text[j] != ']' && !is(j, kKeyStart)) {
        const char k = text[j];
        return found(j,
                     std::string("a table header without a key (bare or quoted) after '[', saw ") +
                         (k == '\n' || k == '\r'  ? "a line break"
                          : k >= 0x20 && k < 0x7f ? "'" + std::string(1, k) + "'"
                          : non_ascii(j)          ? "a non-ASCII character"
                                                  : "a control character"));
      }
      i = j;
      line_start = false;
    } else {
      if (c == '}' && open.ends_with('[') && (last == '[' || last == ',')) {
        return found(i, "expected a value or ']' in the array");
      }
      if (c == '[' || c == '{') {
        open += c;
      } else if ((c == ']' || c == '}') && !open.empty()) {
        open.pop_back();
      }
      if (c != ' ' && c != '\t' && c != '\r') {
        expect_value = c == '=' || (open.ends_with('[') && (c == '[' || c == ','));
        line_start = false;
        last = c;
      }
      ++i;
    }
  }
  return h;
}

}  // namespace tessera::toml_fields
