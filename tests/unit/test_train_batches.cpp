// From tokens to batches: packing with a separator, the split by document, the epoch-aware
// cursor (deterministic, resumable) and every error.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <string>
#include <tessera/train/batches.hpp>
#include <tessera/train/train_run.hpp>
#include <vector>

#include "hf_fixtures.hpp"

namespace tessera {
namespace {

using test::expect_error_with;

constexpr int32_t kSep = 999;
constexpr int32_t kVocab = 1000;

// Documents of the given lengths; document d's tokens are d * 100 + 0, 1, 2, ...
TokenizedCorpus corpus_of(const std::vector<size_t>& lengths) {
  TokenizedCorpus c;
  c.offsets.push_back(0);
  for (size_t d = 0; d < lengths.size(); ++d) {
    c.names.push_back("doc" + std::to_string(d));
    for (size_t i = 0; i < lengths[d]; ++i) c.tokens.push_back(static_cast<int32_t>(d * 100 + i));
    c.offsets.push_back(c.tokens.size());
  }
  return c;
}

PackingOptions packing(int32_t seq_len, double fraction = 0.0, int64_t documents = 0) {
  PackingOptions o;
  o.seq_len = seq_len;
  o.separator = kSep;
  o.held_out_fraction = fraction;
  o.held_out_documents = documents;
  return o;
}

TEST(TrainBatches, PacksDocumentsWithASeparatorIntoOverlappingWindows) {
  const TokenizedCorpus c = corpus_of({3, 2, 4});
  const TokenDataset data(c, packing(4), 64, kVocab);
  const PackedPart& train = data.train();
  ASSERT_EQ(train.documents.size(), 3U);
  // Every document followed by the separator, in the split's order.
  std::vector<int32_t> expected;
  for (const size_t d : train.documents) {
    const auto ids = c.document(d);
    expected.insert(expected.end(), ids.begin(), ids.end());
    expected.push_back(kSep);
  }
  EXPECT_EQ(train.stream, expected);
  EXPECT_EQ(train.stream.size(), 12U);
  EXPECT_EQ(train.text_tokens, 9U);
  // 12 tokens give (12 - 1) / 4 = 2 windows of 5, overlapping by one token.
  ASSERT_EQ(train.sequences(), 2);
  EXPECT_EQ(train.target_tokens(), 8);
  EXPECT_EQ(std::vector<int32_t>(train.sequence(0).begin(), train.sequence(0).end()),
            std::vector<int32_t>(expected.begin(), expected.begin() + 5));
  EXPECT_EQ(std::vector<int32_t>(train.sequence(1).begin(), train.sequence(1).end()),
            std::vector<int32_t>(expected.begin() + 4, expected.begin() + 9));
  EXPECT_EQ(data.held_out().sequences(), 0);
  EXPECT_TRUE(data.held_out().documents.empty());

  const Batch b = batch_of(train, 0, 2);
  ASSERT_EQ(b.size(), 2);
  EXPECT_EQ(b.inputs(1).size(), 4U);
  EXPECT_EQ(b.targets(1).size(), 4U);
  EXPECT_EQ(b.inputs(1)[0], expected[4]);
  EXPECT_EQ(b.targets(1)[0], expected[5]);  // each input predicts the next token
  EXPECT_EQ(b.targets(1)[3], expected[8]);
}

TEST(TrainBatches, HeldOutIsWholeDocumentsNeverTrainedOn) {
  std::vector<size_t> lengths;
  for (size_t d = 0; d < 40; ++d) lengths.push_back(10 + d % 7);
  const TokenizedCorpus c = corpus_of(lengths);
  const TokenDataset data(c, packing(8, 0.0, 5), 64, kVocab);
  ASSERT_EQ(data.held_out().documents.size(), 5U);
  ASSERT_EQ(data.train().documents.size(), 35U);
  std::set<size_t> all(data.train().documents.begin(), data.train().documents.end());
  for (const size_t d : data.held_out().documents) EXPECT_TRUE(all.insert(d).second) << d;
  EXPECT_EQ(all.size(), 40U);
  // No held-out token appears in the train stream (tokens identify their document here).
  std::set<int32_t> held_tokens;
  for (const size_t d : data.held_out().documents)
    for (const int32_t t : c.document(d)) held_tokens.insert(t);
  for (const int32_t t : data.train().stream) {
    if (t != kSep) {
      EXPECT_EQ(held_tokens.count(t), 0U) << t;
    }
  }

  // The split depends on split_seed alone: the same seed, the same split.
  const TokenDataset again(c, packing(8, 0.0, 5), 64, kVocab);
  EXPECT_EQ(again.held_out().documents, data.held_out().documents);
  EXPECT_EQ(again.train().stream, data.train().stream);
  PackingOptions other = packing(8, 0.0, 5);
  other.split_seed = 1;
  EXPECT_NE(TokenDataset(c, other, 64, kVocab).held_out().documents, data.held_out().documents);
}

TEST(TrainBatches, HeldOutFractionTakesDocumentsUntilItIsReached) {
  const TokenizedCorpus c = corpus_of(std::vector<size_t>(20, 50));  // 1000 tokens
  const TokenDataset data(c, packing(16, 0.12), 64, kVocab);
  // 0.12 * 1000 = 120 tokens: three documents of 50.
  EXPECT_EQ(data.held_out().documents.size(), 3U);
  EXPECT_EQ(data.held_out().text_tokens, 150U);
  EXPECT_EQ(data.train().text_tokens, 850U);
  // A tiny fraction still holds out one whole document.
  EXPECT_EQ(TokenDataset(c, packing(16, 0.0001), 64, kVocab).held_out().documents.size(), 1U);
}

TEST(TrainBatches, ErrorsNameWhatAndWhatWasExpected) {
  const TokenizedCorpus c = corpus_of({30, 30, 30, 3});
  expect_error_with([&] { TokenDataset(c, packing(65), 64, kVocab); },
                    {"seq_len 65 is above the model's max_seq_len", "[1, 64]"});
  expect_error_with([&] { TokenDataset(c, packing(0), 64, kVocab); },
                    {"seq_len 0 is below 1", "[1, 64]"});
  PackingOptions bad_separator = packing(8);
  bad_separator.separator = kVocab;
  expect_error_with([&] { TokenDataset(c, bad_separator, 64, kVocab); },
                    {"separator token 1000 is not in the vocabulary [0, 1000)"});
  expect_error_with(
      [&] { TokenDataset(c, packing(8, 0.0, 4), 64, kVocab); },
      {"held_out_documents = 4 takes every one of the 4 documents", "at least one must remain"});
  expect_error_with([&] { TokenDataset(c, packing(8, 0.99), 64, kVocab); },
                    {"held_out_fraction = 0.99", "takes every one of the 4 documents"});
  expect_error_with([&] { TokenDataset(c, packing(8, 0.1, 1), 64, kVocab); }, {"not both"});
  expect_error_with([&] { TokenDataset(c, packing(8, 1.0), 64, kVocab); },
                    {"held_out_fraction 1", "outside [0, 1)"});
  expect_error_with([&] { TokenDataset(c, packing(8, 0.0, -1), 64, kVocab); },
                    {"held_out_documents -1 is negative"});
  // The corpus is shorter than one sequence.
  expect_error_with(
      [&] {
        TokenDataset(corpus_of({5, 3}), packing(10), 64, kVocab);
      },
      {"the corpus is shorter than one sequence", "2 documents", "10 tokens", "seq_len + 1 = 11",
       "lower seq_len"});
  // The held-out document (3 tokens + separator) holds no sequence of 9.
  PackingOptions small_held_out = packing(8, 0.0, 1);
  for (uint64_t seed = 0; seed < 64; ++seed) {
    small_held_out.split_seed = seed;
    const TokenizedCorpus uneven = corpus_of({40, 40, 3});
    bool short_one = false;
    try {
      const TokenDataset d(uneven, small_held_out, 64, kVocab);
    } catch (const CorpusError& e) {
      short_one = true;
      EXPECT_NE(std::string(e.what()).find("the held-out part would be empty: its 1 document "
                                           "packs to 4 tokens"),
                std::string::npos)
          << e.what();
    }
    if (short_one) break;
    ASSERT_LT(seed, 63U) << "no seed held out the short document";
  }
}

TEST(TrainBatches, CursorVisitsEverySequenceOncePerEpochInAFreshOrder) {
  const TokenizedCorpus c = corpus_of(std::vector<size_t>(10, 30));
  const TokenDataset data(c, packing(4), 64, kVocab);
  const int64_t n = data.train().sequences();
  ASSERT_EQ(n, (10 * 31 - 1) / 4);
  BatchCursor cursor(data.train(), 42);
  std::vector<int64_t> first;
  std::vector<int64_t> second;
  while (static_cast<int64_t>(first.size()) < n) {
    const Batch b = cursor.next(1);
    first.push_back(b.indices[0]);
  }
  EXPECT_EQ(cursor.epoch(), 0U);
  while (static_cast<int64_t>(second.size()) < n) second.push_back(cursor.next(1).indices[0]);
  EXPECT_EQ(cursor.epoch(), 1U);
  std::vector<int64_t> sorted = first;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), int64_t{0});
  EXPECT_EQ(sorted, all);
  std::sort(second.begin(), second.end());
  EXPECT_EQ(second, all);
  EXPECT_NE(first, all);  // shuffled

