// Byte-level BPE tokenizer (the GPT-2 family: SmolLM2, Llama 3, ...).
//
// Encoding: added/special tokens are split out first (longest match wins), the rest is cut
// into pre-tokens by the model's split pattern, each pre-token's bytes are mapped to the
// GPT-2 byte alphabet and merged by merge rank. Decoding maps the alphabet back to bytes,
// so any byte string, valid UTF-8 or not, survives encode -> decode unchanged.
//
// Two front ends build it from plain data: a Hugging Face tokenizer.json, and
// TokenizerData, the fields a GGUF file carries under tokenizer.ggml.*.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/engine/error.hpp"

namespace tessera {

// A tokenizer description that is malformed or uses something not supported.
// what() names the source and, for JSON, the JSON pointer of the offending value.
struct TokenizerError : Error {
  using Error::Error;
};

// The pre-tokenizer split patterns implemented (by hand, not with a regex engine).
enum class PreTokenizerKind {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // Every \p{N} isolated first (HF "Digits" with individual_digits), then kGpt2 on each piece.
  // SmolLM, StarCoder (GGUF tokenizer.ggml.pre "smollm", "starcoder", ...).
  kSmolLM,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
};

// Maps a GGUF tokenizer.ggml.pre name ("gpt2", "smollm", "llama-bpe", ...) to a kind;
// throws TokenizerError naming the value for one that is not known.
PreTokenizerKind pre_tokenizer_kind_from_gguf_name(std::string_view name);
std::string_view to_string(PreTokenizerKind kind);

// Cuts text into pre-tokens (views into text, in order, covering it exactly).
std::vector<std::string_view> pre_tokenize(PreTokenizerKind kind, std::string_view text);

// Token types, with the values GGUF's tokenizer.ggml.token_type uses.
enum class TokenType : std::int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // special tokens such as <|im_start|>: matched before pre-tokenizing
  kUserDefined = 4,  // added tokens: also matched before pre-tokenizing
  kUnused = 5,
  kByte = 6,
};

// What a GGUF file provides (keys tokenizer.ggml.*); the GGUF reader fills this.
struct TokenizerData {
  std::string model = "gpt2";              // tokenizer.ggml.model; only "gpt2" is supported
  std::string pre = "gpt2";                // tokenizer.ggml.pre
  std::vector<std::string> tokens;         // tokenizer.ggml.tokens, index = id
  std::vector<std::string> merges;         // tokenizer.ggml.merges, "left right", by rank
  std::vector<std::int32_t> token_types;   // tokenizer.ggml.token_type (empty: all normal)
  std::optional<std::int32_t> bos_id;      // tokenizer.ggml.bos_token_id
  std::optional<std::int32_t> eos_id;      // tokenizer.ggml.eos_token_id
  std::optional<std::int32_t> unknown_id;  // tokenizer.ggml.unknown_token_id
  std::optional<std::int32_t> padding_id;  // tokenizer.ggml.padding_token_id
  bool add_bos = false;                    // tokenizer.ggml.add_bos_token
  // Take a pre-token whole when it is a vocabulary entry. Not in GGUF: unset means true for
  // Llama 3's pre-tokenizer (as its tokenizer.json and llama.cpp do), false otherwise.
  std::optional<bool> ignore_merges;
  std::string chat_template;  // tokenizer.chat_template (may be empty)
};

struct EncodeOptions {
  // Recognise added/special tokens such as <|im_end|> in the text. Turn off for untrusted
  // text that must not be able to inject control tokens.
  bool parse_special = true;
  // Put the BOS token first (needs a BOS id).
  bool add_bos = false;
};

class Tokenizer {
 public:
  // From Hugging Face tokenizer.json text; source_name is used in error messages.
  static Tokenizer from_json(std::string_view json_text,
                             const std::string& source_name = "tokenizer.json");
  static Tokenizer from_json_file(const std::filesystem::path& path);
  // From GGUF-provided data.
  static Tokenizer from_data(const TokenizerData& data);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<std::int32_t> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Throws TokenizerError for an id outside the vocabulary.
  std::string decode(std::span<const std::int32_t> ids, bool skip_special = false) const;
  // The bytes one token stands for (a special token: its text).
  std::string token_bytes(std::int32_t id) const;

  std::int32_t vocab_size() const;
  // The id of a token by its vocabulary text (byte-level alphabet for normal tokens).
  std::optional<std::int32_t> token_id(std::string_view token_text) const;
  // The vocabulary text of a token (byte-level alphabet for normal tokens).
  const std::string& token_text(std::int32_t id) const;
  bool is_special(std::int32_t id) const;
  PreTokenizerKind pre_tokenizer() const;
  std::optional<std::int32_t> bos_id() const;
  std::optional<std::int32_t> eos_id() const;
  // Whether the model expects a BOS token in front of a prompt.
  bool add_bos_by_default() const;
  // What the tokenizer was built from (a tokenizer.json is turned into the same form), with
  // ignore_merges resolved.
  const TokenizerData& data() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The tokenizer as Hugging Face tokenizer.json text: the byte-level BPE model (vocabulary,
// merges, ignore_merges), the added tokens (control tokens special), the pre-tokenizer it runs
// and, when it adds a BOS, a template that does. Tokenizer::from_json reads it back to a
// tokenizer that encodes every text the same way. Throws TokenizerError when two ids share
// one text (a JSON vocabulary holds each text once).
std::string to_tokenizer_json(const Tokenizer& tokenizer);

// The tokenizer_config.json that goes beside it: the chat template (when not empty), the BOS,
// EOS and unknown tokens' texts, add_bos_token and the fast tokenizer class.
std::string to_tokenizer_config_json(const Tokenizer& tokenizer, const std::string& chat_template);

// The GPT-2 byte-level alphabet: the code point a byte is written as in vocabularies.
char32_t byte_to_unicode(std::uint8_t byte);

}  // namespace tessera
