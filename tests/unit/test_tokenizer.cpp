// Byte-level BPE tokenizer: golden ids from Hugging Face's tokenizers, pre-tokenizer patterns,
// byte-exact round trips, special tokens, a naive BPE reference, and error messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "tessera/formats/gguf.hpp"
#include "tessera/formats/gguf_model.hpp"
#include "tessera/text/tokenizer.hpp"

#include "default_model.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kSourceDir = TESSERA_SOURCE_DIR;
const fs::path kToyDir = kSourceDir / "tests" / "data" / "tokenizer";
const fs::path kGoldenDir = kSourceDir / "tests" / "golden" / "tokenizer";
const char* const kKinds[] = {"gpt2", "smollm", "llama3"};

json read_json(const fs::path& path) {
  std::ifstream file(path);
  EXPECT_TRUE(file) << "cannot open " << path;
  return json::parse(file);
}

fs::path cache_dir() {
  if (const char* dir = std::getenv("TESSERA_CACHE_DIR")) return dir;
  const char* home = std::getenv("HOME");
  return fs::path(home ? home : "/root") / ".cache" / "tessera";
}

const Tokenizer& toy(const std::string& kind) {
  static std::map<std::string, Tokenizer> loaded;
  auto found = loaded.find(kind);
  if (found == loaded.end()) {
    found =
        loaded.emplace(kind, Tokenizer::from_json_file(kToyDir / ("toy_" + kind + ".json"))).first;
  }
  return found->second;
}

std::string printable(const std::string& text) {
  return json(text).dump();
}

// ---------------------------------------------------------------- golden ids (always run)

TEST(TokenizerGolden, ToyTokenizersMatchHuggingFace) {
  const json golden = read_json(kGoldenDir / "toy_golden.json");
  for (const char* kind : kKinds) {
    const Tokenizer& tokenizer = toy(kind);
    const json& cases = golden.at(kind);
    ASSERT_GE(cases.size(), 40U);
    for (const json& test_case : cases) {
      const std::string text = test_case.at("text");
      const auto expected = test_case.at("ids").get<std::vector<std::int32_t>>();
      EXPECT_EQ(tokenizer.encode(text), expected) << kind << " " << printable(text);
      EXPECT_EQ(tokenizer.decode(expected), text) << kind << " " << printable(text);
    }
  }
}

// to_tokenizer_json and back: the same data, and every text encodes the same, for each
// pre-tokenizer; a BOS template and special tokens survive.
TEST(TokenizerJsonWriter, RoundTripsEveryToyTokenizer) {
  const json golden = read_json(kGoldenDir / "toy_golden.json");
  for (const char* kind : kKinds) {
    const Tokenizer& original = toy(kind);
    const Tokenizer again = Tokenizer::from_json(to_tokenizer_json(original), "written");
    EXPECT_EQ(again.pre_tokenizer(), original.pre_tokenizer()) << kind;
    EXPECT_EQ(again.data().tokens, original.data().tokens) << kind;
    EXPECT_EQ(again.data().merges, original.data().merges) << kind;
    EXPECT_EQ(again.data().ignore_merges, original.data().ignore_merges) << kind;
    EXPECT_EQ(again.bos_id(), original.bos_id()) << kind;
    EXPECT_EQ(again.add_bos_by_default(), original.add_bos_by_default()) << kind;
    for (std::int32_t id = 0; id < original.vocab_size(); ++id)
      ASSERT_EQ(again.is_special(id), original.is_special(id)) << kind << " id " << id;
    std::vector<std::string> texts = {"", "\xff\xfe broken \xc3", "  \t\n\n   x", "123456 7",
                                      "emoji \xf0\x9f\x98\x80 and \xe4\xb8\xad\xe6\x96\x87"};
    for (const json& c : golden.at(kind)) texts.push_back(c.at("text"));
    for (const std::string& text : texts)
      EXPECT_EQ(again.encode(text), original.encode(text)) << kind << " " << printable(text);
  }
}

