// Reading a config's [data] corpus for a command: listing, tokenising (through the token
// cache) and splitting into the train and held-out parts. `tessera train` and the puzzle
// stages read their text this way.
#pragma once

#include <tessera/engine/manifest.hpp>
#include <tessera/text/tokenizer.hpp>
#include <tessera/train/batches.hpp>
#include <tessera/train/corpus.hpp>
#include <tessera/train/train_config.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tessera::cli {

struct CorpusData {
  std::vector<CorpusFile> files;
  TokenizedCorpus corpus;
  TokenizeReport report;
  std::filesystem::path cache_file;  // empty: no cache
  std::optional<TokenDataset> dataset;
};

// The corpus [data] names, tokenised with `tokenizer`, each document followed by `separator`,
// packed for `model`'s maximum length and vocabulary.
CorpusData load_corpus_data(const DataSection& data, const Tokenizer& tokenizer, int32_t separator,
                            const ModelSpec& model);

// "corpus ..." and "tokens ..." lines for a command's summary.
std::string corpus_text(const DataSection& data, const CorpusData& c);

// 2812345 -> "2,812,345".
std::string grouped(int64_t value);

}  // namespace tessera::cli
