#include "tessera/text/tokenizer.hpp"
#include <tessera/engine/input_file.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "tessera/text/unicode.hpp"

namespace tessera {

namespace {

// GPT-2's byte alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes are
// moved, in order, to U+0100 and up, so every byte is a visible, non-space character.
struct ByteAlphabet {
  std::array<char32_t, 256> byte_to_code_point{};
  std::array<std::int16_t, 0x144> code_point_to_byte{};  // -1 where no byte maps

  ByteAlphabet() {
    code_point_to_byte.fill(-1);
    char32_t next_moved = 0x100;
    for (int byte = 0; byte < 256; ++byte) {
      const bool printable =
          (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
      const char32_t cp = printable ? static_cast<char32_t>(byte) : next_moved++;
      byte_to_code_point[static_cast<std::size_t>(byte)] = cp;
      code_point_to_byte[cp] = static_cast<std::int16_t>(byte);
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

std::string bytes_to_alphabet(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    unicode::append_utf8(out, byte_alphabet().byte_to_code_point[static_cast<unsigned char>(c)]);
  }
  return out;
}

// Vocabulary text of a normal token -> the bytes it stands for. Characters outside the
// alphabet (seen in some vocabularies) are kept as their UTF-8.
std::string alphabet_to_bytes(std::string_view token_text) {
  std::string out;
  std::size_t offset = 0;
  while (offset < token_text.size()) {
    const unicode::DecodedCodePoint decoded = unicode::decode_utf8(token_text, offset);
    const auto& table = byte_alphabet().code_point_to_byte;
    if (decoded.valid && decoded.code_point < table.size() && table[decoded.code_point] >= 0) {
      out.push_back(static_cast<char>(table[decoded.code_point]));
    } else {
      out.append(token_text.substr(offset, decoded.length));
    }
    offset += decoded.length;
  }
  return out;
}

std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
         static_cast<std::uint32_t>(right);
}

struct Merge {
  std::int32_t rank;
  std::int32_t merged_id;
};

bool is_added(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUserDefined;
}

}  // namespace

char32_t byte_to_unicode(std::uint8_t byte) {
  return byte_alphabet().byte_to_code_point[byte];
}

struct Tokenizer::Impl {
  TokenizerData source;  // as given (source.tokens: the vocabulary), ignore_merges resolved
  std::vector<TokenType> types;
  std::vector<std::string> bytes_of_token;
  std::unordered_map<std::string, std::int32_t> id_of_token;
  std::unordered_map<std::uint64_t, Merge> merges;
  std::array<std::int32_t, 256> byte_token{};
  // Added tokens by first byte, longest first, so the first hit is the longest match.
  std::array<std::vector<std::int32_t>, 256> added_by_first_byte;
  bool has_added = false;
  PreTokenizerKind pre_kind = PreTokenizerKind::kGpt2;
  bool ignore_merges = false;
  std::optional<std::int32_t> bos, eos, unknown;
  bool add_bos = false;

