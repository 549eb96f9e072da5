// Training corpora: SHA-256, glob patterns, listing a folder or a file, tokenising with the
// model's tokenizer, and the token cache (reused, rebuilt when stale or damaged).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <tessera/train/corpus.hpp>
#include <tessera/train/digest.hpp>
#include <vector>

#include "hf_fixtures.hpp"
#include "train_data_fixtures.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using test::byte_tokenizer;
using test::expect_error_with;

const fs::path kToyDir = fs::path(TESSERA_SOURCE_DIR) / "tests" / "data" / "tokenizer";

TEST(TrainDigest, Sha256KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(TrainDigest, PiecesEqualTheWhole) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>(i * 7 + 3);
  for (const size_t piece : {1U, 3U, 63U, 64U, 65U, 200U}) {
    Sha256 h;
    for (size_t at = 0; at < text.size(); at += piece) h.add(text.substr(at, piece));
    EXPECT_EQ(h.hex(), sha256_hex(text)) << "pieces of " << piece;
  }
  // Fields are length-prefixed: ("ab", "c") is not ("a", "bc").
  EXPECT_NE(Sha256().add_field("ab").add_field("c").hex(),
            Sha256().add_field("a").add_field("bc").hex());
}

TEST(TrainCorpus, GlobPatterns) {
  EXPECT_TRUE(glob_match("*", "a.txt"));
  EXPECT_TRUE(glob_match("*.rst.txt", "os.rst.txt"));
  EXPECT_FALSE(glob_match("*.rst.txt", "os.txt"));
  EXPECT_FALSE(glob_match("*.txt", "library/os.txt"));  // '*' stops at '/'
  EXPECT_TRUE(glob_match("library/*.txt", "library/os.txt"));
  EXPECT_FALSE(glob_match("library/*.txt", "library/sub/os.txt"));
  EXPECT_TRUE(glob_match("library/**.txt", "library/sub/os.txt"));
  EXPECT_TRUE(glob_match("**/os.txt", "os.txt"));  // "**/" may match no folder
  EXPECT_TRUE(glob_match("**/os.txt", "a/b/os.txt"));
  EXPECT_TRUE(glob_match("f?le", "file"));
  EXPECT_FALSE(glob_match("f?le", "f/le"));
  EXPECT_FALSE(glob_match("file", "file2"));
  EXPECT_TRUE(glob_match("model.layers.*.mlp.*", "model.layers.3.mlp.up_proj.weight"));
  EXPECT_FALSE(glob_match("model.layers.*.mlp.*", "model.layers.3.self_attn.q_proj.weight"));
}

class TrainCorpusFiles : public test::TempFolderTest {
 protected:
  void make(const std::string& name, const std::string& text) const {
    fs::create_directories((dir_ / name).parent_path());
    write_file(dir_ / name, text);
  }
  static std::vector<std::string> names(const std::vector<CorpusFile>& files) {
    std::vector<std::string> out;
    for (const CorpusFile& f : files) out.push_back(f.name);
    return out;
  }
};

TEST_F(TrainCorpusFiles, ListsAFolderSortedWithoutHiddenEntries) {
  make("b.txt", "bb");
  make("a.txt", "a");
  make("sub/c.rst.txt", "ccc");
  make("sub/d.md", "dddd");
  make(".hidden.txt", "x");
  make(".git/e.txt", "x");
  make("sub/.cache/f.txt", "x");
  const std::vector<CorpusFile> all = list_corpus({dir_, {"*"}});
  EXPECT_EQ(names(all), (std::vector<std::string>{"a.txt", "b.txt", "sub/c.rst.txt", "sub/d.md"}));
  EXPECT_EQ(all[2].bytes, 3U);
  EXPECT_EQ(names(list_corpus({dir_, {"*.txt"}})),
            (std::vector<std::string>{"a.txt", "b.txt", "sub/c.rst.txt"}));
  EXPECT_EQ(names(list_corpus({dir_, {"*.rst.txt", "*.md"}})),
            (std::vector<std::string>{"sub/c.rst.txt", "sub/d.md"}));
  EXPECT_EQ(names(list_corpus({dir_, {"sub/*"}})),
            (std::vector<std::string>{"sub/c.rst.txt", "sub/d.md"}));
}

TEST_F(TrainCorpusFiles, ListsOneFileWhateverTheFilter) {
  make("only.dat", "text");
  const std::vector<CorpusFile> files = list_corpus({dir_ / "only.dat", {"*.txt"}});
  ASSERT_EQ(files.size(), 1U);
  EXPECT_EQ(files[0].name, "only.dat");
  EXPECT_EQ(files[0].bytes, 4U);
}

