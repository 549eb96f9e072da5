// What the tokenizer fuzz target checks on one input, shared with the unit test that replays
// the kept corpus (tests/unit/test_tokenizer_fuzz_corpus.cpp), so both hold inputs to the same
// rules: for every pre-tokenizer, with and without special-token parsing, encoding then
// decoding gives the input back byte for byte with every id in range, and the tokenizer
// written as tokenizer.json and read back gives the same ids; pre-tokens cover the input
// exactly; the chat-template recogniser answers with a template or ChatTemplateError.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/chat/chat_template.hpp"
#include "tessera/text/tokenizer.hpp"
#include "tessera/text/unicode.hpp"

namespace tessera::fuzz {

inline std::string alphabet_text(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    tessera::unicode::append_utf8(out, tessera::byte_to_unicode(static_cast<std::uint8_t>(c)));
  }
  return out;
}

// A self-contained vocabulary: the 256 byte tokens, two levels of merges over common
// characters, and added tokens (one a prefix of another).
inline TokenizerData toy_data(const char* pre) {
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

struct ToyTokenizers {
  Tokenizer gpt2 = Tokenizer::from_data(toy_data("gpt2"));
  Tokenizer smollm = Tokenizer::from_data(toy_data("smollm"));
  Tokenizer llama3 = Tokenizer::from_data(toy_data("llama-bpe"));
  // The same three written as tokenizer.json and read back.
  Tokenizer gpt2_json = Tokenizer::from_json(to_tokenizer_json(gpt2));
  Tokenizer smollm_json = Tokenizer::from_json(to_tokenizer_json(smollm));
  Tokenizer llama3_json = Tokenizer::from_json(to_tokenizer_json(llama3));
};

// Calls fail(what) for every rule the input breaks; exceptions other than ChatTemplateError
// from the recogniser propagate to the caller.
template <class Fail>
void check_tokenizer_input(const ToyTokenizers& tokenizers, std::string_view text, Fail&& fail) {
  const Tokenizer* written[3] = {&tokenizers.gpt2_json, &tokenizers.smollm_json,
                                 &tokenizers.llama3_json};
  int which = 0;
  for (const Tokenizer* tokenizer : {&tokenizers.gpt2, &tokenizers.smollm, &tokenizers.llama3}) {
    for (const bool parse_special : {true, false}) {
      const auto ids = tokenizer->encode(text, {.parse_special = parse_special});
      for (const std::int32_t id : ids) {
        if (id < 0 || id >= tokenizer->vocab_size()) fail("id out of range");
      }
      if (tokenizer->decode(ids) != text) fail("encode -> decode is not byte-exact");
      if (written[which]->encode(text, {.parse_special = parse_special}) != ids)
        fail("the tokenizer written as tokenizer.json encodes differently");
    }
    ++which;
    std::size_t covered = 0;
    for (const std::string_view piece : tessera::pre_tokenize(tokenizer->pre_tokenizer(), text)) {
      if (piece.empty() || piece.data() != text.data() + covered)
        fail("pre-tokens are not contiguous");
      covered += piece.size();
    }
    if (covered != text.size()) fail("pre-tokens do not cover the input");
  }
  try {
    const auto chat = tessera::ChatTemplate::from_template_text(text);
    const std::vector<tessera::ChatMessage> messages = {{"user", std::string(text)}};
    (void)chat.apply(messages, true);
  } catch (const tessera::ChatTemplateError&) {
    // Expected for almost every input.
  }
}

}  // namespace tessera::fuzz