TEST(TokenizerJsonWriter, BosTemplateAndConfigComeThrough) {
  TokenizerData data;
  data.pre = "llama-bpe";
  for (int b = 0; b < 256; ++b) {
    std::string t;
    const char32_t cp = byte_to_unicode(static_cast<std::uint8_t>(b));
    if (cp < 0x80) {
      t += static_cast<char>(cp);
    } else if (cp < 0x800) {
      t += static_cast<char>(0xC0 | (cp >> 6));
      t += static_cast<char>(0x80 | (cp & 0x3F));
    }
    data.tokens.push_back(t);
  }
  data.tokens.push_back("<|begin_of_text|>");
  data.tokens.push_back("<|eot_id|>");
  data.tokens.push_back("<tool>");
  data.token_types.assign(data.tokens.size(), 1);
  data.token_types[256] = 3;
  data.token_types[257] = 3;
  data.token_types[258] = 4;  // user-defined: added, not special
  data.bos_id = 256;
  data.eos_id = 257;
  data.add_bos = true;
  const Tokenizer original = Tokenizer::from_data(data);
  const std::string text = to_tokenizer_json(original);
  const Tokenizer again = Tokenizer::from_json(text, "written");
  EXPECT_TRUE(again.add_bos_by_default());
  EXPECT_EQ(again.bos_id(), 256);
  EXPECT_TRUE(again.is_special(256));
  EXPECT_FALSE(again.is_special(258));
  EXPECT_EQ(again.encode("a<tool>b", {.parse_special = true, .add_bos = true}),
            original.encode("a<tool>b", {.parse_special = true, .add_bos = true}));
  const json config = json::parse(to_tokenizer_config_json(original, "{{ messages }}"));
  EXPECT_EQ(config.at("bos_token"), "<|begin_of_text|>");
  EXPECT_EQ(config.at("eos_token"), "<|eot_id|>");
  EXPECT_EQ(config.at("add_bos_token"), true);
  EXPECT_EQ(config.at("chat_template"), "{{ messages }}");
  EXPECT_FALSE(json::parse(to_tokenizer_config_json(original, "")).contains("chat_template"));

  // Two ids with one text cannot be a JSON vocabulary: refused, naming both.
  TokenizerData twice = data;
  twice.tokens[258] = "<|eot_id|>";
  try {
    (void)to_tokenizer_json(Tokenizer::from_data(twice));
    FAIL() << "a duplicated text was written";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("ids 257 and 258 share the text \"<|eot_id|>\""),
              std::string::npos)
        << e.what();
  }
}

TEST(TokenizerGolden, ToyTokenizersDeclareTheirPreTokenizer) {
  EXPECT_EQ(toy("gpt2").pre_tokenizer(), PreTokenizerKind::kGpt2);
  EXPECT_EQ(toy("smollm").pre_tokenizer(), PreTokenizerKind::kSmolLM);
  EXPECT_EQ(toy("llama3").pre_tokenizer(), PreTokenizerKind::kLlama3);
}

// The real SmolLM2 tokenizer, rebuilt from the GGUF metadata by the golden script.
class TokenizerSmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = read_json(kGoldenDir / "smollm2_golden.json");
    path_ = cache_dir() / golden_.at("tokenizer_json").get<std::string>();
    if (fs::exists(path_)) return;
    // Without the golden script's file, Tessera's own writer makes one from the GGUF: the
    // golden ids (from Hugging Face's tokenizers) then check the writer and the reader.
    const fs::path gguf = cache_dir() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
    TESSERA_NEED_DEFAULT_MODEL(fs::exists(gguf), path_.string() + " and " + gguf.string());
    path_ = fs::temp_directory_path() /
            ("tessera-smollm2-tokenizer-" + std::to_string(::getpid()) + ".json");
    if (!fs::exists(path_)) {
      const Tokenizer from_gguf = Tokenizer::from_data(gguf_tokenizer_data(GgufFile::open(gguf)));
      std::ofstream(path_) << to_tokenizer_json(from_gguf);
    }
  }
  static void TearDownTestSuite() {
    fs::remove(fs::temp_directory_path() /
               ("tessera-smollm2-tokenizer-" + std::to_string(::getpid()) + ".json"));
  }
  // Parsed once: the real vocabulary is 1.5 MB of JSON.
  const Tokenizer& tokenizer() const {
    static const Tokenizer loaded = Tokenizer::from_json_file(path_);
    return loaded;
  }
  json golden_;
  fs::path path_;
};

