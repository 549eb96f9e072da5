#include <tessera/chat/text_stream.hpp>

#include <algorithm>

namespace tessera {

size_t complete_utf8_prefix(std::string_view text) {
  // A UTF-8 sequence is at most 4 bytes, so only the last 3 can start an incomplete one.
  const size_t look = std::min<size_t>(3, text.size());
  for (size_t back = 1; back <= look; ++back) {
    const auto byte = static_cast<unsigned char>(text[text.size() - back]);
    if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: its lead is further back
    size_t needed = 1;
    if (byte >= 0xC2 && byte <= 0xDF) needed = 2;
    if (byte >= 0xE0 && byte <= 0xEF) needed = 3;
    if (byte >= 0xF0 && byte <= 0xF4) needed = 4;
    return needed > back ? text.size() - back : text.size();
  }
  return text.size();
}

std::string TokenTextStream::push(int32_t token) {
  if (skip_special_ && tokenizer_.is_special(token)) return {};
  pending_ += tokenizer_.token_bytes(token);
  const size_t ready = complete_utf8_prefix(pending_);
  std::string out = pending_.substr(0, ready);
  pending_.erase(0, ready);
  return out;
}

std::string TokenTextStream::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace tessera
