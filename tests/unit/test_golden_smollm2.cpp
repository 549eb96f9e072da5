// The real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against golden greedy runs of an
// independent implementation: transformers' Llama on the same file, dequantised to f32
// (tests/golden/models/make_smollm2_golden.py wrote smollm2_golden.json). Checks Tessera's
// tokenizer and chat template on the prompts, the 32 greedy tokens and the top-5 logits.
// Without the model file these tests skip, or fail where TESSERA_REQUIRE_DEFAULT_MODEL is set
// (scripts/test.sh, hence CI).
#include <gtest/gtest.h>
#include <tessera/chat/chat_template.hpp>
#include <tessera/formats/model_source.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "default_model.hpp"
#include "golden_model.hpp"
#include "model_fixtures.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Tolerance on every compared logit (|Tessera - golden|, absolute). Both sides run the same f32
// weights and differ only in summation order and f32 rounding over 30 layers; on top of that the
// golden file rounds to 5 significant digits, up to 5e-4 for SmolLM2's top logits (2.6..37.5).
// Measured max diff over all 405 compared logits: 5.0e-4, i.e. at the file's rounding bound
// (Release build, 2 threads). The tolerance is 6x that. A greedy step whose golden top-1/top-2
// margin is below it is a near-tie (prose step 19: 6.7e-4, long_passage step 27: 9.8e-4) and may
// go either way; golden_model.hpp allows that one divergence and names it.
constexpr double kTolerance = 3e-3;
constexpr double kF16KvTolerance = 2e-2;

// 9 prompts x 40 steps of a 135M-parameter model take ~30 s of CPU optimised, many minutes in
// the Debug + sanitizer build. That build runs a shortened golden check instead: the first
// kSanitizerCases cases, kSanitizerTokens greedy tokens each (their logits at every step).
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
constexpr bool kOptimisedBuild = true;
#else
constexpr bool kOptimisedBuild = false;
#endif
constexpr size_t kSanitizerCases = 3;
constexpr size_t kSanitizerTokens = 8;

const fs::path kGolden =
    fs::path(TESSERA_SOURCE_DIR) / "tests" / "golden" / "models" / "smollm2_golden.json";
constexpr const char* kSha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fs::path smollm2_path() {
  return test::default_model_path();
}

// Opening the GGUF (dequantising 135M parameters) is the slow part: once for all tests.
class GoldenSmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    golden_ = std::make_unique<json>(test::read_golden_json(kGolden));
    const fs::path path = smollm2_path();
    if (!fs::exists(path)) return;
    loaded_ = std::make_unique<LoadedModel>(open_model(path));
  }
  static void TearDownTestSuite() {
    loaded_.reset();
    golden_.reset();
  }
  void SetUp() override { TESSERA_NEED_DEFAULT_MODEL(loaded_ != nullptr, smollm2_path().string()); }

  static std::unique_ptr<json> golden_;
  static std::unique_ptr<LoadedModel> loaded_;
};

std::unique_ptr<json> GoldenSmolLM2::golden_;
std::unique_ptr<LoadedModel> GoldenSmolLM2::loaded_;

TEST_F(GoldenSmolLM2, GoldenFileDescribesThisModel) {
  const json& header = golden_->at("header");
  EXPECT_EQ(header.at("gguf_sha256").get<std::string>(), kSha256);
  EXPECT_EQ(header.at("new_tokens").get<int>(), 32);
  EXPECT_GE(golden_->at("cases").size(), 8u);
  EXPECT_EQ(loaded_->manifest.model.vocab_size, 49152);
  EXPECT_EQ(loaded_->manifest.model.num_layers, 30);
}

TEST_F(GoldenSmolLM2, TokenizerAndChatTemplateGiveTheGoldenIds) {
  ASSERT_TRUE(loaded_->tokenizer) << loaded_->tokenizer_error;
  const Tokenizer& tokenizer = *loaded_->tokenizer;
  const ChatTemplate chat = ChatTemplate::from_template_text(loaded_->chat_template);
  for (const json& c : golden_->at("cases")) {
    const std::string name = c.at("name");
    const std::string text = c.at("text");
    if (c.at("kind") == "chat") {
      std::vector<ChatMessage> messages;
      for (const json& m : c.at("messages")) messages.push_back({m.at("role"), m.at("content")});
      EXPECT_EQ(chat.apply(messages, /*add_generation_prompt=*/true), text) << name;
    }
    // The golden ids come from transformers' tokenizer; where the cross-check tokenizer
    // disagreed the file also has ids_tokenizer_json, and Tessera must give the main ids.
    const auto ids = c.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer.encode(text, {.parse_special = true, .add_bos = false}), ids) << name;
    EXPECT_EQ(tokenizer.decode(ids), text) << name;
  }
}