TEST_F(TokenizerSmolLM2, GoldenIdsMatchHuggingFace) {
  const Tokenizer& tokenizer = this->tokenizer();
  EXPECT_EQ(tokenizer.vocab_size(), 49152);
  EXPECT_EQ(tokenizer.pre_tokenizer(), PreTokenizerKind::kSmolLM);
  for (const json& test_case : golden_.at("cases")) {
    const std::string text = test_case.at("text");
    const auto expected = test_case.at("ids").get<std::vector<std::int32_t>>();
    EXPECT_EQ(tokenizer.encode(text), expected) << printable(text);
    EXPECT_EQ(tokenizer.decode(expected), text) << printable(text);
  }
}

// The GGUF front end: the same data as GGUF carries it (tokens by id, merges, token types).
TEST_F(TokenizerSmolLM2, FromGgufDataMatchesGoldenIds) {
  const json source = read_json(path_);
  TokenizerData data;
  data.pre = "smollm";
  data.tokens.resize(source.at("model").at("vocab").size());
  for (const auto& [text, id] : source.at("model").at("vocab").items()) {
    data.tokens.at(id.get<std::size_t>()) = text;
  }
  data.token_types.assign(data.tokens.size(), static_cast<std::int32_t>(TokenType::kNormal));
  for (const json& added : source.at("added_tokens")) {
    data.token_types.at(added.at("id").get<std::size_t>()) =
        static_cast<std::int32_t>(TokenType::kControl);
  }
  data.merges = source.at("model").at("merges").get<std::vector<std::string>>();
  data.bos_id = golden_.at("bos_token_id").get<std::int32_t>();
  data.eos_id = golden_.at("eos_token_id").get<std::int32_t>();
  const Tokenizer tokenizer = Tokenizer::from_data(data);
  EXPECT_EQ(tokenizer.token_text(*tokenizer.bos_id()), "<|im_start|>");
  EXPECT_EQ(tokenizer.token_text(*tokenizer.eos_id()), "<|im_end|>");
  EXPECT_TRUE(tokenizer.is_special(*tokenizer.eos_id()));
  for (const json& test_case : golden_.at("cases")) {
    const std::string text = test_case.at("text");
    EXPECT_EQ(tokenizer.encode(text), test_case.at("ids").get<std::vector<std::int32_t>>())
        << printable(text);
  }
  const auto with_bos = tokenizer.encode("Hi", {.parse_special = true, .add_bos = true});
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), 1);
}

TEST_F(TokenizerSmolLM2, Encodes100KilobytesAndDecodesThemBack) {
  const Tokenizer& tokenizer = this->tokenizer();
  std::string text;
  std::mt19937 rng(7);
  while (text.size() < 100 * 1024) {
    const json& cases = golden_.at("cases");
    text += cases[rng() % cases.size()].at("text").get<std::string>();
    text += " word" + std::to_string(rng() % 5000) + " ";
  }
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tokenizer.encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(tokenizer.decode(ids), text);
  // Speed belongs in benchmarks; the time is printed for the log only.
  std::printf("SmolLM2: %zu bytes -> %zu tokens in %.3f s\n", text.size(), ids.size(), seconds);
}

// ---------------------------------------------------------------- pre-tokenizers

std::vector<std::string> pieces(PreTokenizerKind kind, std::string_view text) {
  std::vector<std::string> out;
  for (const std::string_view piece : pre_tokenize(kind, text)) out.emplace_back(piece);
  return out;
}

using Pieces = std::vector<std::string>;

TEST(TokenizerPreTokenize, Gpt2Pattern) {
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "Hello  world 123!!\n"),
            (Pieces{"Hello", " ", " world", " 123", "!!", "\n"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "I'm don't YOU'RE"),
            (Pieces{"I", "'m", " don", "'t", " YOU", "'", "RE"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "a\t\tb   "), (Pieces{"a", "\t", "\t", "b", "   "}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "caf\xC3\xA9 \xE4\xB8\xAD!"),
            (Pieces{"caf\xC3\xA9", " \xE4\xB8\xAD", "!"}));
  EXPECT_TRUE(pieces(PreTokenizerKind::kGpt2, "").empty());
}

