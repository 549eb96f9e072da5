// A block kind the core has never heard of, from a fixture plugin built against the SDK
// alone: sliding-window gqa ("sliding-gqa", tests/plugins/fixture_sliding_window). It
// declares its weights and cache through describe, so it loads with random weights and from
// safetensors and generates with no change to the core.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <tessera/engine/generator.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/formats/gguf_model.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/formats/safetensors.hpp>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::test {
namespace {

namespace fs = std::filesystem;

// Three layers; layer 1's attention is the given inline table.
std::string sliding_text(const std::string& layer1_attention,
                         const std::string& weights = "format = \"random\"\nseed = 17\n") {
  return R"([model]
name = "sliding"
hidden_size = 48
num_layers = 3
num_heads = 6
num_kv_heads = 2
intermediate_size = 64
vocab_size = 90
max_seq_len = 40

[weights]
)" + weights +
         R"(
[[layers]]
range = "0"

[[layers]]
range = "1"
attention = )" +
         layer1_attention +
         R"(

[[layers]]
range = "2"
attention = { kind = "gqa", kv_heads = 1 }
)";
}

Manifest sliding_manifest(const std::string& layer1_attention) {
  return parse_manifest(sliding_text(layer1_attention), "sliding.toml", ".");
}

const std::string kWindow3 = "{ kind = \"sliding-gqa\", window = 3 }";
const std::vector<int32_t> kPrompt{4, 8, 15, 16, 23, 42, 7, 1, 60, 2, 33, 89};

std::vector<float> logits_of(const Manifest& m, WeightStore w) {
  Model model(m, fixture_plugins(), std::move(w), test_pool());
  return run_logits(model, one_sequence(kPrompt));
}

