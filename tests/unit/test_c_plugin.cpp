// The plugin written in plain C (tests/plugins/c_plugin): pinned in a manifest, its swiglu
// and linear blocks give the logits of the C++ CPU blocks, alone and sharded over two
// ranks, and its errors reach the host as messages.
#include <gtest/gtest.h>

#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::test {
namespace {

constexpr float kTolerance = 2e-4f;
constexpr const char* kCPlugin = "tessera-fixture-c";

// The real plugins and the C one.
const PluginRegistry& registry_with_c() {
  static PluginRegistry* registry = [] {
    auto* r = new PluginRegistry();
    r->add_search_path(TESSERA_PLUGIN_DIR);
    r->load_all();
    r->load(TESSERA_FIXTURE_PLUGIN_DIR "/libtessera-fixture-c.so");
    return r;
  }();
  return *registry;
}

// Replaces every occurrence of `from` in `text`.
std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

// The heterogeneous manifest with its swiglu and linear blocks pinned to the C plugin.
std::string c_manifest_text(const std::string& extra = "") {
  std::string text = hetero_manifest_text();
  text =
      replace_all(text, "kind = \"swiglu\"", "kind = \"swiglu\", plugin = \"tessera-fixture-c\"");
  text =
      replace_all(text, "kind = \"linear\"", "kind = \"linear\", plugin = \"tessera-fixture-c\"");
  return text + extra;
}

std::vector<float> logits_of(const Manifest& manifest, const WeightStore& weights,
                             const std::vector<int32_t>& prompt) {
  ThreadPool pool(1);
  Model model(manifest, registry_with_c(), weights, pool);
  return run_logits(model, one_sequence(prompt));
}

const std::vector<int32_t> kPrompt{1, 17, 42, 99, 5, 0, 63, 100, 8, 23};

TEST(CPlugin, PinnedBlocksEqualTheCppBlocks) {
  const Manifest cxx = hetero_manifest();
  const Manifest c = parse_manifest(c_manifest_text(), "c.toml", ".");
  const WeightStore weights = init_random_weights(cxx, plugins(), 7);
  {
    ThreadPool pool(1);
    Model model(c, registry_with_c(), weights, pool);
    EXPECT_EQ(model.ffn(0).provider().plugin_name(), kCPlugin);        // swiglu
    EXPECT_EQ(model.ffn(4).provider().plugin_name(), kCPlugin);        // linear
    EXPECT_EQ(model.attention(2).provider().plugin_name(), kCPlugin);  // linear
    EXPECT_EQ(model.attention(0).provider().plugin_name(), "tessera-attention-cpu");
    EXPECT_EQ(model.ffn(4).info().kv_heads, 0);
  }
  const std::vector<float> want = logits_of(cxx, weights, kPrompt);
  ASSERT_GT(max_abs(want), 0.1f);
  EXPECT_LT(max_abs_diff(logits_of(c, weights, kPrompt), want), kTolerance);
}

TEST(CPlugin, ShardsOverTwoRanks) {
  const Manifest cxx = hetero_manifest();
  const WeightStore weights = init_random_weights(cxx, plugins(), 7);
  const std::vector<float> want = logits_of(cxx, weights, kPrompt);
  std::vector<std::vector<float>> got(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      try {
        const Manifest m = parse_manifest(
            c_manifest_text("\n[runtime.parallel]\nkind = \"local\"\nworld = 2\nrank = " +
                            std::to_string(r) + "\ngroup = \"c-plugin\"\ntimeout_s = 30\n"),
            "c2.toml", ".");
        got[static_cast<size_t>(r)] = logits_of(m, weights, kPrompt);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (std::thread& t : ranks) t.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
    EXPECT_LT(max_abs_diff(got[static_cast<size_t>(r)], want), kTolerance) << "rank " << r;
  }
}

TEST(CPlugin, ItsDeclarationsAndErrorsReachTheHost) {
  // A weight of the wrong shape: the host checks it against what the C plugin declared
  // (describe, written in C) before the block is made, naming both shapes and the block.
  const Manifest c = parse_manifest(c_manifest_text(), "c.toml", ".");
  WeightStore weights = init_random_weights(hetero_manifest(), plugins(), 7);
  weights.add("model.layers.0.mlp.gate_proj.weight", Tensor({96, 32}, TS_F32));
  ThreadPool pool(1);
  try {
    Model model(c, registry_with_c(), weights, pool);
    FAIL() << "a gate_proj of the wrong shape was accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("has shape [96, 32]; expected [96, 64], as layer 0 ffn swiglu "
                           "(tessera-fixture-c)"),
              std::string::npos)
        << message;
  }
  // A parameter the C plugin refuses: its own message, behind the block's manifest place.
  const Manifest bad =
      parse_manifest(replace_all(c_manifest_text(),
                                 "ffn = { kind = \"swiglu\", plugin = \"tessera-fixture-c\" }\n\n"
                                 "[[layers]]\nrange = \"1\"",
                                 "ffn = { kind = \"swiglu\", plugin = \"tessera-fixture-c\", "
                                 "intermediate_size = -5 }\n\n[[layers]]\nrange = \"1\""),
                     "bad.toml", ".");
  try {
    Model model(bad, registry_with_c(), weights, pool);
    FAIL() << "intermediate_size -5 was accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("bad.toml:"), std::string::npos) << message;
    EXPECT_NE(message.find("fixture-c swiglu: intermediate_size must be positive, got -5"),
              std::string::npos)
        << message;
  }
}

}  // namespace
}  // namespace tessera::test
