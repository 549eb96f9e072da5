// Choosing a block provider: the best score first; one that declines (its capability
// query, or create returning TS_UNSUPPORTED) hands over to the next; when every candidate
// declines, the error lists each with its reason.
#include "model_fixtures.hpp"

#include <tessera/engine/error.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

namespace fs = std::filesystem;

fs::path fixture_library(const std::string& name) {
  return fs::path(TESSERA_FIXTURE_PLUGIN_DIR) / ("libtessera-" + name + ".so");
}

// The real plugins except those named in `without`, plus the two declining fixtures.
std::unique_ptr<PluginRegistry> registry_with_decliners(
    const std::vector<std::string>& without = {}) {
  auto registry = std::make_unique<PluginRegistry>();
  for (const std::string name : {"attention-cpu", "ffn-cpu", "parallel-local", "decoding-basic"}) {
    if (std::find(without.begin(), without.end(), name) != without.end()) continue;
    registry->load(fs::path(TESSERA_PLUGIN_DIR) / ("libtessera-" + name + ".so"));
  }
  registry->load(fixture_library("fixture-declines-supports"));
  registry->load(fixture_library("fixture-declines-create"));
  return registry;
}

// Two layers of gqa + swiglu: what a registry without the CPU FFN plugin can plan.
Manifest swiglu_manifest() {
  return parse_manifest(R"([model]
hidden_size = 32
num_layers = 2
num_heads = 2
num_kv_heads = 1
intermediate_size = 48
vocab_size = 50

[weights]
format = "random"
seed = 3

[[layers]]
range = "0-1"
attention = { kind = "gqa" }
ffn = { kind = "swiglu" }
)",
                        "swiglu-test.toml", ".");
}

template <class F>
std::string plugin_error_of(F&& f) {
  try {
    f();
  } catch (const PluginError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not a PluginError> ") + e.what();
  }
  return "<no exception>";
}

TEST(ProviderChoice, DeclinersOutbidTheCpuPluginAndAreSkipped) {
  const auto owned = registry_with_decliners();
  const PluginRegistry& registry = *owned;
  const std::vector<ProviderRef> ranked = registry.candidates(TS_KIND_FFN, "swiglu", TS_DEVICE_CPU);
  ASSERT_EQ(ranked.size(), 3u);
  EXPECT_EQ(ranked[0].score, 1000);
  EXPECT_EQ(ranked[1].score, 1000);
  EXPECT_EQ(ranked[2].plugin_name(), "tessera-ffn-cpu");

  const Manifest manifest = hetero_manifest();
  const WeightStore weights = init_random_weights(manifest, plugins(), 7);
  Model chosen(manifest, registry, weights, test_pool());
  Model plain(manifest, plugins(), weights, test_pool());
  for (int32_t layer = 0; layer < manifest.model.num_layers; ++layer) {
    if (manifest.layers[static_cast<size_t>(layer)].ffn.kind != "swiglu") continue;
    EXPECT_EQ(chosen.ffn(layer).provider().plugin_name(), "tessera-ffn-cpu") << "layer " << layer;
  }
  const ForwardBatch batch = one_sequence({1, 17, 42, 99, 5});
  EXPECT_EQ(run_logits(chosen, batch), run_logits(plain, batch));
}

TEST(ProviderChoice, EveryCandidateDecliningIsAnErrorListingEachReason) {
  const auto owned = registry_with_decliners({"ffn-cpu"});
  const PluginRegistry& registry = *owned;
  const Manifest manifest = swiglu_manifest();
  const WeightStore weights = init_random_weights(manifest, plugins(), 7);
  const std::string message =
      plugin_error_of([&] { Model model(manifest, registry, weights, test_pool()); });
  // Layer 0's FFN is the first swiglu built; the message names it, its manifest line and
  // both providers with the reason each gave for this block's own parameters.
  EXPECT_NE(message.find("layer 0 ffn 'swiglu' (swiglu-test.toml:"), std::string::npos) << message;
  EXPECT_NE(message.find("all 2 providers declined it"), std::string::npos) << message;
  EXPECT_NE(message.find("fixture-declines-supports ("), std::string::npos) << message;
  EXPECT_NE(message.find("supports declines (fixture): layer 0, intermediate_size 48"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("fixture-declines-create ("), std::string::npos) << message;
  EXPECT_NE(message.find("create declines (fixture): layer 0, intermediate_size 48"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("must not be reached"), std::string::npos) << message;
}

TEST(ProviderChoice, APinnedPluginThatDeclinesHasNoFallback) {
  const auto owned = registry_with_decliners();
  const PluginRegistry& registry = *owned;
  const Manifest manifest =
      hetero_manifest("{ kind = \"swiglu\", plugin = \"fixture-declines-create\" }");
  const WeightStore weights = init_random_weights(hetero_manifest(), plugins(), 7);
  const std::string message =
      plugin_error_of([&] { Model model(manifest, registry, weights, test_pool()); });
  EXPECT_NE(message.find("layer 2 ffn 'swiglu'"), std::string::npos) << message;
  EXPECT_NE(message.find("its only provider declined it"), std::string::npos) << message;
  EXPECT_NE(message.find("create declines (fixture): layer 2"), std::string::npos) << message;
}

}  // namespace
}  // namespace tessera::test