  void encode_piece(std::string_view piece, std::vector<std::int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<std::int32_t>& out,
                    std::unordered_map<std::string_view, std::vector<std::int32_t>>& cache) const;
};

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<std::int32_t>& out) const {
  if (ignore_merges) {
    // A pre-token that is itself a vocabulary entry is taken whole (Llama 3's tokenizer).
    const auto found = id_of_token.find(bytes_to_alphabet(piece));
    if (found != id_of_token.end() && !is_added(types[static_cast<std::size_t>(found->second)])) {
      out.push_back(found->second);
      return;
    }
  }
  struct Symbol {
    std::int32_t id;
    std::int32_t prev;
    std::int32_t next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  for (std::size_t i = 0; i < piece.size(); ++i) {
    std::int32_t id = byte_token[static_cast<unsigned char>(piece[i])];
    if (id < 0) {
      if (!unknown) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X",
                      static_cast<unsigned>(static_cast<unsigned char>(piece[i])));
        throw TokenizerError(std::string("tokenizer: byte ") + hex +
                             " has no byte-level token in the vocabulary and no unknown token "
                             "is defined");
      }
      id = *unknown;
    }
    const auto index = static_cast<std::int32_t>(i);
    symbols.push_back(
        {id, index - 1, index + 1 < static_cast<std::int32_t>(piece.size()) ? index + 1 : -1});
  }
  // Lowest rank first; among equal ranks the leftmost, as Hugging Face's BPE does.
  struct Candidate {
    std::int32_t rank;
    std::int32_t left;
    std::int32_t right;
    std::int32_t left_id;
    std::int32_t right_id;
    std::int32_t merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  const auto consider = [&](std::int32_t left) {
    if (left < 0) return;
    const std::int32_t right = symbols[static_cast<std::size_t>(left)].next;
    if (right < 0) return;
    const std::int32_t left_id = symbols[static_cast<std::size_t>(left)].id;
    const std::int32_t right_id = symbols[static_cast<std::size_t>(right)].id;
    const auto found = merges.find(pair_key(left_id, right_id));
    if (found == merges.end()) return;
    queue.push({found->second.rank, left, right, left_id, right_id, found->second.merged_id});
  };
  for (std::int32_t i = 0; i + 1 < static_cast<std::int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<std::size_t>(top.left)];
    // Stale entries: one of the two symbols has merged since the entry was queued.
    if (left.id != top.left_id || left.next != top.right ||
        symbols[static_cast<std::size_t>(top.right)].id != top.right_id) {
      continue;
    }
    Symbol& right = symbols[static_cast<std::size_t>(top.right)];
    left.id = top.merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.left;
    right.id = -1;
    right.next = -1;
    consider(left.prev);
    consider(top.left);
  }
  for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
    out.push_back(symbols[static_cast<std::size_t>(i)].id);
  }
}

