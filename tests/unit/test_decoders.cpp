// The greedy and sampling decoders of the decoding-basic plugin, driven through the C ABI
// with a fake decode host.
#include <gtest/gtest.h>
#include <tessera/abi.h>

#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS
#endif
#include <algorithm>
#include <boost/dll/import.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <list>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fake_decode_host.hpp"

namespace {

using tessera::testing::FakeDecodeHost;

const ts_plugin_descriptor* decoding_plugin() {
  static auto entry = boost::dll::import <const ts_plugin_descriptor*()>(
      std::filesystem::path(TESSERA_PLUGIN_DIR "/libtessera-decoding-basic.so"), "tessera_plugin");
  return entry();
}

const ts_decoder_vtable& decoder_vtable(std::string_view kind) {
  const ts_plugin_descriptor* plugin = decoding_plugin();
  for (int32_t i = 0; i < plugin->n_providers; ++i) {
    const ts_provider& p = plugin->providers[i];
    if (p.kind == TS_KIND_DECODER && kind == p.name)
      return *static_cast<const ts_decoder_vtable*>(p.vtable);
  }
  throw std::runtime_error("decoding-basic has no decoder named " + std::string(kind));
}

// Owns ts_param entries and the lists they point to.
class ParamSet {
 public:
  ParamSet& set_int(const char* key, int64_t value) {
    ts_param p{};
    p.key = key;
    p.type = TS_PARAM_INT;
    p.i = value;
    items_.push_back(p);
    return *this;
  }
  ParamSet& set_float(const char* key, double value) {
    ts_param p{};
    p.key = key;
    p.type = TS_PARAM_FLOAT;
    p.f = value;
    items_.push_back(p);
    return *this;
  }
  ParamSet& set_ints(const char* key, std::vector<int64_t> values) {
    const std::vector<int64_t>& stored = lists_.emplace_back(std::move(values));
    ts_param p{};
    p.key = key;
    p.type = TS_PARAM_INT_LIST;
    p.count = static_cast<int32_t>(stored.size());
    p.ints = stored.data();
    items_.push_back(p);
    return *this;
  }
  ts_params view() const { return {items_.data(), static_cast<int32_t>(items_.size())}; }

 private:
  std::vector<ts_param> items_;
  std::list<std::vector<int64_t>> lists_;
};

struct StepResult {
  int status = TS_OK;
  std::string error;
  std::vector<int32_t> tokens;  // [n_seqs * capacity]
  std::vector<int32_t> counts;
  std::vector<uint8_t> finished;
};

class Decoder {
 public:
  Decoder(std::string_view kind, const ParamSet& params, int32_t vocab)
      : vtable_(decoder_vtable(kind)) {
    ts_decoder_config config{};
    config.struct_size = sizeof(config);
    config.vocab = vocab;
    config.hidden = 4;
    config.params = params.view();
    ts_error err{};
    if (vtable_.create(&config, &self_, &err) != TS_OK)
      throw std::runtime_error(std::string("create failed: ") + err.message);
  }
  ~Decoder() { vtable_.destroy(self_); }
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  StepResult step(const FakeDecodeHost& host, const std::vector<int32_t>& slots,
                  const std::vector<int32_t>& budget, int32_t capacity = 1) {
    StepResult r;
    r.tokens.assign(slots.size() * static_cast<size_t>(capacity), -1);
    r.counts.assign(slots.size(), -1);
    r.finished.assign(slots.size(), 7);
    ts_decode_step step{};
    step.struct_size = sizeof(step);
    step.n_seqs = static_cast<int32_t>(slots.size());
    step.slots = slots.data();
    step.budget = budget.data();
    step.capacity = capacity;
    step.tokens = r.tokens.data();
    step.counts = r.counts.data();
    step.finished = r.finished.data();
    ts_error err{};
    r.status = vtable_.step(self_, host.host(), &step, &err);
    if (r.status != TS_OK) r.error = err.message;
    return r;
  }

  // One sequence (id 0) with a large budget: the token chosen from `logits`.
  int32_t choose(FakeDecodeHost& host, const std::vector<float>& logits) {
    host.set_logits(0, logits);
    const StepResult r = step(host, {0}, {1 << 30});
    if (r.status != TS_OK) throw std::runtime_error(r.error);
    return r.tokens[0];
  }

