// Training text: the files of a corpus (a folder of text files, or one file), tokenised with the
// model's own tokenizer, and the token cache that spares a second run the tokenising.
//
// Each file is one document. Its bytes are encoded as they are (no BOS, special-token text
// such as "<|im_end|>" left as plain text: a corpus cannot inject control tokens). Empty files
// are no documents. How documents become sequences is batches.hpp's part.
#pragma once

#include <tessera/engine/error.hpp>
#include <tessera/text/tokenizer.hpp>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

// A corpus that cannot be read or is unusable (empty, too short, ...); the message names the
// path, what was found and what was expected.
struct CorpusError : Error {
  using Error::Error;
};

struct CorpusOptions {
  std::filesystem::path path;  // a folder (searched recursively) or one file
  // Glob patterns a file must match (any of them) to be part of a folder's corpus: `*` is any
  // run of characters but '/', `**` any run including '/', `?` one character. A pattern
  // without '/' is matched against the file name, one with '/' against the path relative to
  // the folder ("library/*.rst.txt"). Not applied when `path` is a file.
  std::vector<std::string> include = {"*"};
};

struct CorpusFile {
  std::filesystem::path path;
  std::string name;  // relative to the corpus folder, '/'-separated; the file name for a file
  uint64_t bytes = 0;
};

// The glob match CorpusOptions::include describes, over a whole name.
bool glob_match(std::string_view pattern, std::string_view name);

// The corpus' files sorted by name (byte order), so every platform sees one order. Hidden
// entries (names starting with '.') are skipped. Throws CorpusError when the path does not
// exist or no file matches.
std::vector<CorpusFile> list_corpus(const CorpusOptions& options);

struct TokenizedCorpus {
  std::vector<std::string> names;  // the documents, in list_corpus order (empty files left out)
  std::vector<uint64_t> offsets;   // names.size() + 1 offsets into tokens
  std::vector<int32_t> tokens;     // every document's tokens, one after another
  uint64_t text_bytes = 0;
  std::string corpus_hash;     // sha256 hex of the documents' names and bytes
  std::string tokenizer_hash;  // tokenizer_identity()

  size_t documents() const { return names.size(); }
  std::span<const int32_t> document(size_t i) const {
    return std::span<const int32_t>(tokens).subspan(offsets[i], offsets[i + 1] - offsets[i]);
  }
};

// sha256 hex of everything that decides how the tokenizer encodes text: vocabulary, merges,
// token types, pre-tokenizer, ignore_merges, and the encoding convention of this file.
std::string tokenizer_identity(const Tokenizer& tokenizer);

struct TokenizeOptions {
  // The token cache: read when its header names this tokenizer and these documents, written
  // (whole, then renamed into place) otherwise. Empty: no cache.
  std::filesystem::path cache_file;
  int threads = 0;  // documents are encoded in parallel; 0: every core
};

struct TokenizeReport {
  bool from_cache = false;
  // Why the cache was not used ("absent", "made for another tokenizer", ...); empty when it was.
  std::string cache_note;
  double seconds = 0.0;
};

// Reads and tokenises the files (or takes them from the cache). Throws CorpusError when every
// file is empty or a file cannot be read.
TokenizedCorpus tokenize_corpus(const std::vector<CorpusFile>& files, const Tokenizer& tokenizer,
                                const TokenizeOptions& options = {},
                                TokenizeReport* report = nullptr);

// Where the cache of a corpus goes by default: $TESSERA_CACHE (else ~/.cache/tessera)
// /tokens/<corpus folder or file name>-<16 hex digits of the corpus' absolute path, include
// patterns and tokenizer>.tokens. One file per corpus location and tokenizer: a changed corpus
// rebuilds it in place.
std::filesystem::path default_token_cache(const CorpusOptions& options, const Tokenizer& tokenizer);

}  // namespace tessera