void Tokenizer::Impl::encode_plain(
    std::string_view text, std::vector<std::int32_t>& out,
    std::unordered_map<std::string_view, std::vector<std::int32_t>>& cache) const {
  for (const std::string_view piece : pre_tokenize(pre_kind, text)) {
    auto found = cache.find(piece);
    if (found == cache.end()) {
      std::vector<std::int32_t> ids;
      encode_piece(piece, ids);
      found = cache.emplace(piece, std::move(ids)).first;
    }
    out.insert(out.end(), found->second.begin(), found->second.end());
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_data(const TokenizerData& data) {
  const std::string where = "tokenizer data";
  if (data.model != "gpt2") {
    throw TokenizerError(where + ": tokenizer.ggml.model is \"" + data.model +
                         "\"; only \"gpt2\" (byte-level BPE) is supported");
  }
  if (data.tokens.empty()) throw TokenizerError(where + ": tokenizer.ggml.tokens is empty");
  if (!data.token_types.empty() && data.token_types.size() != data.tokens.size()) {
    throw TokenizerError(
        where + ": tokenizer.ggml.token_type has " + std::to_string(data.token_types.size()) +
        " entries, expected one per token (" + std::to_string(data.tokens.size()) + ")");
  }
  auto impl = std::make_unique<Impl>();
  impl->pre_kind = pre_tokenizer_kind_from_gguf_name(data.pre);
  // As llama.cpp does for Llama 3, matching its Hugging Face tokenizer.json.
  impl->ignore_merges = data.ignore_merges.value_or(impl->pre_kind == PreTokenizerKind::kLlama3);
  impl->source = data;
  impl->source.ignore_merges = impl->ignore_merges;
  const auto count = static_cast<std::int32_t>(data.tokens.size());
  impl->types.resize(data.tokens.size(), TokenType::kNormal);
  for (std::size_t i = 0; i < data.token_types.size(); ++i) {
    const std::int32_t type = data.token_types[i];
    if (type < 1 || type > 6) {
      throw TokenizerError(where + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] is " +
                           std::to_string(type) + ", expected 1..6");
    }
    impl->types[i] = static_cast<TokenType>(type);
  }
  impl->id_of_token.reserve(data.tokens.size());
  impl->bytes_of_token.resize(data.tokens.size());
  for (std::int32_t id = 0; id < count; ++id) {
    const auto index = static_cast<std::size_t>(id);
    const std::string& text = data.tokens[index];
    if (text.empty()) {
      throw TokenizerError(where + ": tokenizer.ggml.tokens[" + std::to_string(id) +
                           "] is empty; every token needs text");
    }
    // The first id wins for duplicated text, as in Hugging Face's vocab map.
    impl->id_of_token.emplace(text, id);
    impl->bytes_of_token[index] = is_added(impl->types[index]) ? text : alphabet_to_bytes(text);
  }
  impl->byte_token.fill(-1);
  for (int byte = 0; byte < 256; ++byte) {
    std::string text;
    unicode::append_utf8(text, byte_to_unicode(static_cast<std::uint8_t>(byte)));
    const auto found = impl->id_of_token.find(text);
    if (found != impl->id_of_token.end())
      impl->byte_token[static_cast<std::size_t>(byte)] = found->second;
  }
  impl->merges.reserve(data.merges.size());
  for (std::size_t rank = 0; rank < data.merges.size(); ++rank) {
    const std::string& merge = data.merges[rank];
    const std::size_t space = merge.find(' ', 1);
    if (space == std::string::npos || space + 1 >= merge.size() ||
        merge.find(' ', space + 1) != std::string::npos) {
      throw TokenizerError(where + ": tokenizer.ggml.merges[" + std::to_string(rank) + "] is \"" +
                           merge + "\", expected two tokens separated by one space");
    }
    const std::string left = merge.substr(0, space);
    const std::string right = merge.substr(space + 1);
    const auto left_id = impl->id_of_token.find(left);
    const auto right_id = impl->id_of_token.find(right);
    const auto merged_id = impl->id_of_token.find(left + right);
    // Merges whose parts or result are not in the vocabulary can never apply; skip them.
    if (left_id == impl->id_of_token.end() || right_id == impl->id_of_token.end() ||
        merged_id == impl->id_of_token.end()) {
      continue;
    }
    // A repeated pair keeps its first (best) rank.
    impl->merges.emplace(pair_key(left_id->second, right_id->second),
                         Merge{static_cast<std::int32_t>(rank), merged_id->second});
  }
  std::vector<std::int32_t> added;
  for (std::int32_t id = 0; id < count; ++id) {
    if (is_added(impl->types[static_cast<std::size_t>(id)])) added.push_back(id);
  }
  std::stable_sort(added.begin(), added.end(), [&](std::int32_t a, std::int32_t b) {
    return impl->source.tokens[static_cast<std::size_t>(a)].size() >
           impl->source.tokens[static_cast<std::size_t>(b)].size();
  });
  for (const std::int32_t id : added) {
    const auto first =
        static_cast<unsigned char>(impl->source.tokens[static_cast<std::size_t>(id)][0]);
    impl->added_by_first_byte[first].push_back(id);
    impl->has_added = true;
  }
  const auto check_id = [&](const std::optional<std::int32_t>& id, const char* key) {
    if (id && (*id < 0 || *id >= count)) {
      throw TokenizerError(where + ": " + key + " is " + std::to_string(*id) +
                           ", outside the vocabulary of " + std::to_string(count) + " tokens");
    }
    return id;
  };
  impl->bos = check_id(data.bos_id, "tokenizer.ggml.bos_token_id");
  impl->eos = check_id(data.eos_id, "tokenizer.ggml.eos_token_id");
  impl->unknown = check_id(data.unknown_id, "tokenizer.ggml.unknown_token_id");
  check_id(data.padding_id, "tokenizer.ggml.padding_token_id");
  impl->add_bos = data.add_bos;
  if (impl->add_bos && !impl->bos) {
    throw TokenizerError(where +
                         ": tokenizer.ggml.add_bos_token is true but no bos_token_id is set");
  }
  return Tokenizer(std::move(impl));
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text,
                                            const EncodeOptions& options) const {
  const Impl& impl = *impl_;
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (options.add_bos) {
    if (!impl.bos)
      throw TokenizerError("tokenizer: add_bos requested but the model has no BOS token");
    out.push_back(*impl.bos);
  }
  // Repeated words are merged once per call (the cache lives as long as `text`).
  std::unordered_map<std::string_view, std::vector<std::int32_t>> cache;
  if (!options.parse_special || !impl.has_added) {
    impl.encode_plain(text, out, cache);
    return out;
  }
  std::size_t plain_begin = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::optional<std::int32_t> hit;
    for (const std::int32_t id : impl.added_by_first_byte[static_cast<unsigned char>(text[pos])]) {
      if (text.substr(pos).starts_with(impl.source.tokens[static_cast<std::size_t>(id)])) {
        hit = id;
        break;
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    impl.encode_plain(text.substr(plain_begin, pos - plain_begin), out, cache);
    out.push_back(*hit);
    pos += impl.source.tokens[static_cast<std::size_t>(*hit)].size();
    plain_begin = pos;
  }
  impl.encode_plain(text.substr(plain_begin), out, cache);
  return out;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special) const {
  std::string out;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int32_t id = ids[i];
    if (id < 0 || id >= vocab_size()) {
      throw TokenizerError("tokenizer: decode: id " + std::to_string(id) + " at position " +
                           std::to_string(i) + " is outside the vocabulary of " +
                           std::to_string(vocab_size()) + " tokens");
    }
    if (skip_special && impl_->types[static_cast<std::size_t>(id)] == TokenType::kControl) continue;
    out += impl_->bytes_of_token[static_cast<std::size_t>(id)];
  }
  return out;
}

std::string Tokenizer::token_bytes(std::int32_t id) const {
  return decode(std::span<const std::int32_t>(&id, 1));
}

std::int32_t Tokenizer::vocab_size() const {
  return static_cast<std::int32_t>(impl_->source.tokens.size());
}

std::optional<std::int32_t> Tokenizer::token_id(std::string_view token_text) const {
  const auto found = impl_->id_of_token.find(std::string(token_text));
  if (found == impl_->id_of_token.end()) return std::nullopt;
  return found->second;
}

const std::string& Tokenizer::token_text(std::int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw TokenizerError("tokenizer: token id " + std::to_string(id) +
                         " is outside the vocabulary of " + std::to_string(vocab_size()) +
                         " tokens");
  }
  return impl_->source.tokens[static_cast<std::size_t>(id)];
}

bool Tokenizer::is_special(std::int32_t id) const {
  return id >= 0 && id < vocab_size() &&
         impl_->types[static_cast<std::size_t>(id)] == TokenType::kControl;
}

const TokenizerData& Tokenizer::data() const {
  return impl_->source;
}

PreTokenizerKind Tokenizer::pre_tokenizer() const {
  return impl_->pre_kind;
}
std::optional<std::int32_t> Tokenizer::bos_id() const {
  return impl_->bos;
}
std::optional<std::int32_t> Tokenizer::eos_id() const {
  return impl_->eos;
}
bool Tokenizer::add_bos_by_default() const {
  return impl_->add_bos;
}

Tokenizer Tokenizer::from_json_file(const std::filesystem::path& path) {
  if (const std::string what = not_a_regular_file(path); !what.empty())
    throw TokenizerError(path.string() + ": the tokenizer file is " + what +
                         ", not a regular file");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw TokenizerError(path.string() + ": cannot open the tokenizer file");
  std::ostringstream contents;
  contents << file.rdbuf();
  return from_json(contents.str(), path.string());
}

}  // namespace tessera
