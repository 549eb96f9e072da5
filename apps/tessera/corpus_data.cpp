#include "corpus_data.hpp"

#include <cstdio>
#include <sstream>

namespace tessera::cli {

std::string grouped(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  for (size_t i = digits.size(); i > 3; i -= 3) digits.insert(i - 3, ",");
  return (value < 0 ? "-" : "") + digits;
}

CorpusData load_corpus_data(const DataSection& data, const Tokenizer& tokenizer, int32_t separator,
                            const ModelSpec& model) {
  CorpusData c;
  const CorpusOptions corpus_options{data.path, data.include};
  c.files = list_corpus(corpus_options);
  TokenizeOptions tokenize;
  if (data.cache) {
    tokenize.cache_file =
        data.cache_path.empty() ? default_token_cache(corpus_options, tokenizer) : data.cache_path;
  }
  c.cache_file = tokenize.cache_file;
  c.corpus = tokenize_corpus(c.files, tokenizer, tokenize, &c.report);
  PackingOptions packing;
  packing.seq_len = data.seq_len;
  packing.separator = separator;
  packing.held_out_fraction = data.held_out_fraction;
  packing.held_out_documents = data.held_out_documents;
  packing.split_seed = data.split_seed;
  c.dataset.emplace(c.corpus, packing, model.max_seq_len, model.vocab_size);
  return c;
}

std::string corpus_text(const DataSection& data, const CorpusData& c) {
  std::ostringstream out;
  out << "corpus     " << data.path.string() << ": " << c.corpus.documents() << " documents of "
      << c.files.size() << " files, " << grouped(static_cast<int64_t>(c.corpus.text_bytes))
      << " bytes, " << grouped(static_cast<int64_t>(c.corpus.tokens.size())) << " tokens\n";
  out << "tokens     " << (c.report.from_cache ? "from the cache " : "tokenised in ");
  if (c.report.from_cache) {
    out << c.cache_file.string() << "\n";
  } else {
    char seconds[32];
    std::snprintf(seconds, sizeof(seconds), "%.1f", c.report.seconds);
    out << seconds << "s"
        << (c.cache_file.empty()
                ? " (no cache)"
                : " (cache " + c.report.cache_note + "; written to " + c.cache_file.string() + ")")
        << "\n";
  }
  return out.str();
}

}  // namespace tessera::cli
