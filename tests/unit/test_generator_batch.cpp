// Generator::generate_batch: several sequences at once, each in its own slot, give what
// each gives alone (greedy and sampling), finish independently, and stream by index.
#include "model_fixtures.hpp"

#include <tessera/engine/generator.hpp>

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

ModelOptions four_slots() {
  ModelOptions options;
  options.slots = 4;
  return options;
}

class GeneratorBatchTest : public ::testing::Test {
 protected:
  GeneratorBatchTest()
      : manifest(hetero_manifest("{ kind = \"swiglu\" }", true, 40)),
        weights(init_random_weights(manifest, plugins(), 11)),
        model(manifest, plugins(), weights, test_pool(), four_slots()) {}

  static GenerateOptions decoding(const std::string& kind, int32_t max_new,
                                  const std::vector<int64_t>& eos = {}) {
    GenerateOptions options;
    options.max_new_tokens = max_new;
    options.decoder.kind = kind;
    options.decoder.params.set("eos_token_ids", eos);
    if (kind == "sampling") {
      options.decoder.params.set("temperature", 1.5);
      options.decoder.params.set("seed", int64_t{1234});
    }
    return options;
  }

  // Each request alone, in its own slot, on a fresh generator run.
  std::vector<std::vector<int32_t>> alone(const std::vector<SequenceRequest>& each,
                                          const GenerateOptions& options) {
    std::vector<std::vector<int32_t>> out;
    Generator generator(model, plugins());
    for (const SequenceRequest& r : each)
      out.push_back(generator.generate_batch({r}, options).front().tokens);
    return out;
  }

  Manifest manifest;
  WeightStore weights;
  Model model;
  const std::vector<SequenceRequest> requests{{0, 0, {1, 17, 42, 99, 5}},
                                              {1, 0, {7}},
                                              {2, 0, {33, 34, 35, 36, 37, 38, 39, 40, 41}},
                                              {3, 0, {64, 2}}};
};

TEST_F(GeneratorBatchTest, GreedyBatchEqualsEachSequenceAlone) {
  const GenerateOptions options = decoding("greedy", 12);
  Generator generator(model, plugins());
  const std::vector<GenerateResult> batch = generator.generate_batch(requests, options);
  const std::vector<std::vector<int32_t>> single = alone(requests, options);
  ASSERT_EQ(batch.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(batch[i].tokens.size(), 12u) << "sequence " << i;
    EXPECT_EQ(batch[i].tokens, single[i]) << "sequence " << i;
  }
  // Greedy does not depend on the slot: sequence 2 alone in slot 0 is the same again.
  EXPECT_EQ(generator.generate(requests[2].tokens, options).tokens, batch[2].tokens);
}

TEST_F(GeneratorBatchTest, SamplingBatchEqualsEachSequenceAloneInItsSlot) {
  const GenerateOptions options = decoding("sampling", 10);
  Generator generator(model, plugins());
  const std::vector<GenerateResult> batch = generator.generate_batch(requests, options);
  const std::vector<std::vector<int32_t>> single = alone(requests, options);
  for (size_t i = 0; i < requests.size(); ++i)
    EXPECT_EQ(batch[i].tokens, single[i]) << "sequence " << i;
  // Slot 0 draws from the seed itself: the single-sequence generate() gives the same.
  EXPECT_EQ(generator.generate(requests[0].tokens, options).tokens, batch[0].tokens);
  // Two slots fed the same prompt draw from different streams (a flat-ish distribution at
  // temperature 1.5 over 101 tokens: ten equal draws would be a broken seed mix).
  const std::vector<GenerateResult> twins =
      generator.generate_batch({{0, 0, requests[0].tokens}, {1, 0, requests[0].tokens}}, options);
  EXPECT_NE(twins[0].tokens, twins[1].tokens);
}

TEST_F(GeneratorBatchTest, SequencesFinishIndependentlyAndStreamByIndex) {
  // An end token that sequence 0 emits early (its 3rd greedy token) stops only sequence 0.
  Generator generator(model, plugins());
  const std::vector<int32_t> free_run =
      generator.generate(requests[0].tokens, decoding("greedy", 12)).tokens;
  const int64_t eos = free_run[2];
  const GenerateOptions options = decoding("greedy", 12, {eos});
  std::map<size_t, std::vector<int32_t>> streamed;
  const std::vector<GenerateResult> batch = generator.generate_batch(
      requests, options, [&](size_t i, int32_t token) { streamed[i].push_back(token); });
  const std::vector<std::vector<int32_t>> single = alone(requests, options);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(batch[i].tokens, single[i]) << "sequence " << i;
    EXPECT_EQ(streamed[i], batch[i].tokens) << "sequence " << i;
  }
  ASSERT_LE(batch[0].tokens.size(), 3u);
  EXPECT_EQ(batch[0].tokens.back(), eos);
  EXPECT_TRUE(batch[0].stopped_on_eos);
}

TEST_F(GeneratorBatchTest, EachSequenceStopsAtItsOwnCapacity) {
  // Capacity 40 per slot: a 35-token prompt has room for 6 tokens, a 2-token one for 12.
  std::vector<int32_t> long_prompt(35);
  for (size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = static_cast<int32_t>(5 + i);
  Generator generator(model, plugins());
  const std::vector<GenerateResult> batch =
      generator.generate_batch({{0, 0, long_prompt}, {1, 0, {64, 2}}}, decoding("greedy", 12));
  EXPECT_EQ(batch[0].tokens.size(), 6u);
  EXPECT_EQ(batch[1].tokens.size(), 12u);
  EXPECT_EQ(batch[1].tokens, alone({{1, 0, {64, 2}}}, decoding("greedy", 12))[0]);
}

TEST_F(GeneratorBatchTest, RefusesBadBatchesNamingTheSequence) {
  Generator generator(model, plugins());
  const GenerateOptions options = decoding("greedy", 4);
  EXPECT_NE(error_of([&] { generator.generate_batch({}, options); }).find("no sequences"),
            std::string::npos);
  const std::string twice = error_of([&] {
    generator.generate_batch({{1, 0, {5}}, {1, 0, {6}}}, options);
  });
  EXPECT_NE(twice.find("sequences 0 and 1 both use slot 1"), std::string::npos) << twice;
  const std::string range = error_of([&] { generator.generate_batch({{4, 0, {5}}}, options); });
  EXPECT_NE(range.find("slot 4 is out of range; the model has 4 slots"), std::string::npos)
      << range;
  const std::string empty = error_of([&] {
    generator.generate_batch({{0, 0, {5}}, {2, 0, {}}}, options);
  });
  EXPECT_NE(empty.find("(sequence 1): the prompt is empty"), std::string::npos) << empty;
  const std::string keep = error_of([&] { generator.generate_batch({{3, 2, {5}}}, options); });
  EXPECT_NE(keep.find("slot 3 holds"), std::string::npos) << keep;
  std::vector<SequenceRequest> five;
  for (int32_t s = 0; s < 5; ++s) five.push_back({s, 0, {5}});
  const std::string many = error_of([&] { generator.generate_batch(five, options); });
  EXPECT_NE(many.find("5 sequences but the model has 4 slots"), std::string::npos) << many;
}

}  // namespace
}  // namespace tessera::test