TEST_F(TrainCorpusFiles, ListingErrorsNameThePathAndWhatWasExpected) {
  expect_error_with(
      [&] {
        list_corpus({dir_ / "missing", {"*"}});
      },
      {(dir_ / "missing").string(), "does not exist", "scripts/fetch-corpus.sh"});
  expect_error_with(
      [&] {
        list_corpus({dir_, {"*"}});
      },
      {dir_.string(), "has no file matching include = [\"*\"]", "0 files seen"});
  make("a.md", "text");
  expect_error_with(
      [&] {
        list_corpus({dir_, {"*.txt", "*.rst"}});
      },
      {"no file matching include = [\"*.txt\", \"*.rst\"]", "1 files seen"});
}

TEST_F(TrainCorpusFiles, TokenisesEachFileAsADocumentSkippingEmptyOnes) {
  make("a.txt", "hello");
  make("b.txt", "");
  make("c.txt", "<|endoftext|> is text here");
  const TokenizedCorpus c = tokenize_corpus(list_corpus({dir_, {"*"}}), byte_tokenizer());
  EXPECT_EQ(c.names, (std::vector<std::string>{"a.txt", "c.txt"}));
  ASSERT_EQ(c.offsets, (std::vector<uint64_t>{0, 5, 31}));
  EXPECT_EQ(c.text_bytes, 31U);
  // Special-token text in a corpus stays text: no control token is injected.
  for (const int32_t id : c.tokens) EXPECT_LT(id, 256);
  EXPECT_EQ(byte_tokenizer().decode(c.document(1)), "<|endoftext|> is text here");
  EXPECT_EQ(c.corpus_hash.size(), 64U);
  EXPECT_EQ(c.tokenizer_hash, tokenizer_identity(byte_tokenizer()));
}

TEST_F(TrainCorpusFiles, TokenisesWithTheModelsBpe) {
  const Tokenizer toy = Tokenizer::from_json_file(kToyDir / "toy_smollm.json");
  const std::string text = "The quick brown fox jumps over the lazy dog. 12345 times!\n";
  make("a.txt", text);
  make("b.txt", text + text);
  const TokenizedCorpus c = tokenize_corpus(list_corpus({dir_, {"*"}}), toy);
  EncodeOptions plain;
  plain.parse_special = false;
  const std::vector<int32_t> a = toy.encode(text, plain);
  const std::vector<int32_t> b = toy.encode(text + text, plain);
  ASSERT_EQ(c.documents(), 2U);
  EXPECT_EQ(std::vector<int32_t>(c.document(0).begin(), c.document(0).end()), a);
  EXPECT_EQ(std::vector<int32_t>(c.document(1).begin(), c.document(1).end()), b);
  EXPECT_LT(a.size(), text.size());  // merges happened
}

TEST_F(TrainCorpusFiles, EmptyCorpusIsAnError) {
  make("a.txt", "");
  make("b.txt", "");
  expect_error_with(
      [&] {
        tokenize_corpus(list_corpus({dir_, {"*"}}), byte_tokenizer());
      },
      {"the corpus has no text", "2 files", "all empty", (dir_ / "a.txt").string()});
  expect_error_with([&] { tokenize_corpus({}, byte_tokenizer()); }, {"the corpus has no files"});
}

TEST_F(TrainCorpusFiles, CacheIsReusedAndRebuiltWhenStale) {
  make("corpus/a.txt", "first document");
  make("corpus/b.txt", "second one");
  const fs::path cache = dir_ / "cache" / "corpus.tokens";
  TokenizeOptions options;
  options.cache_file = cache;
  TokenizeReport report;
  const std::vector<CorpusFile> files = list_corpus({dir_ / "corpus", {"*"}});
  const TokenizedCorpus first = tokenize_corpus(files, byte_tokenizer(), options, &report);
  EXPECT_FALSE(report.from_cache);
  EXPECT_EQ(report.cache_note, "absent");
  ASSERT_TRUE(fs::exists(cache));

  const TokenizedCorpus second = tokenize_corpus(files, byte_tokenizer(), options, &report);
  EXPECT_TRUE(report.from_cache);
  EXPECT_EQ(report.cache_note, "");
  EXPECT_EQ(second.tokens, first.tokens);
  EXPECT_EQ(second.offsets, first.offsets);
  EXPECT_EQ(second.names, first.names);
  EXPECT_EQ(second.corpus_hash, first.corpus_hash);
  EXPECT_EQ(second.text_bytes, first.text_bytes);

  // A changed file: stale, rebuilt, and the rebuilt cache serves the next run.
  make("corpus/b.txt", "second one, edited");
  const std::vector<CorpusFile> edited = list_corpus({dir_ / "corpus", {"*"}});
  const TokenizedCorpus third = tokenize_corpus(edited, byte_tokenizer(), options, &report);
  EXPECT_FALSE(report.from_cache);
  EXPECT_EQ(report.cache_note, "stale: the corpus' files changed");
  EXPECT_EQ(third.offsets.back(), first.offsets.back() + 8);
  tokenize_corpus(edited, byte_tokenizer(), options, &report);
  EXPECT_TRUE(report.from_cache);

  // Another tokenizer: rebuilt.
  const Tokenizer toy = Tokenizer::from_json_file(kToyDir / "toy_gpt2.json");
  const TokenizedCorpus fourth = tokenize_corpus(edited, toy, options, &report);
  EXPECT_FALSE(report.from_cache);
  EXPECT_EQ(report.cache_note, "made for another tokenizer");
  EXPECT_NE(fourth.tokenizer_hash, third.tokenizer_hash);
  // No folder left with partial files.
  for (const auto& e : fs::directory_iterator(dir_ / "cache")) {
    EXPECT_EQ(e.path().filename(), "corpus.tokens");
  }
}

