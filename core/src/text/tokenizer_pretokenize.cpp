// Hand-written matchers for the pre-tokenizer split patterns. Each matcher returns the end of
// the match that the regex alternatives, tried in order with backtracking, would return at
// position `begin`; the comments name the alternative each branch stands for.
#include <string>
#include <vector>

#include "tessera/text/tokenizer.hpp"
#include "tessera/text/unicode.hpp"

namespace tessera {

namespace {

enum class CharClass : std::uint8_t { kLetter, kNumber, kSpace, kOther };

struct CodePointInfo {
  std::uint32_t offset;  // byte offset into the text
  char32_t code_point;   // kInvalidByte for a byte that is not valid UTF-8
  CharClass char_class;
};

// Invalid UTF-8 bytes are their own class-"other" characters that equal no literal.
constexpr char32_t kInvalidByte = 0x110000;

std::vector<CodePointInfo> classify(std::string_view text) {
  std::vector<CodePointInfo> infos;
  infos.reserve(text.size());
  std::size_t offset = 0;
  while (offset < text.size()) {
    const unicode::DecodedCodePoint decoded = unicode::decode_utf8(text, offset);
    CodePointInfo info{static_cast<std::uint32_t>(offset), kInvalidByte, CharClass::kOther};
    if (decoded.valid) {
      const char32_t cp = decoded.code_point;
      info.code_point = cp;
      if (unicode::is_letter(cp)) {
        info.char_class = CharClass::kLetter;
      } else if (unicode::is_number(cp)) {
        info.char_class = CharClass::kNumber;
      } else if (unicode::is_whitespace(cp)) {
        info.char_class = CharClass::kSpace;
      }
    }
    infos.push_back(info);
    offset += decoded.length;
  }
  return infos;
}

using Infos = std::vector<CodePointInfo>;

std::size_t run_of(const Infos& cps, std::size_t pos, std::size_t end, CharClass char_class) {
  while (pos < end && cps[pos].char_class == char_class) ++pos;
  return pos;
}

bool is_newline(char32_t cp) {
  return cp == U'\r' || cp == U'\n';
}

char32_t ascii_lower(char32_t cp) {
  return (cp >= U'A' && cp <= U'Z') ? cp + 32 : cp;
}

// 's|'t|'re|'ve|'m|'ll|'d (optionally ASCII case-insensitive). Returns the end or 0.
std::size_t match_contraction(const Infos& cps, std::size_t pos, std::size_t end,
                              bool ignore_case) {
  if (cps[pos].code_point != U'\'' || pos + 1 >= end) return 0;
  const auto at = [&](std::size_t i) {
    return ignore_case ? ascii_lower(cps[i].code_point) : cps[i].code_point;
  };
  const char32_t first = at(pos + 1);
  if (first == U's' || first == U't' || first == U'm' || first == U'd') return pos + 2;
  if (pos + 2 >= end) return 0;
  const char32_t second = at(pos + 2);
  if ((first == U'r' && second == U'e') || (first == U'v' && second == U'e') ||
      (first == U'l' && second == U'l')) {
    return pos + 3;
  }
  return 0;
}

// \s+(?!\S)|\s+ at a whitespace character: the whole run when it ends the text, else the run
// minus its last character (that one goes with the next word), else a single character.
std::size_t match_trailing_space(const Infos& cps, std::size_t pos, std::size_t end) {
  const std::size_t run_end = run_of(cps, pos, end, CharClass::kSpace);
  if (run_end == end || run_end - pos == 1) return run_end;
  return run_end - 1;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::size_t match_gpt2(const Infos& cps, std::size_t pos, std::size_t end) {
  if (const std::size_t contraction = match_contraction(cps, pos, end, false)) return contraction;
  const CodePointInfo& here = cps[pos];
  if (here.char_class != CharClass::kSpace) return run_of(cps, pos, end, here.char_class);
  if (here.code_point == U' ' && pos + 1 < end && cps[pos + 1].char_class != CharClass::kSpace) {
    return run_of(cps, pos + 1, end, cps[pos + 1].char_class);
  }
  return match_trailing_space(cps, pos, end);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
std::size_t match_llama3(const Infos& cps, std::size_t pos, std::size_t end) {
  if (const std::size_t contraction = match_contraction(cps, pos, end, true)) return contraction;
  const CodePointInfo& here = cps[pos];
  if (here.char_class == CharClass::kLetter) return run_of(cps, pos, end, CharClass::kLetter);
  if (here.char_class != CharClass::kNumber && !is_newline(here.code_point) && pos + 1 < end &&
      cps[pos + 1].char_class == CharClass::kLetter) {
    return run_of(cps, pos + 1, end, CharClass::kLetter);
  }
  if (here.char_class == CharClass::kNumber) {
    const std::size_t limit = pos + 3 < end ? pos + 3 : end;
    return run_of(cps, pos, limit, CharClass::kNumber);
  }
  std::size_t symbols_begin = end;  // where [^\s\p{L}\p{N}]+ starts, if it applies
  if (here.char_class == CharClass::kOther) {
    symbols_begin = pos;
  } else if (here.code_point == U' ' && pos + 1 < end &&
             cps[pos + 1].char_class == CharClass::kOther) {
    symbols_begin = pos + 1;
  }
  if (symbols_begin != end) {
    std::size_t match_end = run_of(cps, symbols_begin, end, CharClass::kOther);
    while (match_end < end && is_newline(cps[match_end].code_point)) ++match_end;
    return match_end;
  }
  // Whitespace. \s*[\r\n]+ : up to and including the run's last line break.
  const std::size_t run_end = run_of(cps, pos, end, CharClass::kSpace);
  for (std::size_t i = run_end; i > pos; --i) {
    if (is_newline(cps[i - 1].code_point)) return i;
  }
  return match_trailing_space(cps, pos, end);
}

using Matcher = std::size_t (*)(const Infos&, std::size_t, std::size_t);

void split_range(const Infos& cps, std::size_t begin, std::size_t end, Matcher matcher,
                 std::string_view text, std::vector<std::string_view>& pieces) {
  const auto byte_offset = [&](std::size_t i) {
    return i < cps.size() ? static_cast<std::size_t>(cps[i].offset) : text.size();
  };
  std::size_t pos = begin;
  while (pos < end) {
    std::size_t next = matcher(cps, pos, end);
    if (next <= pos) next = pos + 1;  // never stall (cannot happen: every class is covered)
    pieces.push_back(text.substr(byte_offset(pos), byte_offset(next) - byte_offset(pos)));
    pos = next;
  }
}

}  // namespace

std::vector<std::string_view> pre_tokenize(PreTokenizerKind kind, std::string_view text) {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  const Infos cps = classify(text);
  switch (kind) {
    case PreTokenizerKind::kGpt2:
      split_range(cps, 0, cps.size(), match_gpt2, text, pieces);
      break;
    case PreTokenizerKind::kLlama3:
      split_range(cps, 0, cps.size(), match_llama3, text, pieces);
      break;
    case PreTokenizerKind::kSmolLM: {
      // Every number character is a piece of its own; GPT-2 splitting runs between them.
      std::size_t segment_begin = 0;
      for (std::size_t i = 0; i <= cps.size(); ++i) {
        if (i < cps.size() && cps[i].char_class != CharClass::kNumber) continue;
        split_range(cps, segment_begin, i, match_gpt2, text, pieces);
        if (i < cps.size()) split_range(cps, i, i + 1, match_gpt2, text, pieces);
        segment_begin = i + 1;
      }
      break;
    }
  }
  return pieces;
}

PreTokenizerKind pre_tokenizer_kind_from_gguf_name(std::string_view name) {
  if (name == "gpt2" || name == "gpt-2") return PreTokenizerKind::kGpt2;
  if (name == "smollm" || name == "starcoder" || name == "refact") return PreTokenizerKind::kSmolLM;
  if (name == "llama3" || name == "llama-v3" || name == "llama-bpe") {
    return PreTokenizerKind::kLlama3;
  }
  throw TokenizerError("tokenizer.ggml.pre: unsupported pre-tokenizer \"" + std::string(name) +
                       "\"; expected one of gpt2, gpt-2, smollm, starcoder, refact, llama3, "
                       "llama-v3, llama-bpe");
}

std::string_view to_string(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::kGpt2:
      return "gpt2";
    case PreTokenizerKind::kSmolLM:
      return "smollm";
    case PreTokenizerKind::kLlama3:
      return "llama3";
  }
  return "unknown";
}

}  // namespace tessera
