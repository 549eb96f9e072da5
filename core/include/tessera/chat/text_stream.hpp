// Generated tokens -> text, as they arrive. A byte-level token may end in the middle of a
// multi-byte UTF-8 character whose remaining bytes come with the next token; printing it
// right away would show a broken character, so such a tail is held back until it completes.
#pragma once

#include <tessera/text/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tessera {

class TokenTextStream {
 public:
  // skip_special: special tokens (<|im_end|>, ...) add no text.
  explicit TokenTextStream(const Tokenizer& tokenizer, bool skip_special = true)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}

  // The text this token completes (empty while a character is still incomplete).
  std::string push(int32_t token);
  // Whatever is still held back, as it is (at the end of generation), and starts afresh.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

// How many leading bytes of `text` can be shown now: all of them, except an incomplete UTF-8
// sequence at the very end (a lead byte followed by fewer continuation bytes than it needs).
size_t complete_utf8_prefix(std::string_view text);

}  // namespace tessera