 private:
  const ts_decoder_vtable& vtable_;
  void* self_ = nullptr;
};

// The create error of a decoder, or "" when it was created.
std::string create_error(std::string_view kind, const ParamSet& params, int32_t vocab = 16) {
  ts_decoder_config config{};
  config.struct_size = sizeof(config);
  config.vocab = vocab;
  config.params = params.view();
  ts_error err{};
  void* self = nullptr;
  const int status = decoder_vtable(kind).create(&config, &self, &err);
  if (status == TS_OK) {
    decoder_vtable(kind).destroy(self);
    return "";
  }
  return err.message;
}

// Logits that make token `next` the clear favourite.
std::vector<float> peaked(int32_t vocab, int32_t next) {
  std::vector<float> logits(static_cast<size_t>(vocab), 0.0f);
  logits[next] = 5.0f;
  return logits;
}

FakeDecodeHost chain_host(int32_t vocab) {
  // After token t the favourite is (3t + 1) mod vocab.
  return FakeDecodeHost(
      vocab, [vocab](int32_t, int32_t token) { return peaked(vocab, (3 * token + 1) % vocab); });
}

std::vector<float> random_logits(std::mt19937& rng, int32_t vocab, float scale = 3.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (float& x : logits) x = normal(rng);
  return logits;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  const double max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i)
    total += p[i] = std::exp((logits[i] - max) / temperature);
  for (double& x : p) x /= total;
  return p;
}

// Naive nucleus: tokens by probability (lower index first on ties), the shortest prefix
// reaching top_p.
std::set<int32_t> nucleus(const std::vector<float>& logits, double top_p) {
  const std::vector<double> p = softmax(logits, 1.0);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  std::set<int32_t> kept;
  double cumulative = 0;
  for (int32_t token : order) {
    kept.insert(token);
    cumulative += p[token];
    if (cumulative >= top_p) break;
  }
  return kept;
}

// Pearson's statistic of observed counts against expected probabilities (those > 0).
double chi_square(const std::vector<int>& counts, const std::vector<double>& p, int draws) {
  double stat = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    const double expected = p[i] * draws;
    stat += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return stat;
}

std::vector<int> draw_counts(Decoder& decoder, FakeDecodeHost& host,
                             const std::vector<float>& logits, int draws) {
  std::vector<int> counts(logits.size(), 0);
  host.set_logits(0, logits);
  for (int i = 0; i < draws; ++i) {
    // Budget 1: the sequence finishes at once, so the host's logits stay as set.
    const StepResult r = decoder.step(host, {0}, {1});
    if (r.status != TS_OK) throw std::runtime_error(r.error);
    ++counts.at(static_cast<size_t>(r.tokens[0]));
  }
  return counts;
}

// ------------------------------------------------------------------ plugin

TEST(DecoderPlugin, DescribesGreedyAndSamplingOnCpu) {
  const ts_plugin_descriptor* plugin = decoding_plugin();
  ASSERT_NE(plugin, nullptr);
  EXPECT_EQ(plugin->abi_major, TS_ABI_MAJOR);
  EXPECT_STREQ(plugin->name, "tessera-decoding-basic");
  ASSERT_EQ(plugin->n_providers, 2);
  std::set<std::string> names;
  for (int32_t i = 0; i < plugin->n_providers; ++i) {
    EXPECT_EQ(plugin->providers[i].kind, TS_KIND_DECODER);
    EXPECT_EQ(plugin->providers[i].device, TS_DEVICE_CPU);
    names.insert(plugin->providers[i].name);
  }
  EXPECT_EQ(names, (std::set<std::string>{"greedy", "sampling"}));
}

// ------------------------------------------------------------------ greedy