  // A batch that crosses an epoch's end continues into the next epoch.
  BatchCursor crossing(data.train(), 42);
  crossing.next(static_cast<int32_t>(n - 2));
  const Batch b = crossing.next(5);
  EXPECT_EQ(b.size(), 5);
  EXPECT_EQ(crossing.epoch(), 1U);
  EXPECT_EQ(crossing.state().position, 3U);
  // The rows are the sequences the indices name.
  for (int32_t i = 0; i < b.size(); ++i) {
    const auto s = data.train().sequence(b.indices[static_cast<size_t>(i)]);
    EXPECT_TRUE(std::equal(s.begin(), s.end(), b.row(i).begin()));
  }
}

TEST(TrainBatches, CursorIsDeterministicAndPinned) {
  const TokenizedCorpus c = corpus_of(std::vector<size_t>(8, 21));
  const TokenDataset data(c, packing(8), 64, kVocab);
  BatchCursor a(data.train(), 7);
  BatchCursor b(data.train(), 7);
  BatchCursor other(data.train(), 8);
  bool differs = false;
  for (int i = 0; i < 10; ++i) {
    const Batch x = a.next(3);
    const Batch y = b.next(3);
    EXPECT_EQ(x.indices, y.indices);
    EXPECT_EQ(x.tokens, y.tokens);
    differs = differs || other.next(3).indices != x.indices;
  }
  EXPECT_TRUE(differs);
  // The order is Rng's (splitmix64) Fisher-Yates: the same on every platform. Pinned so a
  // change of the algorithm is seen (it would change every run's batches).
  BatchCursor pinned(data.train(), 1234);
  EXPECT_EQ(pinned.next(8).indices, (std::vector<int64_t>{1, 5, 17, 0, 6, 4, 18, 13}));
}