TEST_F(TrainCorpusFiles, DamagedCacheIsRebuilt) {
  make("corpus/a.txt", "some text for the cache");
  const fs::path cache = dir_ / "corpus.tokens";
  TokenizeOptions options;
  options.cache_file = cache;
  TokenizeReport report;
  const std::vector<CorpusFile> files = list_corpus({dir_ / "corpus", {"*"}});
  const TokenizedCorpus whole = tokenize_corpus(files, byte_tokenizer(), options, &report);
  const std::string bytes = read_file(cache);

  write_file(cache, bytes.substr(0, bytes.size() - 5));  // cut short
  EXPECT_EQ(tokenize_corpus(files, byte_tokenizer(), options, &report).tokens, whole.tokens);
  EXPECT_FALSE(report.from_cache);
  EXPECT_EQ(report.cache_note, "corrupt or cut short");
  EXPECT_EQ(read_file(cache), bytes);  // written again

  write_file(cache, "not a cache at all");
  tokenize_corpus(files, byte_tokenizer(), options, &report);
  EXPECT_EQ(report.cache_note, "not a token cache of this version");

  std::string huge = bytes;  // a document count larger than the file could hold
  huge[8 + 128] = '\xff';
  huge[8 + 128 + 7] = '\x7f';
  write_file(cache, huge);
  tokenize_corpus(files, byte_tokenizer(), options, &report);
  EXPECT_EQ(report.cache_note, "corrupt");
  tokenize_corpus(files, byte_tokenizer(), options, &report);
  EXPECT_TRUE(report.from_cache);
}

TEST_F(TrainCorpusFiles, DefaultCacheIsPerCorpusAndTokenizer) {
  const char* old = std::getenv("TESSERA_CACHE");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("TESSERA_CACHE", dir_.c_str(), 1);
  const Tokenizer toy = Tokenizer::from_json_file(kToyDir / "toy_gpt2.json");
  const fs::path a = default_token_cache({dir_ / "corpus", {"*"}}, byte_tokenizer());
  EXPECT_EQ(a.parent_path(), dir_ / "tokens");
  EXPECT_EQ(a.filename().string().rfind("corpus-", 0), 0U) << a;
  EXPECT_EQ(a.extension(), ".tokens");
  EXPECT_EQ(default_token_cache({dir_ / "corpus", {"*"}}, byte_tokenizer()), a);
  EXPECT_NE(default_token_cache({dir_ / "corpus", {"*.txt"}}, byte_tokenizer()), a);
  EXPECT_NE(default_token_cache({dir_ / "corpus", {"*"}}, toy), a);
  EXPECT_NE(default_token_cache({dir_ / "other", {"*"}}, byte_tokenizer()), a);
  if (old != nullptr) {
    ::setenv("TESSERA_CACHE", saved.c_str(), 1);
  } else {
    ::unsetenv("TESSERA_CACHE");
  }
}

TEST(TrainCorpus, TokenizerIdentityTellsTokenizersApart) {
  const Tokenizer gpt2 = Tokenizer::from_json_file(kToyDir / "toy_gpt2.json");
  const Tokenizer gpt2_again = Tokenizer::from_json_file(kToyDir / "toy_gpt2.json");
  const Tokenizer smollm = Tokenizer::from_json_file(kToyDir / "toy_smollm.json");
  EXPECT_EQ(tokenizer_identity(gpt2), tokenizer_identity(gpt2_again));
  EXPECT_NE(tokenizer_identity(gpt2), tokenizer_identity(smollm));
  EXPECT_NE(tokenizer_identity(gpt2), tokenizer_identity(byte_tokenizer()));
}

}  // namespace
}  // namespace tessera