// The first `tokens` steps of a golden case (its top-5 steps 0..tokens included).
test::GoldenCase shortened(test::GoldenCase c, size_t tokens) {
  if (c.greedy.size() > tokens) {
    c.greedy.resize(tokens);
    c.margins.resize(tokens);
  }
  // Steps 0..tokens, tokens + 1 of them (compared without adding, so SIZE_MAX keeps all).
  if (c.top5.size() > tokens && c.top5.size() - tokens > 1) c.top5.resize(tokens + 1);
  return c;
}

// Runs the golden cases (the first max_cases, max_tokens each; all by default) on the model
// dequantised to f32, with its KV cache in kv_dtype (unset: the blocks' default), prints the
// summary under `label` and checks that every case ran to the end.
void run_golden_cases(const LoadedModel& loaded, const json& golden,
                      std::optional<ts_dtype> kv_dtype, double tolerance, const char* label,
                      size_t max_cases = SIZE_MAX, size_t max_tokens = SIZE_MAX) {
  Manifest manifest = loaded.manifest;
  manifest.runtime.set_weight_dtype(TS_F32);  // what the golden file was made from
  // The golden runs generate exactly 32 tokens, through any end token.
  manifest.model.eos_token_ids.clear();
  manifest.runtime.kv_dtype = kv_dtype;
  ModelOptions options;
  options.capacity = 512;
  Model model(manifest, test::plugins(), loaded.weights, test::test_pool(), options);
  if (kv_dtype) {
    ASSERT_EQ(model.kv_cache().layer_shape(0).dtype, *kv_dtype);
  }
  ASSERT_EQ(model.weights().get("model.layers.0.self_attn.q_proj.weight").dtype(), TS_F32);

  test::GoldenStats stats;
  const auto start = std::chrono::steady_clock::now();
  const size_t n_cases = std::min(max_cases, golden.at("cases").size());
  for (size_t i = 0; i < n_cases; ++i) {
    const test::GoldenCase golden_case =
        shortened(test::golden_case_from_json(golden.at("cases")[i]), max_tokens);
    ASSERT_LE(golden_case.prompt.size() + golden_case.greedy.size(), 512u);
    test::expect_matches_golden(model, test::plugins(), golden_case, tolerance, stats);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  test::print_golden_summary(label, stats, tolerance);
  std::printf("%s: %.1f s for %zu cases\n", label, seconds, n_cases);
  EXPECT_EQ(stats.cases_completed, static_cast<int>(n_cases));
  // Every case recorded top-5 logits at steps 0..8: a run that compared none checked nothing.
  EXPECT_GE(stats.logits_compared, static_cast<int64_t>(5 * n_cases));
}

TEST_F(GoldenSmolLM2, GreedyTokensAndTopLogitsMatch) {
  if (kOptimisedBuild) {
    run_golden_cases(*loaded_, *golden_, std::nullopt, kTolerance, "SmolLM2 golden");
  } else {
    run_golden_cases(*loaded_, *golden_, std::nullopt, kTolerance,
                     "SmolLM2 golden (shortened for the sanitizer build)", kSanitizerCases,
                     kSanitizerTokens);
  }
}

// An f16 KV cache ([runtime] kv_dtype = "f16", as llama.cpp keeps it by default) against
// the same golden file: keys and values rounded to 11 significant bits move the logits by
// more than the f32 run's (measured: 7.9e-3 over the 405 logits, every greedy token the same;
// the tolerance is 2.5x that), still far below a token's margin but for near-ties.
TEST_F(GoldenSmolLM2, F16KvCacheKeepsTheGreedyTokens) {
  if (kOptimisedBuild) {
    run_golden_cases(*loaded_, *golden_, TS_F16, kF16KvTolerance, "SmolLM2 golden, f16 KV cache");
  } else {
    run_golden_cases(*loaded_, *golden_, TS_F16, kF16KvTolerance,
                     "SmolLM2 golden, f16 KV cache (shortened for the sanitizer build)", 1,
                     kSanitizerTokens);
  }
}

// The default model as its GGUF file stores it (`--weight-dtype stored`): Q4_1 block
// matrices and a Q8_0 embedding, dotted with activations quantised to 8 bits per block of 32,
// against the golden file of the f32-dequantised weights. Teacher-forced on the golden tokens
// (so that one early flip does not change every later context), every step of every case:
//  - the top-1 must be the golden token wherever the golden top-1/top-2 margin is at least
//    kStoredMargin (a flip there would be a real error, not a near-tie);
//  - at least kStoredAgreement of all steps must agree;
//  - every golden top-5 logit within kStoredTolerance.
// Measured (Release, 2 threads, 2026-12-07): 280 of 288 steps agree (97.2 %), every flipped
// step had a golden margin below 0.07, and the largest top-5 logit difference was 0.617.
TEST_F(GoldenSmolLM2, StoredQuantisedWeightsAgreeWithTheF32Tokens) {
  constexpr double kStoredTolerance = 1.0;
  constexpr double kStoredMargin = 1.0;
  constexpr double kStoredAgreement = 0.95;
  Manifest manifest = loaded_->manifest;
  manifest.model.eos_token_ids.clear();
  manifest.runtime.weights_as_stored = true;  // --weight-dtype stored
  ModelOptions options;
  options.capacity = 512;
  Model model(manifest, test::plugins(), loaded_->weights, test::test_pool(), options);
  ASSERT_EQ(model.weights().get("model.layers.0.mlp.down_proj.weight").dtype(), TS_Q4_1);
  ASSERT_EQ(model.weights().get("model.embed_tokens.weight").dtype(), TS_Q8_0);

  const size_t n_cases = kOptimisedBuild ? golden_->at("cases").size() : 1;
  const size_t max_steps = kOptimisedBuild ? SIZE_MAX : kSanitizerTokens;
  int steps = 0, agree = 0;
  double max_diff = 0, smallest_flipped_margin = HUGE_VAL;
  std::vector<float> logits(static_cast<size_t>(model.vocab()));
  for (size_t i = 0; i < n_cases; ++i) {
    const test::GoldenCase c = test::golden_case_from_json(golden_->at("cases")[i]);
    model.reset(0);
    ForwardBatch batch;
    batch.slots = {0};
    batch.offsets = {0, static_cast<int32_t>(c.prompt.size())};
    batch.tokens = c.prompt;
    batch.last_only = true;
    model.forward(batch, logits.data(), nullptr);
    for (size_t s = 0; s < std::min(c.greedy.size(), max_steps); ++s) {
      if (s > 0) {
        batch.offsets = {0, 1};
        batch.tokens = {c.greedy[s - 1]};
        model.forward(batch, logits.data(), nullptr);
      }
      const auto top =
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      ++steps;
      if (top == c.greedy[s]) {
        ++agree;
      } else {
        smallest_flipped_margin = std::min(smallest_flipped_margin, c.margins[s]);
        EXPECT_LT(c.margins[s], kStoredMargin)
            << c.name << " step " << s << ": top-1 " << top << ", golden " << c.greedy[s]
            << " with margin " << c.margins[s];
      }
      if (s < c.top5.size())
        for (size_t k = 0; k < c.top5[s].ids.size(); ++k) {
          const double diff =
              std::fabs(logits[static_cast<size_t>(c.top5[s].ids[k])] - c.top5[s].logits[k]);
          max_diff = std::max(max_diff, diff);
          EXPECT_LE(diff, kStoredTolerance) << c.name << " step " << s << " rank " << k + 1;
        }
    }
  }
  std::printf(
      "SmolLM2 golden, weights as stored (Q4_1/Q8_0, 8-bit activations): top-1 agrees on %d of "
      "%d teacher-forced steps (%.1f %%); max |logit diff| on the golden top-5 %.3g; smallest "
      "golden margin of a flipped step %.3g\n",
      agree, steps, 100.0 * agree / std::max(steps, 1), max_diff, smallest_flipped_margin);
  EXPECT_GT(steps, 0);
  // The sanitizer build's 8 steps of one case hold its step-0 near-tie (margin 0.08): too few
  // for a share, so only the optimised build's 288 steps are held to it.
  if (kOptimisedBuild) {
    EXPECT_GE(agree, kStoredAgreement * steps);
  }
}

}  // namespace
}  // namespace tessera