TEST(TrainBatches, CursorStateRestoresTheSameBatches) {
  const TokenizedCorpus c = corpus_of(std::vector<size_t>(6, 25));
  const TokenDataset data(c, packing(6), 64, kVocab);
  BatchCursor cursor(data.train(), 3);
  for (int i = 0; i < 9; ++i) cursor.next(4);  // into the second epoch
  const CursorState saved = cursor.state();
  EXPECT_GE(saved.epoch, 1U);
  std::vector<std::vector<int64_t>> expected;
  for (int i = 0; i < 6; ++i) expected.push_back(cursor.next(4).indices);

  const CursorState parsed = CursorState::from_text(saved.to_text());
  EXPECT_EQ(parsed, saved);
  BatchCursor resumed(data.train(), 3);
  resumed.restore(parsed);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(resumed.next(4).indices, expected[static_cast<size_t>(i)]);

  BatchCursor wrong_seed(data.train(), 4);
  expect_error_with(
      [&] { wrong_seed.restore(saved); },
      {"saved for " + std::to_string(saved.sequences) + " train sequences with seed 3", "seed 4",
       "changed since"});
  const TokenDataset longer(c, packing(5), 64, kVocab);
  BatchCursor other_data(longer.train(), 3);
  expect_error_with([&] { other_data.restore(saved); }, {"train sequences with seed 3"});
  CursorState past = saved;
  past.position = saved.sequences + 1;
  expect_error_with([&] { resumed.restore(past); }, {"past the end of an epoch"});
  expect_error_with([&] { cursor.next(0); }, {"batch size 0 is below 1"});
}

TEST(TrainBatches, CursorStateTextErrors) {
  EXPECT_EQ(CursorState::from_text("epoch=1 position=2 seed=3 sequences=4"),
            (CursorState{1, 2, 3, 4}));
  for (const char* bad :
       {"", "epoch=1", "epoch=1 position=2 seed=3", "epoch=x position=2 seed=3 sequences=4",
        "position=2 epoch=1 seed=3 sequences=4", "epoch=1 position=2 seed=3 sequences=4 more",
        "epoch=99999999999999999999999 position=2 seed=3 sequences=4"}) {
    expect_error_with([&] { CursorState::from_text(bad); }, {"malformed data cursor"});
  }
}

TEST(TrainBatches, HeldOutBatchesAreTheFirstSequencesInOrder) {
  const TokenizedCorpus c = corpus_of(std::vector<size_t>(10, 40));
  const TokenDataset data(c, packing(8, 0.0, 3), 64, kVocab);
  const int64_t n = data.held_out().sequences();
  ASSERT_EQ(n, (3 * 41 - 1) / 8);
  const std::vector<Batch> two = held_out_batches(data.held_out(), 4, 2);
  ASSERT_EQ(two.size(), 2U);
  EXPECT_EQ(two[0].indices, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(two[1].indices, (std::vector<int64_t>{4, 5, 6, 7}));
  // Asking for more than there is gives what there is, the last batch short.
  const std::vector<Batch> all = held_out_batches(data.held_out(), 4, 100);
  int64_t total = 0;
  for (const Batch& b : all) total += b.size();
  EXPECT_EQ(total, n);
  EXPECT_EQ(all.back().size(), n % 4 == 0 ? 4 : n % 4);
  expect_error_with([&] { batch_of(data.held_out(), n - 1, 2); },
                    {"asked of a part of " + std::to_string(n)});
}

}  // namespace
}  // namespace tessera
