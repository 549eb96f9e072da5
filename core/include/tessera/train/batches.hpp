// From a tokenised corpus to batches: the split into a train part and a held-out part (by
// document, so held-out text is never trained on), packing into fixed-length sequences, and an
// epoch-aware cursor over shuffled sequences that can be saved and restored.
//
// Packing convention: a part's documents, in their (shuffled) order, each followed by the
// separator token (the tokenizer's EOS unless the config names another), form one stream:
//
//   doc_1 SEP doc_2 SEP ... doc_n SEP
//
// Sequence i is the window stream[i * L, i * L + L + 1) of L + 1 tokens, L = seq_len: the model
// reads its first L tokens and is scored on its last L (each token predicts the next). Windows
// overlap by that one token, so every token of the stream but the first is a target exactly
// once; what is left at the end (fewer than L + 1 tokens) is not used. A sequence may cross
// document boundaries; the separator marks them.
#pragma once

#include <tessera/train/corpus.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tessera {

struct PackingOptions {
  int32_t seq_len = 512;   // L: tokens the model reads per sequence
  int32_t separator = -1;  // the token after every document; must be >= 0
  // The held-out part, as whole documents chosen by split_seed: either a fraction of the
  // corpus' tokens (documents are taken until they reach it; at least one) or a number of
  // documents. Both 0: no held-out part. Not both.
  double held_out_fraction = 0.0;
  int64_t held_out_documents = 0;
  // Chooses the held-out documents and orders the train documents. Kept apart from the run's
  // seed so that runs with different seeds are measured on the same held-out text.
  uint64_t split_seed = 0;
};

// One part: its documents (indices into the corpus), the packed stream and its sequences.
struct PackedPart {
  std::vector<size_t> documents;
  std::vector<int32_t> stream;
  int32_t seq_len = 0;
  uint64_t text_tokens = 0;  // the documents' tokens, separators not counted

  int64_t sequences() const {
    return stream.size() > static_cast<size_t>(seq_len)
               ? static_cast<int64_t>((stream.size() - 1) / static_cast<size_t>(seq_len))
               : 0;
  }
  // Tokens scored per pass over the part: sequences() * seq_len.
  int64_t target_tokens() const { return sequences() * seq_len; }
  std::span<const int32_t> sequence(int64_t i) const {
    return std::span<const int32_t>(stream).subspan(static_cast<size_t>(i) * seq_len,
                                                    static_cast<size_t>(seq_len) + 1);
  }
};

// The corpus split and packed. Throws CorpusError, naming what and what was expected, when
// seq_len is not in [1, max_seq_len], the separator is not a token of the vocabulary, the
// held-out request is malformed or leaves no document to train on, the train part is shorter
// than one sequence, or a requested held-out part would hold no sequence.
class TokenDataset {
 public:
  TokenDataset(const TokenizedCorpus& corpus, const PackingOptions& options, int32_t max_seq_len,
               int32_t vocab_size);

  int32_t seq_len() const { return train_.seq_len; }
  const PackedPart& train() const { return train_; }
  const PackedPart& held_out() const { return held_out_; }  // no sequences when none asked

 private:
  PackedPart train_;
  PackedPart held_out_;
};

// A batch of sequences, each seq_len + 1 tokens (inputs: the first seq_len, targets: the last).
struct Batch {
  int32_t seq_len = 0;
  std::vector<int64_t> indices;  // which sequences of the part
  std::vector<int32_t> tokens;   // size() rows of seq_len + 1

  int32_t size() const { return static_cast<int32_t>(indices.size()); }
  std::span<const int32_t> row(int32_t i) const {
    return std::span<const int32_t>(tokens).subspan(static_cast<size_t>(i) * (seq_len + 1),
                                                    static_cast<size_t>(seq_len) + 1);
  }
  std::span<const int32_t> inputs(int32_t i) const { return row(i).first(seq_len); }
  std::span<const int32_t> targets(int32_t i) const { return row(i).subspan(1); }
};

// The sequences [first, first + count) of a part in order (held-out batches).
Batch batch_of(const PackedPart& part, int64_t first, int64_t count);

// Where a cursor is: the next sequence is the `position`-th of epoch `epoch`'s order. The seed
// and the part's sequence count are kept to refuse a restore into another dataset.
struct CursorState {
  uint64_t epoch = 0;
  uint64_t position = 0;
  uint64_t seed = 0;
  uint64_t sequences = 0;

  // "epoch=E position=P seed=S sequences=N", for a checkpoint's metadata.
  std::string to_text() const;
  // Throws CorpusError for text to_text() did not write.
  static CursorState from_text(const std::string& text);
  bool operator==(const CursorState&) const = default;
};

// Walks a part's sequences epoch after epoch, each epoch in its own order (a permutation drawn
// from Rng(seed, epoch), identical on every platform). A batch that runs past the end of an
// epoch continues with the next one.
class BatchCursor {
 public:
  BatchCursor(const PackedPart& part, uint64_t seed);

  Batch next(int32_t batch_size);
  uint64_t epoch() const { return epoch_; }
  CursorState state() const;
  // Throws CorpusError when the state was saved for another seed or sequence count, or its
  // position is past the end of an epoch.
  void restore(const CursorState& state);

 private:
  void shuffle();
  const PackedPart* part_;
  uint64_t seed_;
  uint64_t epoch_ = 0;
  uint64_t position_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace tessera