TEST(SlidingWindow, ItsDescribeIsItsPlan) {
  const WeightPlan plan = plan_weights(sliding_manifest(kWindow3), fixture_plugins());
  const PlannedBlock& b = plan.block(1, TS_KIND_ATTENTION);
  EXPECT_EQ(b.label, "layer 1 attention sliding-gqa (fixture-sliding-window)");
  EXPECT_EQ(b.kv().kv_heads, 2);
  EXPECT_EQ(b.kv().head_dim, 8);
  EXPECT_EQ(plan.find("model.layers.1.self_attn.k_proj.weight")->shape,
            (std::vector<int64_t>{16, 48}));
  EXPECT_TRUE(plan.undeclared().empty());
  // Its parameters are its own to check, at its place in the manifest.
  const std::string bad_window = [] {
    try {
      (void)plan_weights(sliding_manifest("{ kind = \"sliding-gqa\", window = 0 }"),
                         fixture_plugins());
    } catch (const ManifestError& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  }();
  EXPECT_NE(bad_window.find("sliding.toml:20:13: layer 1 attention sliding-gqa"), std::string::npos)
      << bad_window;
  EXPECT_NE(bad_window.find("window 0 must be >= 1"), std::string::npos) << bad_window;
}

TEST(SlidingWindow, RandomWeightsFromItsDeclarationBuildAndGenerate) {
  const Manifest m = sliding_manifest(kWindow3);
  Model model(m, fixture_plugins(), load_weights(m), test_pool());  // drawn when built
  EXPECT_TRUE(model.weights().has("model.layers.1.self_attn.q_proj.weight"));
  EXPECT_EQ(model.kv_cache().layer_shape(1).kv_heads, 2);
  Generator generator(model, fixture_plugins());
  GenerateOptions options;
  options.max_new_tokens = 10;
  options.decoder.kind = "greedy";
  const GenerateResult first = generator.generate(kPrompt, options);
  ASSERT_GE(first.tokens.size(), 1u);
  EXPECT_LE(first.tokens.size(), 10u);
  EXPECT_EQ(generator.generate(kPrompt, options).tokens, first.tokens);  // deterministic
}

TEST(SlidingWindow, SafetensorsOfTheRandomWeightsGiveTheSameLogits) {
  const Manifest random = sliding_manifest(kWindow3);
  const WeightStore drawn = init_random_weights(random, fixture_plugins(), 17);
  const fs::path file = fs::temp_directory_path() /
                        ("tessera-sliding-" + std::to_string(::getpid()) + ".safetensors");
  write_safetensors(file, drawn);
  const Manifest from_file = parse_manifest(
      sliding_text(kWindow3, "format = \"safetensors\"\npath = \"" + file.string() + "\"\n"),
      "sliding-file.toml", ".");
  const WeightStore loaded = load_weights(from_file);
  fs::remove(file);
  EXPECT_EQ(loaded.all().size(), drawn.all().size());
  const std::vector<float> want = logits_of(random, WeightStore{});
  EXPECT_GT(max_abs(want), 0.1f);
  EXPECT_EQ(logits_of(from_file, loaded), want);
}

TEST(SlidingWindow, AWindowAsLongAsTheSequenceIsGqa) {
  // The same weights (the kinds declare the same tensors under the same names).
  const Manifest gqa = sliding_manifest("{ kind = \"gqa\" }");
  const WeightStore weights = init_random_weights(gqa, plugins(), 3);
  const std::vector<float> want = logits_of(gqa, weights);
  const std::vector<float> wide =
      logits_of(sliding_manifest("{ kind = \"sliding-gqa\", window = 12 }"), weights);
  EXPECT_LT(max_abs_diff(wide, want), 1e-4f * max_abs(want));
  const std::vector<float> wider =
      logits_of(sliding_manifest("{ kind = \"sliding-gqa\", window = 1000 }"), weights);
  EXPECT_LT(max_abs_diff(wider, want), 1e-4f * max_abs(want));
  // A shorter window sees less: the first `window` positions agree, the rest do not.
  const std::vector<float> narrow = logits_of(sliding_manifest(kWindow3), weights);
  const size_t vocab = 90;
  EXPECT_LT(max_abs_diff(rows_of(narrow, vocab, 0, 3), rows_of(want, vocab, 0, 3)),
            1e-4f * max_abs(want));
  EXPECT_GT(max_abs_diff(rows_of(narrow, vocab, 3, 9), rows_of(want, vocab, 3, 9)), 1e-3f);
}

TEST(SlidingWindow, DecodingThroughTheCacheEqualsOneCall) {
  const Manifest m = sliding_manifest(kWindow3);
  const std::vector<float> whole = logits_of(m, WeightStore{});
  Model model(m, fixture_plugins(), WeightStore{}, test_pool());
  const size_t vocab = 90;
  (void)run_logits(model, one_sequence({kPrompt.begin(), kPrompt.begin() + 5}));
  for (size_t i = 5; i < kPrompt.size(); ++i)
    EXPECT_LT(
        max_abs_diff(run_logits(model, one_sequence({kPrompt[i]})), rows_of(whole, vocab, i, 1)),
        1e-4f * max_abs(whole))
        << "position " << i;
}

TEST(SlidingWindow, GgufFilesHaveNoNamesForIt) {
  // The GGUF reader's name map lists the kinds GGUF files name; a layout with another kind is
  // refused by name.
  const GgufFile file = GgufFile::open(fs::path(TESSERA_SOURCE_DIR) / "tests" / "data" / "gguf" /
                                       "tiny_llama.gguf-fixture");
  Manifest layout = gguf_manifest(file);
  layout.layers[1].attention.kind = "sliding-gqa";
  try {
    (void)gguf_weights(file, layout);
    FAIL() << "expected a ModelError";
  } catch (const ModelError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layer 1 (attention sliding-gqa, ffn swiglu): GGUF files have no "
                           "tensor names for attention kind 'sliding-gqa'"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("attention gqa, linear, noop; ffn swiglu, noop"), std::string::npos)
        << message;
  }
}

}  // namespace
}  // namespace tessera::test
