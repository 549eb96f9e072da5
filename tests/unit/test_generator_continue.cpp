// Generator::generate_after: continuing a sequence from what its KV cache holds gives the same
// tokens as generating from the whole prompt at once; dropping cached rows works; bad keeps
// and overlong prompts are refused.
#include <gtest/gtest.h>

#include <tessera/engine/generator.hpp>

#include <string>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::test {
namespace {

GenerateOptions greedy(int32_t max_new) {
  GenerateOptions options;
  options.max_new_tokens = max_new;
  options.decoder.kind = "greedy";
  options.decoder.params.set("eos_token_ids", std::vector<int64_t>{});  // run to the budget
  return options;
}

std::vector<int32_t> joined(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class GeneratorContinueTest : public ::testing::Test {
 protected:
  GeneratorContinueTest()
      : manifest(hetero_manifest("{ kind = \"swiglu\" }", true, 48)),
        weights(init_random_weights(manifest, plugins(), 5)),
        model(manifest, plugins(), weights, test_pool()),
        generator(model, plugins()) {}

  Manifest manifest;
  WeightStore weights;
  Model model;
  Generator generator;
  const std::vector<int32_t> first{1, 17, 42, 99, 5};
  const std::vector<int32_t> second{8, 23, 61};
};

TEST_F(GeneratorContinueTest, ContinuingEqualsGeneratingFromTheWholePrompt) {
  const std::vector<int32_t> whole = generator.generate(joined(first, second), greedy(6)).tokens;
  ASSERT_EQ(whole.size(), 6U);

  // One new token leaves exactly the prompt in the cache (the token itself is not fed).
  generator.generate(first, greedy(1));
  ASSERT_EQ(model.kv_cache().length(0), static_cast<int32_t>(first.size()));
  const GenerateResult continued =
      generator.generate_after(static_cast<int32_t>(first.size()), second, greedy(6));
  EXPECT_EQ(continued.tokens, whole);
  EXPECT_EQ(model.kv_cache().length(0), static_cast<int32_t>(first.size() + second.size() + 5));
}

TEST_F(GeneratorContinueTest, KeepingFewerTokensDropsTheRestOfTheCache) {
  generator.generate(first, greedy(4));  // the cache holds first + 3 generated tokens
  ASSERT_EQ(model.kv_cache().length(0), static_cast<int32_t>(first.size()) + 3);
  const std::vector<int32_t> head(first.begin(), first.begin() + 3);
  const GenerateResult continued = generator.generate_after(3, second, greedy(5));
  EXPECT_EQ(continued.tokens, generator.generate(joined(head, second), greedy(5)).tokens);
}

TEST_F(GeneratorContinueTest, KeepZeroStartsOver) {
  generator.generate(first, greedy(3));
  EXPECT_EQ(generator.generate_after(0, second, greedy(4)).tokens,
            generator.generate(second, greedy(4)).tokens);
}

TEST_F(GeneratorContinueTest, RefusesBadKeepsAndOverlongPrompts) {
  generator.generate(first, greedy(1));
  const auto error_of = [&](int32_t keep, const std::vector<int32_t>& tokens) -> std::string {
    try {
      generator.generate_after(keep, tokens, greedy(2));
    } catch (const std::exception& e) {
      return e.what();
    }
    return "<no exception>";
  };
  EXPECT_NE(error_of(6, second).find("keeping 6 cached tokens, but slot 0 holds 5"),
            std::string::npos);
  EXPECT_NE(error_of(-1, second).find("expected 0 <= keep <= 5"), std::string::npos);
  const std::string too_long = error_of(5, std::vector<int32_t>(44, 3));
  EXPECT_NE(too_long.find("the prompt has 44 tokens after 5 cached ones, more than the model's "
                          "capacity of 48"),
            std::string::npos)
      << too_long;
  // A refused call leaves the cache as it was.
  EXPECT_EQ(model.kv_cache().length(0), 5);
  EXPECT_NE(error_of(5, {}).find("the prompt is empty"), std::string::npos);
}

}  // namespace
}  // namespace tessera::test
