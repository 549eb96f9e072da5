// Splitting, packing and the batch cursor; the conventions are in batches.hpp.
#include <tessera/engine/rng.hpp>
#include <tessera/train/batches.hpp>

#include <cmath>
#include <numeric>
#include <sstream>

namespace tessera {

namespace {

// A uniform draw from [0, n), without modulo bias (rejection of the top partial range).
uint64_t draw_below(Rng& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x = rng.next();
  while (x >= limit) x = rng.next();
  return x % n;
}

// Fisher-Yates with Rng: the same order on every platform and standard library.
template <typename T>
void shuffle_with(std::vector<T>& items, Rng& rng) {
  for (size_t i = items.size(); i > 1; --i) {
    const auto j = static_cast<size_t>(draw_below(rng, i));
    std::swap(items[i - 1], items[j]);
  }
}

PackedPart pack(const TokenizedCorpus& corpus, std::vector<size_t> documents, int32_t seq_len,
                int32_t separator) {
  PackedPart part;
  part.seq_len = seq_len;
  size_t total = 0;
  for (const size_t d : documents) total += corpus.document(d).size() + 1;
  part.stream.reserve(total);
  for (const size_t d : documents) {
    const std::span<const int32_t> ids = corpus.document(d);
    part.stream.insert(part.stream.end(), ids.begin(), ids.end());
    part.stream.push_back(separator);
    part.text_tokens += ids.size();
  }
  part.documents = std::move(documents);
  return part;
}

std::string documents_text(size_t n) {
  return std::to_string(n) + (n == 1 ? " document" : " documents");
}

}  // namespace

TokenDataset::TokenDataset(const TokenizedCorpus& corpus, const PackingOptions& options,
                           int32_t max_seq_len, int32_t vocab_size) {
  const int32_t L = options.seq_len;
  if (L < 1 || L > max_seq_len) {
    throw CorpusError("seq_len " + std::to_string(L) + " is " +
                      (L < 1 ? "below 1" : "above the model's max_seq_len") +
                      "; expected a sequence length in [1, " + std::to_string(max_seq_len) + "]");
  }
  if (options.separator < 0 || options.separator >= vocab_size) {
    throw CorpusError("the document separator token " + std::to_string(options.separator) +
                      " is not in the vocabulary [0, " + std::to_string(vocab_size) + ")");
  }
  const size_t n = corpus.documents();
  if (n == 0) throw CorpusError("the corpus has no documents");
  const double fraction = options.held_out_fraction;
  const int64_t count = options.held_out_documents;
  if (!(fraction >= 0.0 && fraction < 1.0)) {
    throw CorpusError("held_out_fraction " + std::to_string(fraction) +
                      " is outside [0, 1); expected the share of the corpus' tokens to hold out");
  }
  if (count < 0) {
    throw CorpusError("held_out_documents " + std::to_string(count) + " is negative");
  }
  if (fraction > 0.0 && count > 0) {
    throw CorpusError("give held_out_fraction or held_out_documents, not both");
  }

  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  Rng rng(options.split_seed);
  shuffle_with(order, rng);

  size_t held = 0;
  if (count > 0) {
    if (static_cast<uint64_t>(count) >= n) {
      throw CorpusError("held_out_documents = " + std::to_string(count) +
                        " takes every one of the " + documents_text(n) +
                        " of the corpus; at least one must remain for training");
    }
    held = static_cast<size_t>(count);
  } else if (fraction > 0.0) {
    const double target = fraction * static_cast<double>(corpus.tokens.size());
    double taken = 0.0;
    while (held < n && (held == 0 || taken < target)) {
      taken += static_cast<double>(corpus.document(order[held]).size());
      ++held;
    }
    if (held == n) {
      throw CorpusError("held_out_fraction = " + std::to_string(fraction) +
                        " takes every one of the " + documents_text(n) +
                        " of the corpus (documents are held out whole); lower it or add "
                        "documents");
    }
  }
  held_out_ =
      pack(corpus, std::vector<size_t>(order.begin(), order.begin() + held), L, options.separator);
  train_ =
      pack(corpus, std::vector<size_t>(order.begin() + held, order.end()), L, options.separator);

  const std::string one_sequence =
      "one sequence needs seq_len + 1 = " + std::to_string(L + 1) + " tokens";
  if (train_.sequences() == 0) {
    throw CorpusError("the corpus is shorter than one sequence: its train part (" +
                      documents_text(train_.documents.size()) + ") packs to " +
                      std::to_string(train_.stream.size()) + " tokens with separators, and " +
                      one_sequence + "; lower seq_len or add text");
  }
  if (held > 0 && held_out_.sequences() == 0) {
    throw CorpusError("the held-out part would be empty: its " + documents_text(held) +
                      (held == 1 ? " packs to " : " pack to ") +
                      std::to_string(held_out_.stream.size()) + " tokens with separators, and " +
                      one_sequence +
                      "; raise held_out_fraction (or held_out_documents) or lower seq_len");
  }
}

Batch batch_of(const PackedPart& part, int64_t first, int64_t count) {
  if (first < 0 || count < 0 || first + count > part.sequences()) {
    throw CorpusError("sequences [" + std::to_string(first) + ", " + std::to_string(first + count) +
                      ") asked of a part of " + std::to_string(part.sequences()));
  }
  Batch batch;
  batch.seq_len = part.seq_len;
  batch.tokens.reserve(static_cast<size_t>(count) * (part.seq_len + 1));
  for (int64_t i = first; i < first + count; ++i) {
    const std::span<const int32_t> s = part.sequence(i);
    batch.indices.push_back(i);
    batch.tokens.insert(batch.tokens.end(), s.begin(), s.end());
  }
  return batch;
}

std::string CursorState::to_text() const {
  return "epoch=" + std::to_string(epoch) + " position=" + std::to_string(position) +
         " seed=" + std::to_string(seed) + " sequences=" + std::to_string(sequences);
}

CursorState CursorState::from_text(const std::string& text) {
  std::istringstream in(text);
  CursorState s;
  const char* const keys[] = {"epoch=", "position=", "seed=", "sequences="};
  uint64_t* const fields[] = {&s.epoch, &s.position, &s.seed, &s.sequences};
  for (size_t i = 0; i < 4; ++i) {
    std::string word;
    in >> word;
    const std::string key = keys[i];
    const bool digits = word.size() > key.size() &&
                        word.find_first_not_of("0123456789", key.size()) == std::string::npos;
    if (word.compare(0, key.size(), key) != 0 || !digits) {
      throw CorpusError("malformed data cursor \"" + text +
                        "\"; expected \"epoch=E position=P seed=S sequences=N\"");
    }
    try {
      *fields[i] = std::stoull(word.substr(key.size()));
    } catch (const std::exception&) {
      throw CorpusError("malformed data cursor \"" + text + "\": " + word + " is out of range");
    }
  }
  std::string rest;
  if (in >> rest) {
    throw CorpusError("malformed data cursor \"" + text + "\": unexpected \"" + rest + "\"");
  }
  return s;
}

BatchCursor::BatchCursor(const PackedPart& part, uint64_t seed) : part_(&part), seed_(seed) {
  if (part.sequences() == 0) throw CorpusError("a batch cursor over a part with no sequences");
  shuffle();
}

void BatchCursor::shuffle() {
  order_.resize(static_cast<size_t>(part_->sequences()));
  std::iota(order_.begin(), order_.end(), int64_t{0});
  Rng rng(seed_ ^ (0xd1b54a32d192ed03ull * (epoch_ + 1)));
  shuffle_with(order_, rng);
}

Batch BatchCursor::next(int32_t batch_size) {
  if (batch_size < 1) throw CorpusError("batch size " + std::to_string(batch_size) + " is below 1");
  Batch batch;
  batch.seq_len = part_->seq_len;
  batch.tokens.reserve(static_cast<size_t>(batch_size) * (part_->seq_len + 1));
  for (int32_t i = 0; i < batch_size; ++i) {
    if (position_ == order_.size()) {
      ++epoch_;
      position_ = 0;
      shuffle();
    }
    const int64_t index = order_[position_++];
    const std::span<const int32_t> s = part_->sequence(index);
    batch.indices.push_back(index);
    batch.tokens.insert(batch.tokens.end(), s.begin(), s.end());
  }
  return batch;
}

CursorState BatchCursor::state() const {
  return CursorState{epoch_, position_, seed_, static_cast<uint64_t>(part_->sequences())};
}

void BatchCursor::restore(const CursorState& state) {
  const auto sequences = static_cast<uint64_t>(part_->sequences());
  if (state.seed != seed_ || state.sequences != sequences) {
    throw CorpusError("the data cursor was saved for " + std::to_string(state.sequences) +
                      " train sequences with seed " + std::to_string(state.seed) +
                      "; this run has " + std::to_string(sequences) + " with seed " +
                      std::to_string(seed_) +
                      " (the corpus, seq_len, the split or the seed changed since)");
  }
  if (state.position > sequences) {
    throw CorpusError("the data cursor's position " + std::to_string(state.position) +
                      " is past the end of an epoch of " + std::to_string(sequences) +
                      " sequences");
  }
  epoch_ = state.epoch;
  position_ = state.position;
  shuffle();
}

}  // namespace tessera