TEST(TokenizerPreTokenize, Llama3Pattern) {
  EXPECT_EQ(pieces(PreTokenizerKind::kLlama3, "I'M 12345 abc\n\n  x"),
            (Pieces{"I", "'M", " ", "123", "45", " abc", "\n\n", " ", " x"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kLlama3, "(hello) {x}\n\n"),
            (Pieces{"(hello", ")", " {", "x", "}\n\n"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kLlama3, "a  \n  \t"), (Pieces{"a", "  \n", "  \t"}));
}

TEST(TokenizerPreTokenize, SmolLMIsolatesEveryDigit) {
  EXPECT_EQ(pieces(PreTokenizerKind::kSmolLM, "ab12 c3"), (Pieces{"ab", "1", "2", " c", "3"}));
  // The split comes first, so the space before a digit stays alone.
  EXPECT_EQ(pieces(PreTokenizerKind::kSmolLM, "x  7"), (Pieces{"x", "  ", "7"}));
}

TEST(TokenizerPreTokenize, InvalidUtf8BytesAreKeptAsSymbols) {
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "a\xFF\xFE b \xC3"),
            (Pieces{"a", "\xFF\xFE", " b", " \xC3"}));
}

std::string random_bytes(std::mt19937& rng, std::size_t length) {
  // Mostly interesting characters, some raw bytes.
  static const char* const kAtoms[] = {"a",
                                       "Z",
                                       " ",
                                       "  ",
                                       "\n",
                                       "\r\n",
                                       "\t",
                                       "'s",
                                       "'",
                                       "7",
                                       "42",
                                       "!",
                                       ".",
                                       "\xC3\xA9",
                                       "\xE4\xB8\xAD",
                                       "\xF0\x9F\x98\x80",
                                       "\xFF",
                                       "\x80",
                                       "\xC3",
                                       "<|im_end|>",
                                       "<|im_start|>",
                                       "\xE2\x80\x83",
                                       "\xC2\xA0"};
  std::string out;
  while (out.size() < length) {
    if (rng() % 4 == 0) {
      out.push_back(static_cast<char>(rng() % 256));
    } else {
      out += kAtoms[rng() % (sizeof(kAtoms) / sizeof(kAtoms[0]))];
    }
  }
  return out;
}

TEST(TokenizerPreTokenize, PiecesCoverTheTextExactly) {
  std::mt19937 rng(1);
  for (int round = 0; round < 300; ++round) {
    const std::string text = random_bytes(rng, rng() % 64);
    for (const PreTokenizerKind kind :
         {PreTokenizerKind::kGpt2, PreTokenizerKind::kSmolLM, PreTokenizerKind::kLlama3}) {
      std::string joined;
      for (const std::string& piece : pieces(kind, text)) {
        EXPECT_FALSE(piece.empty());
        joined += piece;
      }
      EXPECT_EQ(joined, text) << to_string(kind);
    }
  }
}

TEST(TokenizerPreTokenize, GgufNames) {
  EXPECT_EQ(pre_tokenizer_kind_from_gguf_name("smollm"), PreTokenizerKind::kSmolLM);
  EXPECT_EQ(pre_tokenizer_kind_from_gguf_name("llama-bpe"), PreTokenizerKind::kLlama3);
  EXPECT_EQ(pre_tokenizer_kind_from_gguf_name("gpt2"), PreTokenizerKind::kGpt2);
  try {
    pre_tokenizer_kind_from_gguf_name("deepseek-coder");
    FAIL() << "expected a TokenizerError";
  } catch (const TokenizerError& error) {
    EXPECT_NE(std::string(error.what()).find("\"deepseek-coder\""), std::string::npos)
        << error.what();
  }
}

// ---------------------------------------------------------------- round trips and BPE