TEST(DecoderGreedy, PicksArgmaxAndFeedsIt) {
  FakeDecodeHost host = chain_host(10);
  host.set_logits(4, {0.1f, -2.0f, 0.3f, 7.5f, 7.25f, 0.0f, -1.0f, 2.0f, 3.0f, 1.0f});
  Decoder greedy("greedy", ParamSet(), 10);
  const StepResult r = greedy.step(host, {4}, {5});
  ASSERT_EQ(r.status, TS_OK) << r.error;
  EXPECT_EQ(r.tokens[0], 3);
  EXPECT_EQ(r.counts[0], 1);
  EXPECT_EQ(r.finished[0], 0);
  ASSERT_EQ(host.calls().size(), 1u);
  EXPECT_EQ(host.calls()[0].slots, std::vector<int32_t>{4});
  EXPECT_EQ(host.calls()[0].offsets, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(host.calls()[0].tokens, std::vector<int32_t>{3});
}

TEST(DecoderGreedy, MatchesNaiveArgmaxOnRandomRows) {
  std::mt19937 rng(7);
  FakeDecodeHost host = chain_host(1000);
  Decoder greedy("greedy", ParamSet(), 1000);
  for (int row = 0; row < 50; ++row) {
    const std::vector<float> logits = random_logits(rng, 1000);
    const auto expected = std::max_element(logits.begin(), logits.end()) - logits.begin();
    EXPECT_EQ(greedy.choose(host, logits), expected);
  }
}

TEST(DecoderGreedy, TiesPickTheLowestIndex) {
  FakeDecodeHost host = chain_host(6);
  Decoder greedy("greedy", ParamSet(), 6);
  EXPECT_EQ(greedy.choose(host, {1.0f, 4.0f, 2.0f, 4.0f, 4.0f, 0.0f}), 1);
  EXPECT_EQ(greedy.choose(host, {3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f}), 0);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(greedy.choose(host, {-inf, -inf, -0.0f, 0.0f, -inf, -1.0f}), 2);
}

TEST(DecoderGreedy, GeneratesTheChainOfArgmaxTokens) {
  const int32_t vocab = 17;
  FakeDecodeHost host = chain_host(vocab);
  host.set_logits(0, peaked(vocab, 2));
  Decoder greedy("greedy", ParamSet(), vocab);
  std::vector<int32_t> generated;
  for (int i = 0; i < 6; ++i) {
    const StepResult r = greedy.step(host, {0}, {100});
    ASSERT_EQ(r.status, TS_OK) << r.error;
    generated.push_back(r.tokens[0]);
  }
  std::vector<int32_t> expected{2};
  while (expected.size() < 6) expected.push_back((3 * expected.back() + 1) % vocab);
  EXPECT_EQ(generated, expected);
  EXPECT_EQ(host.calls().size(), 6u);
}

TEST(DecoderGreedy, StopsOnEosWithoutFeeding) {
  FakeDecodeHost host = chain_host(8);
  host.set_logits(0, peaked(8, 5));
  Decoder greedy("greedy", ParamSet().set_ints("eos_token_ids", {2, 5}), 8);
  const StepResult r = greedy.step(host, {0}, {10});
  ASSERT_EQ(r.status, TS_OK) << r.error;
  EXPECT_EQ(r.tokens[0], 5);
  EXPECT_EQ(r.counts[0], 1);
  EXPECT_EQ(r.finished[0], 1);
  EXPECT_TRUE(host.calls().empty());
}

TEST(DecoderGreedy, SingleIntegerEosIsAccepted) {
  FakeDecodeHost host = chain_host(8);
  host.set_logits(0, peaked(8, 6));
  Decoder greedy("greedy", ParamSet().set_int("eos_token_ids", 6), 8);
  const StepResult r = greedy.step(host, {0}, {10});
  ASSERT_EQ(r.status, TS_OK) << r.error;
  EXPECT_EQ(r.finished[0], 1);
  EXPECT_TRUE(host.calls().empty());
}

TEST(DecoderGreedy, StopsAtBudgetWithoutFeeding) {
  FakeDecodeHost host = chain_host(8);
  host.set_logits(0, peaked(8, 3));
  Decoder greedy("greedy", ParamSet().set_ints("eos_token_ids", {7}), 8);
  const StepResult r = greedy.step(host, {0}, {1});
  ASSERT_EQ(r.status, TS_OK) << r.error;
  EXPECT_EQ(r.tokens[0], 3);
  EXPECT_EQ(r.finished[0], 1);
  EXPECT_TRUE(host.calls().empty());
}

TEST(DecoderGreedy, FeedsEveryUnfinishedSequenceInOneCall) {
  const int32_t vocab = 12;
  FakeDecodeHost host = chain_host(vocab);
  const std::vector<int32_t> slots{10, 11, 12, 13};
  host.set_logits(10, peaked(vocab, 4));
  host.set_logits(11, peaked(vocab, 9));  // EOS
  host.set_logits(12, peaked(vocab, 1));
  host.set_logits(13, peaked(vocab, 6));  // last of its budget
  Decoder greedy("greedy", ParamSet().set_ints("eos_token_ids", {9}), vocab);
  const int32_t capacity = 3;
  const StepResult r = greedy.step(host, slots, {5, 5, 2, 1}, capacity);
  ASSERT_EQ(r.status, TS_OK) << r.error;
  EXPECT_EQ(r.tokens[0 * capacity], 4);
  EXPECT_EQ(r.tokens[1 * capacity], 9);
  EXPECT_EQ(r.tokens[2 * capacity], 1);
  EXPECT_EQ(r.tokens[3 * capacity], 6);
  EXPECT_EQ(r.counts, (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(r.finished, (std::vector<uint8_t>{0, 1, 0, 1}));
  ASSERT_EQ(host.calls().size(), 1u);
  EXPECT_EQ(host.calls()[0].slots, (std::vector<int32_t>{10, 12}));
  EXPECT_EQ(host.calls()[0].offsets, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(host.calls()[0].tokens, (std::vector<int32_t>{4, 1}));
}

TEST(DecoderGreedy, RejectsNanLogitsNamingTheToken) {
  FakeDecodeHost host = chain_host(5);
  host.set_logits(3, {0.0f, 1.0f, std::nanf(""), 2.0f, 0.0f});
  Decoder greedy("greedy", ParamSet(), 5);
  const StepResult r = greedy.step(host, {3}, {4});
  EXPECT_EQ(r.status, TS_ERROR);
  EXPECT_NE(r.error.find("slot 3"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("token 2"), std::string::npos) << r.error;
  EXPECT_TRUE(host.calls().empty());
}

TEST(DecoderGreedy, RejectsRowsWhereEveryLogitIsMinusInfinity) {
  FakeDecodeHost host = chain_host(3);
  const float inf = std::numeric_limits<float>::infinity();
  host.set_logits(0, {-inf, -inf, -inf});
  Decoder greedy("greedy", ParamSet(), 3);
  const StepResult r = greedy.step(host, {0}, {4});
  EXPECT_EQ(r.status, TS_ERROR);
  EXPECT_NE(r.error.find("-inf"), std::string::npos) << r.error;
}

TEST(DecoderGreedy, ReportsTheHostsForwardFailure) {
  FakeDecodeHost host = chain_host(5);
  host.set_logits(0, peaked(5, 1));
  host.fail_next_forward("cache slot 0 is full");
  Decoder greedy("greedy", ParamSet(), 5);
  const StepResult r = greedy.step(host, {0}, {4});
  EXPECT_EQ(r.status, TS_ERROR);
  EXPECT_NE(r.error.find("cache slot 0 is full"), std::string::npos) << r.error;
}

TEST(DecoderGreedy, RejectsBadStepArguments) {
  FakeDecodeHost host = chain_host(5);
  host.set_logits(0, peaked(5, 1));
  Decoder greedy("greedy", ParamSet(), 5);
  StepResult r = greedy.step(host, {0}, {0});
  EXPECT_EQ(r.status, TS_ERROR);
  EXPECT_NE(r.error.find("budget[0] is 0"), std::string::npos) << r.error;
  r = greedy.step(host, {0}, {3}, 0);
  EXPECT_EQ(r.status, TS_ERROR);
  EXPECT_NE(r.error.find("capacity is 0"), std::string::npos) << r.error;
  r = greedy.step(host, {9}, {3});  // never prefilled
  EXPECT_EQ(r.status, TS_ERROR);
  EXPECT_NE(r.error.find("slot 9"), std::string::npos) << r.error;
  FakeDecodeHost other_vocab = chain_host(6);
  other_vocab.set_logits(0, peaked(6, 1));
  r = greedy.step(other_vocab, {0}, {3});
  EXPECT_EQ(r.status, TS_ERROR);
  EXPECT_NE(r.error.find("vocab 5"), std::string::npos) << r.error;
  EXPECT_TRUE(host.calls().empty());
}

// ---------------------------------------------------------------- sampling

TEST(DecoderSampling, SameSeedSameTokensOtherSeedOthers) {
  const int32_t vocab = 500;
  std::mt19937 rng(3);
  std::vector<std::vector<float>> table;
  for (int32_t t = 0; t < vocab; ++t) table.push_back(random_logits(rng, vocab, 1.0f));
  const auto run = [&](int64_t seed) {
    FakeDecodeHost host(vocab, [&](int32_t, int32_t token) { return table[token]; });
    host.set_logits(0, table[0]);
    host.set_logits(1, table[1]);
    Decoder sampler("sampling", ParamSet().set_int("seed", seed).set_float("temperature", 1.0),
                    vocab);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 40; ++i) {
      const StepResult r = sampler.step(host, {0, 1}, {100, 100});
      if (r.status != TS_OK) throw std::runtime_error(r.error);
      tokens.push_back(r.tokens[0]);
      tokens.push_back(r.tokens[1]);
    }
    return tokens;
  };
  const std::vector<int32_t> a = run(42);
  EXPECT_EQ(a, run(42));
  EXPECT_NE(a, run(43));
  EXPECT_NE(a, run(-1));  // the bit pattern 2^64-1 is a valid seed
}

TEST(DecoderSampling, TopKOfOneEqualsGreedy) {
  const int32_t vocab = 2000;
  std::mt19937 rng(11);
  FakeDecodeHost host = chain_host(vocab);
  Decoder greedy("greedy", ParamSet(), vocab);
  Decoder top1("sampling", ParamSet().set_int("top_k", 1).set_int("seed", 5), vocab);
  Decoder top1_hot(
      "sampling",
      ParamSet().set_int("top_k", 1).set_float("temperature", 50.0).set_float("top_p", 0.5), vocab);
  for (int row = 0; row < 60; ++row) {
    std::vector<float> logits = random_logits(rng, vocab);
    // Quantised rows have many ties, including at the maximum.
    if (row % 2)
      for (float& x : logits) x = std::round(x);
    const int32_t expected = greedy.choose(host, logits);
    EXPECT_EQ(top1.choose(host, logits), expected) << "row " << row;
    EXPECT_EQ(top1_hot.choose(host, logits), expected) << "row " << row;
  }
}

TEST(DecoderSampling, FrequenciesMatchSoftmax) {
  const std::vector<float> logits{0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f};
  const int draws = 20000;
  // 5 degrees of freedom: P(chi2 > 25) < 2e-4 for a correct sampler; the seed is fixed.
  for (double temperature : {1.0, 0.5, 2.0}) {
    FakeDecodeHost host = chain_host(6);
    Decoder sampler("sampling",
                    ParamSet().set_float("temperature", temperature).set_int("seed", 1234), 6);
    const std::vector<int> counts = draw_counts(sampler, host, logits, draws);
    const double stat = chi_square(counts, softmax(logits, temperature), draws);
    EXPECT_LT(stat, 25.0) << "temperature " << temperature;
  }
  // A wrong distribution fails the same bound: the test can fail.
  FakeDecodeHost host = chain_host(6);
  Decoder sampler("sampling", ParamSet().set_int("seed", 1234), 6);
  const std::vector<int> counts = draw_counts(sampler, host, logits, draws);
  EXPECT_GT(chi_square(counts, softmax(logits, 1.3), draws), 25.0);
}

TEST(DecoderSampling, TopKRenormalisesOverTheKBest) {
  const std::vector<float> logits{0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f};
  FakeDecodeHost host = chain_host(6);
  Decoder sampler("sampling", ParamSet().set_int("top_k", 3).set_int("seed", 99), 6);
  const int draws = 20000;
  const std::vector<int> counts = draw_counts(sampler, host, logits, draws);
  std::vector<double> p = softmax(logits, 1.0);
  const double kept = p[2] + p[4] + p[0];
  for (size_t i = 0; i < p.size(); ++i) p[i] = (i == 2 || i == 4 || i == 0) ? p[i] / kept : 0;
  EXPECT_EQ(counts[1] + counts[3] + counts[5], 0);
  EXPECT_LT(chi_square(counts, p, draws), 20.0);  // 2 degrees of freedom
}

TEST(DecoderSampling, TopPRestrictsToTheNucleus) {
  // Probabilities 0.5, 0.3, 0.1, 0.05, 0.05: top_p 0.75 keeps tokens 0 and 1 (0.5 < 0.75 <= 0.8).
  const std::vector<float> logits{std::log(0.5f), std::log(0.3f), std::log(0.1f), std::log(0.05f),
                                  std::log(0.05f)};
  FakeDecodeHost host = chain_host(5);
  Decoder sampler("sampling", ParamSet().set_float("top_p", 0.75).set_int("seed", 8), 5);
  const int draws = 10000;
  const std::vector<int> counts = draw_counts(sampler, host, logits, draws);
  EXPECT_EQ(counts[2] + counts[3] + counts[4], 0);
  EXPECT_LT(chi_square(counts, {0.625, 0.375, 0, 0, 0}, draws), 15.0);
}

TEST(DecoderSampling, TopPOverALargeVocabularyMatchesANaiveNucleus) {
  // A nucleus of a few hundred tokens out of 50000, with ties: the sampler must grow its
  // sorted prefix past the first round and break ties by index.
  const int32_t vocab = 50000;
  std::mt19937 rng(21);
  std::vector<float> logits = random_logits(rng, vocab, 1.0f);
  for (int32_t i = 0; i < vocab; i += 97) logits[i] = 6.0f;
  for (int32_t i = 5; i < vocab; i += 131) logits[i] = 6.5f;
  const std::set<int32_t> expected = nucleus(logits, 0.6);
  ASSERT_GT(expected.size(), 200u);
  FakeDecodeHost host = chain_host(vocab);
  Decoder sampler("sampling", ParamSet().set_float("top_p", 0.6).set_int("seed", 77), vocab);
  std::set<int32_t> seen;
  for (int i = 0; i < 800; ++i) seen.insert(sampler.choose(host, logits));
  for (int32_t token : seen) EXPECT_TRUE(expected.count(token)) << "token " << token;
  EXPECT_GT(seen.size(), expected.size() / 4);  // it does spread over the nucleus
}

TEST(DecoderSampling, TopKWithTopPOnALargeVocabulary) {
  const int32_t vocab = 128256;
  std::mt19937 rng(5);
  const std::vector<float> logits = random_logits(rng, vocab, 2.0f);
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  // Naive: the 50 best, renormalised, then the nucleus of 0.9 among them.
  std::vector<float> top(50);
  for (size_t i = 0; i < top.size(); ++i) top[i] = logits[order[i]];
  std::set<int32_t> expected;
  for (int32_t j : nucleus(top, 0.9)) expected.insert(order[j]);
  FakeDecodeHost host = chain_host(vocab);
  Decoder sampler("sampling",
                  ParamSet().set_int("top_k", 50).set_float("top_p", 0.9).set_int("seed", 3),
                  vocab);
  std::set<int32_t> seen;
  for (int i = 0; i < 150; ++i) seen.insert(sampler.choose(host, logits));
  for (int32_t token : seen) EXPECT_TRUE(expected.count(token)) << "token " << token;
  EXPECT_GE(seen.size(), 2u);
}

TEST(DecoderSampling, MinPDropsUnlikelyTokens) {
  // min_p 0.2 of the best (0.5) keeps tokens with p >= 0.1: 0, 1, 2.
  const std::vector<float> logits{std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  FakeDecodeHost host = chain_host(4);
  Decoder sampler("sampling", ParamSet().set_float("min_p", 0.2).set_int("seed", 4), 4);
  const int draws = 10000;
  const std::vector<int> counts = draw_counts(sampler, host, logits, draws);
  EXPECT_EQ(counts[3], 0);
  EXPECT_LT(chi_square(counts, {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, draws), 15.0);
}

TEST(DecoderSampling, EosAndBudgetStopAsInGreedy) {
  FakeDecodeHost host = chain_host(6);
  host.set_logits(0, peaked(6, 2));
  host.set_logits(1, {0, 0, 0, 0, 0, 50});
  host.set_logits(2, {0, 0, 0, 50, 0, 0});
  Decoder sampler("sampling", ParamSet().set_ints("eos_token_ids", {5}).set_int("top_k", 1), 6);
  const StepResult r = sampler.step(host, {0, 1, 2}, {3, 3, 1});
  ASSERT_EQ(r.status, TS_OK) << r.error;
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{2, 5, 3}));
  EXPECT_EQ(r.finished, (std::vector<uint8_t>{0, 1, 1}));
  ASSERT_EQ(host.calls().size(), 1u);
  EXPECT_EQ(host.calls()[0].slots, std::vector<int32_t>{0});
  EXPECT_EQ(host.calls()[0].tokens, std::vector<int32_t>{2});
}

// ------------------------------------------------------------------ params

void expect_error(std::string_view kind, const ParamSet& params,
                  std::initializer_list<std::string_view> fragments) {
  const std::string error = create_error(kind, params);
  ASSERT_FALSE(error.empty()) << "expected " << kind << " to refuse these parameters";
  for (std::string_view fragment : fragments)
    EXPECT_NE(error.find(fragment), std::string::npos) << "'" << fragment << "' not in: " << error;
}

TEST(DecoderParams, RejectsInvalidSamplingValuesNamingParameterValueAndRange) {
  expect_error("sampling", ParamSet().set_float("temperature", 0.0), {"temperature", "0", "> 0"});
  expect_error("sampling", ParamSet().set_float("temperature", -0.5),
               {"temperature", "-0.5", "> 0"});
  expect_error("sampling", ParamSet().set_float("top_p", 0.0), {"top_p", "0", "(0, 1]"});
  expect_error("sampling", ParamSet().set_float("top_p", 1.5), {"top_p", "1.5", "(0, 1]"});
  expect_error("sampling", ParamSet().set_int("top_k", -3), {"top_k", "-3", ">= 0"});
  expect_error("sampling", ParamSet().set_float("min_p", 1.5), {"min_p", "1.5", "[0, 1]"});
  expect_error("sampling", ParamSet().set_float("top_k", 2.5), {"top_k", "integer"});
}

TEST(DecoderParams, RejectsUnknownKeysListingTheAcceptedOnes) {
  expect_error("sampling", ParamSet().set_float("temprature", 0.7),
               {"sampling decoder", "unknown parameter 'temprature'", "temperature", "top_p"});
  expect_error("greedy", ParamSet().set_float("temperature", 0.7),
               {"greedy decoder", "unknown parameter 'temperature'", "eos_token_ids"});
}

TEST(DecoderParams, RejectsEosIdsOutsideTheVocabulary) {
  expect_error("greedy", ParamSet().set_ints("eos_token_ids", {2, 16}),
               {"eos_token_ids", "16", "index 1", "[0, 16)"});
  expect_error("sampling", ParamSet().set_ints("eos_token_ids", {-1}), {"eos_token_ids", "-1"});
  expect_error("greedy", ParamSet().set_int("vocab_size", 12), {"vocab_size", "12", "16"});
}

TEST(DecoderParams, AcceptsTheHostsModelWideKeys) {
  const auto host_keys = [] {
    ParamSet p;
    p.set_ints("eos_token_ids", {1, 2}).set_int("vocab_size", 16).set_int("hidden_size", 64);
    return p;
  };
  EXPECT_EQ(create_error("greedy", host_keys()), "");
  ParamSet sampling = host_keys();
  sampling.set_float("temperature", 0.7)
      .set_int("top_k", 40)
      .set_float("top_p", 0.95)
      .set_float("min_p", 0.05)
      .set_int("seed", 7);
  EXPECT_EQ(create_error("sampling", sampling), "");
  EXPECT_EQ(create_error("sampling", ParamSet().set_float("top_p", 1.0)), "");
}

}  // namespace
