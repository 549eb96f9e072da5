// The little Unicode the tokenizer needs: lenient UTF-8 decoding and the character
// classes of the pre-tokenizer patterns (\p{L}, \p{N}, \s).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tessera::unicode {

// One code point read from UTF-8. Bytes that do not start a valid, shortest-form
// sequence are returned one at a time with `valid` false, so no input byte is lost.
struct DecodedCodePoint {
  char32_t code_point;   // the decoded value; for an invalid byte, the byte's value
  std::uint32_t length;  // bytes consumed, 1..4
  bool valid;
};

// Decodes the code point starting at text[offset] (offset < text.size()).
DecodedCodePoint decode_utf8(std::string_view text, std::size_t offset);

// Appends the UTF-8 encoding of a code point (<= U+10FFFF, surrogates allowed).
void append_utf8(std::string& out, char32_t code_point);

// General categories Lu, Ll, Lt, Lm, Lo.
bool is_letter(char32_t code_point);
// General categories Nd, Nl, No (what Rust's char::is_numeric also means).
bool is_number(char32_t code_point);
// The regex class \s of Oniguruma and Rust: Unicode White_Space.
bool is_whitespace(char32_t code_point);

namespace detail {
struct CodePointRange {
  char32_t first;
  char32_t last;
};
extern const CodePointRange kLetterRanges[];
extern const std::size_t kLetterRanges_count;
extern const CodePointRange kNumberRanges[];
extern const std::size_t kNumberRanges_count;
}  // namespace detail

}  // namespace tessera::unicode