TEST(TokenizerRoundTrip, ArbitraryBytesSurviveEncodeDecode) {
  std::mt19937 rng(2);
  for (const char* kind : kKinds) {
    const Tokenizer& tokenizer = toy(kind);
    for (int byte = 0; byte < 256; ++byte) {
      const std::string text(1, static_cast<char>(byte));
      EXPECT_EQ(tokenizer.decode(tokenizer.encode(text)), text) << kind << " byte " << byte;
    }
    for (int round = 0; round < 200; ++round) {
      const std::string text = random_bytes(rng, rng() % 200);
      const auto ids = tokenizer.encode(text);
      EXPECT_EQ(tokenizer.decode(ids), text) << kind << " " << printable(text);
      EXPECT_EQ(tokenizer.decode(tokenizer.encode(text, {.parse_special = false})), text);
    }
  }
}

// Naive BPE: rescan the whole word for the lowest-ranked pair, merge its leftmost occurrence.
std::vector<std::int32_t> naive_bpe(const Tokenizer& tokenizer,
                                    const std::map<std::pair<std::string, std::string>, int>& ranks,
                                    std::string_view piece) {
  std::vector<std::string> symbols;
  for (const char c : piece) {
    std::string symbol;
    const char32_t cp = byte_to_unicode(static_cast<std::uint8_t>(c));
    if (cp < 0x80) {
      symbol.push_back(static_cast<char>(cp));
    } else {
      symbol.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      symbol.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    symbols.push_back(symbol);
  }
  while (true) {
    int best_rank = -1;
    std::size_t best_at = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      const auto found = ranks.find({symbols[i], symbols[i + 1]});
      if (found != ranks.end() && (best_rank < 0 || found->second < best_rank)) {
        best_rank = found->second;
        best_at = i;
      }
    }
    if (best_rank < 0) break;
    symbols[best_at] += symbols[best_at + 1];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
  std::vector<std::int32_t> ids;
  for (const std::string& symbol : symbols) ids.push_back(*tokenizer.token_id(symbol));
  return ids;
}

TEST(TokenizerRoundTrip, MergesAgreeWithNaiveReference) {
  const Tokenizer& tokenizer = toy("gpt2");
  const json source = read_json(kToyDir / "toy_gpt2.json");
  std::map<std::pair<std::string, std::string>, int> ranks;
  int rank = 0;
  for (const json& merge : source.at("model").at("merges")) {
    if (merge.is_array()) {
      ranks.emplace(std::pair{merge[0].get<std::string>(), merge[1].get<std::string>()}, rank++);
    } else {
      const std::string text = merge.get<std::string>();
      const std::size_t space = text.find(' ');
      ranks.emplace(std::pair{text.substr(0, space), text.substr(space + 1)}, rank++);
    }
  }
  ASSERT_GT(ranks.size(), 100U);
  std::mt19937 rng(3);
  int compared = 0;
  for (int round = 0; round < 200; ++round) {
    const std::string text = random_bytes(rng, rng() % 120);
    std::vector<std::int32_t> expected;
    for (const std::string_view piece : pre_tokenize(PreTokenizerKind::kGpt2, text)) {
      const auto ids = naive_bpe(tokenizer, ranks, piece);
      expected.insert(expected.end(), ids.begin(), ids.end());
      ++compared;
    }
    EXPECT_EQ(tokenizer.encode(text, {.parse_special = false}), expected) << printable(text);
  }
  EXPECT_GT(compared, 1000);
}

TEST(TokenizerRoundTrip, Encodes100KilobytesQuickly) {
  const Tokenizer& tokenizer = toy("llama3");
  std::mt19937 rng(4);
  std::string text;
  while (text.size() < 100 * 1024) text += random_bytes(rng, 64) + " the cat sat on the mat ";
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tokenizer.encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(tokenizer.decode(ids), text);
  EXPECT_LT(seconds, 1.0);
}

TEST(TokenizerRoundTrip, LongWhitespaceRunIsOnePieceAndFast) {
  const Tokenizer& tokenizer = toy("gpt2");
  const std::string text = "x" + std::string(50000, ' ');
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tokenizer.encode(text);
  EXPECT_EQ(tokenizer.decode(ids), text);
  EXPECT_EQ(ids.size(), 1 + text.size() / 2);  // "x", then the toy's "  " merge 25000 times
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
}

// ---------------------------------------------------------------- special tokens

TEST(TokenizerSpecial, AddedTokensAreMatchedBeforePreTokenizing) {
  const Tokenizer& tokenizer = toy("smollm");
  const std::int32_t start = *tokenizer.token_id("<|im_start|>");
  const std::int32_t end = *tokenizer.token_id("<|im_end|>");
  EXPECT_TRUE(tokenizer.is_special(start));
  const auto ids = tokenizer.encode("<|im_start|>user\nhi<|im_end|>");
  ASSERT_GE(ids.size(), 3U);
  EXPECT_EQ(ids.front(), start);
  EXPECT_EQ(ids.back(), end);
  EXPECT_EQ(tokenizer.decode(ids), "<|im_start|>user\nhi<|im_end|>");
  EXPECT_EQ(tokenizer.decode(ids, /*skip_special=*/true), "user\nhi");
  // Untrusted text: the marker is spelled out with ordinary tokens.
  const auto plain = tokenizer.encode("<|im_start|>", {.parse_special = false});
  EXPECT_GT(plain.size(), 1U);
  for (const std::int32_t id : plain) EXPECT_FALSE(tokenizer.is_special(id));
  EXPECT_EQ(tokenizer.decode(plain), "<|im_start|>");
}

TEST(TokenizerSpecial, NonSpecialAddedTokenIsKeptWhenSkippingSpecials) {
  const Tokenizer& tokenizer = toy("gpt2");
  const auto custom = tokenizer.token_id("<custom>");
  ASSERT_TRUE(custom);
  EXPECT_FALSE(tokenizer.is_special(*custom));
  const auto ids = tokenizer.encode("a<custom>b");
  EXPECT_NE(std::find(ids.begin(), ids.end(), *custom), ids.end());
  EXPECT_EQ(tokenizer.decode(ids, true), "a<custom>b");
}

TokenizerData byte_vocabulary() {
  TokenizerData data;
  for (int byte = 0; byte < 256; ++byte) {
    std::string text;
    const char32_t cp = byte_to_unicode(static_cast<std::uint8_t>(byte));
    if (cp < 0x80) {
      text.push_back(static_cast<char>(cp));
    } else {
      text.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      text.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    data.tokens.push_back(text);
  }
  data.token_types.assign(256, static_cast<std::int32_t>(TokenType::kNormal));
  return data;
}

TEST(TokenizerSpecial, LongestAddedTokenWins) {
  TokenizerData data = byte_vocabulary();
  data.tokens.push_back("<|x|>");
  data.tokens.push_back("<|x|>y");
  data.token_types.push_back(static_cast<std::int32_t>(TokenType::kControl));
  data.token_types.push_back(static_cast<std::int32_t>(TokenType::kUserDefined));
  const Tokenizer tokenizer = Tokenizer::from_data(data);
  EXPECT_EQ(tokenizer.encode("<|x|>y<|x|>"), (std::vector<std::int32_t>{257, 256}));
  // Byte tokens have the byte's value as id in this vocabulary.
  EXPECT_EQ(tokenizer.encode("<|x|>z"), (std::vector<std::int32_t>{256, 'z'}));
  EXPECT_EQ(tokenizer.encode("<|x|"), (std::vector<std::int32_t>{'<', '|', 'x', '|'}));
}

// ---------------------------------------------------------------- errors

std::string error_of(const std::string& json_text) {
  try {
    Tokenizer::from_json(json_text, "bad.json");
  } catch (const TokenizerError& error) {
    return error.what();
  }
  return "(no error)";
}

std::string toy_with(const std::string& pointer, const json& value) {
  json source = read_json(kToyDir / "toy_gpt2.json");
  if (value.is_null() && pointer.ends_with("!erase")) {
    const std::string path = pointer.substr(0, pointer.size() - 6);
    const json::json_pointer where(path);
    source[where.parent_pointer()].erase(where.back());
  } else {
    source[json::json_pointer(pointer)] = value;
  }
  return source.dump();
}

TEST(TokenizerErrors, MessagesNameTheJsonPath) {
  EXPECT_NE(error_of("{ not json").find("bad.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("bad.json: /: expected a JSON object"), std::string::npos);
  const std::string no_model = error_of(toy_with("/model!erase", nullptr));
  EXPECT_NE(no_model.find("/: missing required key \"model\""), std::string::npos) << no_model;
  const std::string bad_merge = error_of(toy_with("/model/merges/3", "nospace"));
  EXPECT_NE(bad_merge.find("bad.json: /model/merges/3: expected \"left right\""), std::string::npos)
      << bad_merge;
  const std::string bad_id = error_of(toy_with("/model/vocab/abc", "seven"));
  EXPECT_NE(bad_id.find("/model/vocab/abc: expected a non-negative integer"), std::string::npos)
      << bad_id;
  const std::string bad_pre = error_of(toy_with("/pre_tokenizer/type", "Whitespace"));
  EXPECT_NE(bad_pre.find("/pre_tokenizer/type: unsupported pre-tokenizer \"Whitespace\""),
            std::string::npos)
      << bad_pre;
  const std::string bad_normalizer = error_of(toy_with("/normalizer", json{{"type", "NFC"}}));
  EXPECT_NE(bad_normalizer.find("/normalizer: normalizers are not supported"), std::string::npos)
      << bad_normalizer;
  const std::string bad_model = error_of(toy_with("/model/type", "WordPiece"));
  EXPECT_NE(bad_model.find("/model/type: unsupported model \"WordPiece\""), std::string::npos)
      << bad_model;
  const std::string bad_added = error_of(toy_with("/added_tokens/0/content", 5));
  EXPECT_NE(bad_added.find("/added_tokens/0/content: expected a string, found number"),
            std::string::npos)
      << bad_added;
  const std::string gap = error_of(toy_with("/model/vocab/!", 100000));
  EXPECT_NE(gap.find("/model/vocab: no token has id"), std::string::npos) << gap;
}

TEST(TokenizerErrors, FileAndDataErrors) {
  try {
    Tokenizer::from_json_file("/nonexistent/tokenizer.json");
    FAIL();
  } catch (const TokenizerError& error) {
    EXPECT_NE(std::string(error.what()).find("/nonexistent/tokenizer.json: cannot open"),
              std::string::npos);
  }
  TokenizerData data = byte_vocabulary();
  data.token_types.pop_back();
  EXPECT_THROW(Tokenizer::from_data(data), TokenizerError);
  data = byte_vocabulary();
  data.model = "llama";
  EXPECT_THROW(Tokenizer::from_data(data), TokenizerError);
  data = byte_vocabulary();
  data.merges = {"a"};
  try {
    Tokenizer::from_data(data);
    FAIL();
  } catch (const TokenizerError& error) {
    EXPECT_NE(std::string(error.what()).find("tokenizer.ggml.merges[0]"), std::string::npos);
  }
  data = byte_vocabulary();
  data.eos_id = 9999;
  EXPECT_THROW(Tokenizer::from_data(data), TokenizerError);
  const Tokenizer tokenizer = Tokenizer::from_data(byte_vocabulary());
  const std::vector<std::int32_t> bad_ids = {1, 256};
  try {
    (void)tokenizer.decode(bad_ids);
    FAIL();
  } catch (const TokenizerError& error) {
    EXPECT_NE(std::string(error.what()).find("id 256 at position 1"), std::string::npos);
  }
  EXPECT_THROW((void)tokenizer.encode("x", {.add_bos = true}), TokenizerError);
}

TEST(TokenizerErrors, MissingByteTokenIsReported) {
  TokenizerData data = byte_vocabulary();
  data.tokens[0xFF] = "unused-byte";  // no token for byte 0xFF any more
  const Tokenizer tokenizer = Tokenizer::from_data(data);
  try {
    (void)tokenizer.encode("a\xFF");
    FAIL();
  } catch (const TokenizerError& error) {
    EXPECT_NE(std::string(error.what()).find("byte 0xFF"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace tessera
