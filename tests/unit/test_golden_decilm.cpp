// A small heterogeneous Puzzle child (tests/data/models/decilm_hetero.toml: gqa with 4/2/1 KV
// heads, linear and no-op attention, swiglu 256/512, linear and no-op FFN, random weights from
// the seed) against golden greedy runs of an independent float64 PyTorch DeciLM forward pass
// (tests/golden/models/make_decilm_golden.py, on the model exported as a Hugging Face DeciLM
// folder). The same model is checked as built from the manifest and as read back from a
// Hugging Face folder Tessera writes.
#include <gtest/gtest.h>
#include <tessera/formats/hf_writer.hpp>
#include <tessera/formats/model_source.hpp>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <string>

#include "golden_model.hpp"
#include "model_fixtures.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Tolerance on every compared logit (absolute). Tessera runs in f32, the golden in float64, on the
// same f32 weights, and the file keeps 7 significant digits (rounding <= 5e-7 at these logits,
// 1.8..3.6). Measured max diff over all 180 compared logits: 3.3e-6 (Release build, 2 threads),
// the same for the manifest and the Hugging Face round trip. The tolerance is 9x that; every
// golden greedy margin (smallest 1.6e-3) is far above it, so no divergence is allowed here.
constexpr double kTolerance = 3e-5;

const fs::path kSource = TESSERA_SOURCE_DIR;
const fs::path kManifest = kSource / "tests" / "data" / "models" / "decilm_hetero.toml";
const fs::path kGolden = kSource / "tests" / "golden" / "models" / "decilm_hetero_golden.json";

void run_all_cases(const LoadedModel& loaded, const std::string& what) {
  Model model(loaded.manifest, test::plugins(), loaded.weights, test::test_pool());
  const json golden = test::read_golden_json(kGolden);
  ASSERT_GE(golden.at("cases").size(), 4u);
  test::GoldenStats stats;
  for (const json& c : golden.at("cases")) {
    test::expect_matches_golden(model, test::plugins(), test::golden_case_from_json(c), kTolerance,
                                stats);
  }
  test::print_golden_summary(what, stats, kTolerance);
  EXPECT_EQ(stats.cases_completed, static_cast<int>(golden.at("cases").size()));
}

TEST(GoldenDeciLM, ManifestWithSeededWeightsMatchesTheReference) {
  const LoadedModel loaded = open_model(kManifest);
  ASSERT_EQ(loaded.manifest.weights.format, "random");
  // The golden was made on exactly these layers.
  const json golden = test::read_golden_json(kGolden);
  const json& blocks = golden.at("header").at("block_configs");
  ASSERT_EQ(blocks.size(), loaded.manifest.layers.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    const json& attention = blocks[i].at("attention");
    const std::string kind = loaded.manifest.layers[i].attention.kind;
    EXPECT_EQ(attention.at("no_op").get<bool>(), kind == "noop") << "layer " << i;
    EXPECT_EQ(attention.at("replace_with_linear").get<bool>(), kind == "linear") << "layer " << i;
    const json& ffn = blocks[i].at("ffn");
    const std::string ffn_kind = loaded.manifest.layers[i].ffn.kind;
    EXPECT_EQ(ffn.at("no_op").get<bool>(), ffn_kind == "noop") << "layer " << i;
    EXPECT_EQ(ffn.at("replace_with_linear").get<bool>(), ffn_kind == "linear") << "layer " << i;
  }
  run_all_cases(loaded, "DeciLM golden (manifest)");
}

TEST(GoldenDeciLM, HuggingFaceRoundTripMatchesTheReference) {
  const LoadedModel original = open_model(kManifest);
  // The random weights, drawn by what the blocks declare.
  const WeightPlan plan = plan_weights(original.manifest, test::plugins());
  const WeightStore weights = init_random_weights(plan, original.manifest.weights.seed);
  const fs::path folder =
      fs::temp_directory_path() / ("tessera-golden-decilm-" + std::to_string(::getpid()));
  fs::remove_all(folder);
  const HfWriteResult written = write_hf_model(folder, plan, weights);
  EXPECT_EQ(written.architecture, "DeciLMForCausalLM");
  LoadedModel loaded;
  try {
    loaded = open_model(folder);
  } catch (...) {
    fs::remove_all(folder);
    throw;
  }
  fs::remove_all(folder);
  EXPECT_EQ(loaded.architecture, "DeciLMForCausalLM");
  ASSERT_EQ(loaded.manifest.layers.size(), original.manifest.layers.size());
  for (size_t i = 0; i < loaded.manifest.layers.size(); ++i) {
    EXPECT_EQ(loaded.manifest.layers[i].attention.kind, original.manifest.layers[i].attention.kind)
        << "layer " << i;
    EXPECT_EQ(loaded.manifest.layers[i].ffn.kind, original.manifest.layers[i].ffn.kind)
        << "layer " << i;
  }
  run_all_cases(loaded, "DeciLM golden (Hugging Face round trip)");
}

}  // namespace
}  // namespace tessera
