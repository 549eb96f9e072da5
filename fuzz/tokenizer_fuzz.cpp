// libFuzzer target: arbitrary bytes through the byte-level BPE tokenizer. Encoding then
// decoding must give back the input byte for byte, for every pre-tokenizer, with and without
// special-token parsing; pre-tokens must cover the input exactly. Also feeds the bytes to the
// chat-template recogniser, which may only answer with ChatTemplateError.
//
//   scripts/fuzz.sh tokenizer [seconds]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/chat_template.hpp"
#include "tessera/core/tokenizer.hpp"
#include "tessera/core/unicode.hpp"

namespace {

using tessera::PreTokenizerKind;
using tessera::Tokenizer;
using tessera::TokenizerData;
using tessera::TokenType;

std::string alphabet_text(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    tessera::unicode::append_utf8(out, tessera::byte_to_unicode(static_cast<std::uint8_t>(c)));
  }
  return out;
}

// A self-contained vocabulary: the 256 byte tokens, two levels of merges over common
// characters, and added tokens (one a prefix of another).
TokenizerData toy_data(const char* pre) {
  TokenizerData data;
  data.pre = pre;
  for (int byte = 0; byte < 256; ++byte) {
    data.tokens.push_back(alphabet_text(std::string(1, static_cast<char>(byte))));
  }
  const std::string common = " etaoin\n'1";
  std::vector<std::string> pairs;
  for (const char left : common) {
    for (const char right : common) {
      const std::string pair{left, right};
      data.merges.push_back(alphabet_text(std::string(1, left)) + " " +
                            alphabet_text(std::string(1, right)));
      data.tokens.push_back(alphabet_text(pair));
      pairs.push_back(pair);
    }
  }
  for (std::size_t i = 0; i < pairs.size(); i += 3) {
    for (const char right : common) {
      data.merges.push_back(alphabet_text(pairs[i]) + " " + alphabet_text(std::string(1, right)));
      data.tokens.push_back(alphabet_text(pairs[i] + right));
    }
  }
  data.token_types.assign(data.tokens.size(), static_cast<std::int32_t>(TokenType::kNormal));
  for (const char* added : {"<|im_start|>", "<|im_end|>", "<|x|>"}) {
    data.tokens.emplace_back(added);
    data.token_types.push_back(static_cast<std::int32_t>(TokenType::kControl));
  }
  data.tokens.emplace_back("<|x|>y");
  data.token_types.push_back(static_cast<std::int32_t>(TokenType::kUserDefined));
  return data;
}

struct Tokenizers {
  Tokenizer gpt2 = Tokenizer::from_data(toy_data("gpt2"));
  Tokenizer smollm = Tokenizer::from_data(toy_data("smollm"));
  Tokenizer llama3 = Tokenizer::from_data(toy_data("llama-bpe"));
};

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Tokenizers tokenizers;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const Tokenizer* tokenizer : {&tokenizers.gpt2, &tokenizers.smollm, &tokenizers.llama3}) {
    for (const bool parse_special : {true, false}) {
      const auto ids = tokenizer->encode(text, {.parse_special = parse_special});
      for (const std::int32_t id : ids)
        check(id >= 0 && id < tokenizer->vocab_size(), "id out of range");
      check(tokenizer->decode(ids) == text, "encode -> decode is not byte-exact");
    }
    std::size_t covered = 0;
    for (const std::string_view piece : tessera::pre_tokenize(tokenizer->pre_tokenizer(), text)) {
      check(!piece.empty() && piece.data() == text.data() + covered,
            "pre-tokens are not contiguous");
      covered += piece.size();
    }
    check(covered == text.size(), "pre-tokens do not cover the input");
  }
  try {
    const auto chat = tessera::ChatTemplate::from_template_text(text);
    const std::vector<tessera::ChatMessage> messages = {{"user", std::string(text)}};
    (void)chat.apply(messages, true);
  } catch (const tessera::ChatTemplateError&) {
    // Expected for almost every input.
  }
  return 0;
}
