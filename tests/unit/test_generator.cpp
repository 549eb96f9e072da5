// Generator: prefill + decoder plugin steps over the Model, against an
// argmax-by-hand loop; EOS, budgets, sampling seeds and the error paths.
#include "model_fixtures.hpp"

#include <tessera/engine/generator.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

int32_t argmax(const float* row, int32_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

class GeneratorTest : public ::testing::Test {
 protected:
  GeneratorTest()
      : manifest(hetero_manifest("{ kind = \"swiglu\" }", true, 24)),
        weights(init_random_weights(manifest, plugins(), 11)),
        model(manifest, plugins(), weights, test_pool()) {}

  // Greedy by hand with Model::forward: full logits of the prompt, then one token at a time.
  std::vector<int32_t> greedy_by_hand(const std::vector<int32_t>& tokens, int32_t max_new,
                                      const std::vector<int32_t>& eos) {
    model.reset(0);
    std::vector<float> logits = run_logits(model, one_sequence(tokens));
    const int32_t vocab = model.vocab();
    int32_t next = argmax(logits.data() + (tokens.size() - 1) * static_cast<size_t>(vocab), vocab);
    std::vector<int32_t> out;
    while (true) {
      out.push_back(next);
      if (static_cast<int32_t>(out.size()) == max_new ||
          std::find(eos.begin(), eos.end(), next) != eos.end())
        break;
      logits = run_logits(model, one_sequence({next}));
      next = argmax(logits.data(), vocab);
    }
    return out;
  }

  static GenerateOptions greedy(int32_t max_new, const std::vector<int64_t>& eos) {
    GenerateOptions options;
    options.max_new_tokens = max_new;
    options.decoder.kind = "greedy";
    options.decoder.params.set("eos_token_ids", eos);
    return options;
  }

  Manifest manifest;
  WeightStore weights;
  Model model;
  const std::vector<int32_t> prompt{1, 17, 42, 99, 5};
};

TEST_F(GeneratorTest, GreedyEqualsArgmaxLoopAndStreamsTokens) {
  Generator generator(model, plugins());
  std::vector<int32_t> streamed;
  const GenerateResult result =
      generator.generate(prompt, greedy(10, {}), [&](int32_t token) { streamed.push_back(token); });
  ASSERT_EQ(result.tokens.size(), 10u);
  EXPECT_EQ(streamed, result.tokens);
  EXPECT_FALSE(result.stopped_on_eos);
  EXPECT_GE(result.prefill_seconds, 0.0);
  EXPECT_GT(result.decode_seconds, 0.0);
  EXPECT_EQ(result.tokens, greedy_by_hand(prompt, 10, {}));
}

TEST_F(GeneratorTest, StopsOnEos) {
  Generator generator(model, plugins());
  const std::vector<int32_t> free_run = generator.generate(prompt, greedy(8, {})).tokens;
  ASSERT_EQ(free_run.size(), 8u);
  const int32_t eos = free_run[3];
  const size_t first =
      static_cast<size_t>(std::find(free_run.begin(), free_run.end(), eos) - free_run.begin());
  const GenerateResult result = generator.generate(prompt, greedy(8, {eos}));
  EXPECT_TRUE(result.stopped_on_eos);
  EXPECT_EQ(result.tokens, std::vector<int32_t>(free_run.begin(),
                                                free_run.begin() + static_cast<long>(first) + 1));
  EXPECT_EQ(result.tokens, greedy_by_hand(prompt, 8, {eos}));
}

TEST_F(GeneratorTest, EosFromManifestByDefault) {
  Generator generator(model, plugins());
  GenerateOptions options;
  options.max_new_tokens = 12;  // decoder kind left empty: greedy
  const GenerateResult result = generator.generate(prompt, options);
  const std::vector<int32_t> expected = greedy_by_hand(prompt, 12, {3});  // manifest eos 3
  EXPECT_EQ(result.tokens, expected);
  EXPECT_EQ(result.stopped_on_eos, expected.back() == 3);
}

TEST_F(GeneratorTest, MaxNewTokensRespected) {
  Generator generator(model, plugins());
  for (int32_t n : {1, 2, 5}) {
    int calls = 0;
    const GenerateResult result =
        generator.generate(prompt, greedy(n, {}), [&](int32_t) { ++calls; });
    EXPECT_EQ(result.tokens.size(), static_cast<size_t>(n));
    EXPECT_EQ(calls, n);
    // The last token is not fed: the cache holds the prompt and n - 1 tokens.
    EXPECT_EQ(model.kv_cache().length(0), static_cast<int32_t>(prompt.size()) + n - 1);
  }
  EXPECT_TRUE(generator.generate(prompt, greedy(0, {})).tokens.empty());
}

TEST_F(GeneratorTest, CapacityLimitsTheBudget) {
  Generator generator(model, plugins());  // capacity 24
  const std::vector<int32_t> long_prompt(20, 7);
  const GenerateResult result = generator.generate(long_prompt, greedy(100, {}));
  EXPECT_EQ(result.tokens.size(), 5u);  // 24 - 20 + 1: the last one needs no room
  EXPECT_EQ(model.kv_cache().length(0), 24);
}

TEST_F(GeneratorTest, SamplingWithSeedIsReproducible) {
  Generator generator(model, plugins());
  auto sample = [&](int64_t seed) {
    GenerateOptions options;
    options.max_new_tokens = 16;
    options.decoder.kind = "sampling";
    options.decoder.params.set("temperature", 1.0);
    options.decoder.params.set("seed", seed);
    options.decoder.params.set("eos_token_ids", std::vector<int64_t>{});
    return generator.generate(prompt, options).tokens;
  };
  const std::vector<int32_t> a = sample(42);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_EQ(sample(42), a);
  EXPECT_NE(sample(43), a);  // 16 draws over 101 tokens: equal only by a fixed-seed accident
}

TEST_F(GeneratorTest, PromptErrors) {
  Generator generator(model, plugins());
  const std::string empty = error_of([&] { generator.generate({}, greedy(4, {})); });
  EXPECT_NE(empty.find("empty"), std::string::npos) << empty;
  const std::string too_long =
      error_of([&] { generator.generate(std::vector<int32_t>(25, 1), greedy(4, {})); });
  EXPECT_NE(too_long.find("25"), std::string::npos) << too_long;
  EXPECT_NE(too_long.find("24"), std::string::npos) << too_long;
  const std::string bad_token = error_of([&] { generator.generate({1, 500}, greedy(4, {})); });
  EXPECT_NE(bad_token.find("500"), std::string::npos) << bad_token;
}

TEST_F(GeneratorTest, DecoderErrors) {
  Generator generator(model, plugins());
  GenerateOptions unknown;
  unknown.decoder.kind = "no-such-decoder";
  EXPECT_THROW(generator.generate(prompt, unknown), PluginError);
  GenerateOptions bad;
  bad.decoder.kind = "sampling";
  bad.decoder.params.set("temperature", -1.0);
  const std::string message = error_of([&] { generator.generate(prompt, bad); });
  EXPECT_NE(message.find("temperature"), std::string::npos) << message;
}

}  // namespace
}  // namespace tessera::test
