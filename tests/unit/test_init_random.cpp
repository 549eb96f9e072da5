// Random weights drawn from what the blocks declare, built-in shapes and load_weights.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/formats/safetensors.hpp>

#include "model_fixtures.hpp"

namespace tessera {
namespace {

using Plan = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// The plan's tensors as (name, shape), sorted by name.
Plan planned(const Manifest& m, const PluginRegistry& registry = test::plugins()) {
  Plan out;
  for (const PlannedTensor& t : plan_weights(m, registry).tensors)
    out.emplace_back(t.name, t.shape);
  return out;
}

WeightStore random_weights(const Manifest& m, uint64_t seed) {
  return init_random_weights(m, test::plugins(), seed);
}

BlockSpec block(const std::string& kind) {
  BlockSpec b;
  b.kind = kind;
  return b;
}

// hidden 16, 4 heads of 4, 2 KV heads, FFN 24, vocab 32; layer 0 gqa+swiglu,
// layer 1 linear+noop, layer 2 noop+linear, layer 3 gqa with its own kv_heads 1.
Manifest tiny_manifest() {
  Manifest m;
  m.model.name = "tiny";
  m.model.hidden_size = 16;
  m.model.num_heads = 4;
  m.model.num_kv_heads = 2;
  m.model.head_dim = 4;
  m.model.intermediate_size = 24;
  m.model.vocab_size = 32;
  m.model.num_layers = 4;
  m.weights.format = "random";
  m.weights.seed = 11;
  m.layers.resize(4);
  m.layers[0] = LayerSpec{block("gqa"), block("swiglu")};
  m.layers[1] = LayerSpec{block("linear"), block("noop")};
  m.layers[2] = LayerSpec{block("noop"), block("linear")};
  m.layers[3] = LayerSpec{block("gqa"), block("swiglu")};
  m.layers[3].attention.params.set("kv_heads", int64_t{1});
  m.layers[3].ffn.params.set("intermediate_size", int64_t{8});
  return m;
}

std::map<std::string, std::vector<int64_t>> as_map(const Plan& plan) {
  return {plan.begin(), plan.end()};
}

int64_t total_elements(const Plan& plan) {
  int64_t total = 0;
  for (const auto& [name, shape] : plan) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    total += n;
  }
  return total;
}

TEST(InitRandomTest, PlansHuggingFaceNamesAndShapes) {
  const Plan plan = planned(tiny_manifest());
  for (size_t i = 1; i < plan.size(); ++i) EXPECT_LT(plan[i - 1].first, plan[i].first);
  using S = std::vector<int64_t>;
  const std::map<std::string, S> expected = {
      {"model.embed_tokens.weight", S{32, 16}},
      {"lm_head.weight", S{32, 16}},
      {"model.norm.weight", S{16}},
      {"model.layers.0.input_layernorm.weight", S{16}},
      {"model.layers.0.self_attn.q_proj.weight", S{16, 16}},
      {"model.layers.0.self_attn.k_proj.weight", S{8, 16}},
      {"model.layers.0.self_attn.v_proj.weight", S{8, 16}},
      {"model.layers.0.self_attn.o_proj.weight", S{16, 16}},
      {"model.layers.0.post_attention_layernorm.weight", S{16}},
      {"model.layers.0.mlp.gate_proj.weight", S{24, 16}},
      {"model.layers.0.mlp.up_proj.weight", S{24, 16}},
      {"model.layers.0.mlp.down_proj.weight", S{16, 24}},
      {"model.layers.1.input_layernorm.weight", S{16}},
      {"model.layers.1.self_attn.linear_attn.weight", S{16, 16}},
      {"model.layers.2.post_attention_layernorm.weight", S{16}},
      {"model.layers.2.mlp.linear_mlp.weight", S{16, 16}},
      {"model.layers.3.input_layernorm.weight", S{16}},
      {"model.layers.3.self_attn.q_proj.weight", S{16, 16}},
      {"model.layers.3.self_attn.k_proj.weight", S{4, 16}},
      {"model.layers.3.self_attn.v_proj.weight", S{4, 16}},
      {"model.layers.3.self_attn.o_proj.weight", S{16, 16}},
      {"model.layers.3.post_attention_layernorm.weight", S{16}},
      {"model.layers.3.mlp.gate_proj.weight", S{8, 16}},
      {"model.layers.3.mlp.up_proj.weight", S{8, 16}},
      {"model.layers.3.mlp.down_proj.weight", S{16, 8}},
  };
  EXPECT_EQ(as_map(plan), expected);

  Manifest tied = tiny_manifest();
  tied.model.tie_embeddings = true;
  EXPECT_EQ(as_map(planned(tied)).count("lm_head.weight"), 0u);
}

TEST(InitRandomTest, CreatesThePlannedTensorsInF32) {
  const Manifest m = tiny_manifest();
  const WeightStore w = random_weights(m, 5);
  const Plan plan = planned(m);
  ASSERT_EQ(w.all().size(), plan.size());
  for (const auto& [name, shape] : plan) {
    ASSERT_TRUE(w.has(name)) << name;
    EXPECT_EQ(w.get(name).shape(), shape) << name;
    EXPECT_EQ(w.get(name).dtype(), TS_F32) << name;
  }
  EXPECT_NE(w.source.find("random"), std::string::npos);
}

TEST(InitRandomTest, SameSeedSameBytesOtherSeedOtherBytes) {
  const Manifest m = tiny_manifest();
  const WeightStore a = random_weights(m, 123);
  const WeightStore b = random_weights(m, 123);
  const WeightStore c = random_weights(m, 124);
  for (const auto& [name, t] : a.all()) {
    EXPECT_EQ(std::memcmp(t.raw(), b.get(name).raw(), t.bytes()), 0) << name;
    EXPECT_NE(std::memcmp(t.raw(), c.get(name).raw(), t.bytes()), 0) << name;
  }
  // Tensors of the same shape still differ from each other (each has its own stream).
  EXPECT_NE(std::memcmp(a.get("model.layers.0.self_attn.k_proj.weight").raw(),
                        a.get("model.layers.0.self_attn.v_proj.weight").raw(), 8 * 16 * 4),
            0);
}

TEST(InitRandomTest, AddingALayerLeavesOtherTensorsUnchanged) {
  Manifest small = tiny_manifest();
  Manifest bigger = tiny_manifest();
  bigger.model.num_layers = 5;
  bigger.layers.push_back(LayerSpec{block("gqa"), block("swiglu")});
  const WeightStore a = random_weights(small, 9);
  const WeightStore b = random_weights(bigger, 9);
  EXPECT_GT(b.all().size(), a.all().size());
  for (const auto& [name, t] : a.all()) {
    ASSERT_TRUE(b.has(name)) << name;
    EXPECT_EQ(std::memcmp(t.raw(), b.get(name).raw(), t.bytes()), 0) << name;
  }
}

// Mean and standard deviation of a tensor's elements.
std::pair<double, double> moments(const Tensor& t) {
  double sum = 0, sum_sq = 0;
  const float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    sum += p[i];
    sum_sq += static_cast<double>(p[i]) * p[i];
  }
  const double mean = sum / static_cast<double>(t.numel());
  return {mean, std::sqrt(sum_sq / static_cast<double>(t.numel()) - mean * mean)};
}

TEST(InitRandomTest, ScalesKeepActivationsOrderOne) {
  Manifest m = tiny_manifest();
  m.model.hidden_size = 64;
  m.model.head_dim = 16;
  m.model.intermediate_size = 256;
  m.model.vocab_size = 512;
  m.layers.resize(1);
  m.model.num_layers = 1;
  const WeightStore w = random_weights(m, 1);
  const auto [q_mean, q_std] = moments(w.get("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_NEAR(q_mean, 0.0, 0.01);
  EXPECT_NEAR(q_std, 1.0 / 8.0, 0.01);  // 1/sqrt(fan_in = 64)
  const auto [d_mean, d_std] = moments(w.get("model.layers.0.mlp.down_proj.weight"));
  EXPECT_NEAR(d_std, 1.0 / 16.0, 0.005);  // fan_in 256
  const auto [e_mean, e_std] = moments(w.get("model.embed_tokens.weight"));
  EXPECT_NEAR(e_std, 1.0 / 8.0, 0.005);  // 1/sqrt(hidden)
  const auto [n_mean, n_std] = moments(w.get("model.norm.weight"));
  EXPECT_NEAR(n_mean, 1.0, 0.05);
  EXPECT_NEAR(n_std, 0.1, 0.04);
}

TEST(InitRandomTest, BadBlockParametersAreErrors) {
  // The blocks' own describe refuses them; a manifest built in code has no location, so the
  // error is a ModelError naming the layer and the plugin.
  Manifest m = tiny_manifest();
  m.layers[0].attention.params.set("kv_heads", int64_t{0});
  EXPECT_THROW(planned(m), ModelError);
  m = tiny_manifest();
  m.layers[0].ffn.params.set("intermediate_size", std::string("big"));
  try {
    planned(m);
    FAIL() << "expected a ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("intermediate_size"), std::string::npos) << e.what();
  }
  m = tiny_manifest();
  m.model.intermediate_size = 0;
  try {
    planned(m);
    FAIL() << "expected a ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("layer 0"), std::string::npos) << e.what();
  }
}

TEST(InitRandomTest, UnknownKindGetsItsNormOnly) {
  // The tree-blind gqa fixture has no describe: its tensors are unknown to the plan.
  PluginRegistry registry;
  registry.add_search_path(TESSERA_PLUGIN_DIR);
  registry.load_all();
  registry.load(std::filesystem::path(TESSERA_FIXTURE_PLUGIN_DIR) /
                "libtessera-fixture-wrong-attention.so");
  Manifest m = tiny_manifest();
  m.layers[0].attention.plugin = "tessera-fixture-wrong-attention";
  const auto plan = as_map(planned(m, registry));
  EXPECT_EQ(plan.count("model.layers.0.input_layernorm.weight"), 1u);
  EXPECT_EQ(plan.count("model.layers.0.self_attn.q_proj.weight"), 0u);
  EXPECT_EQ(plan.count("model.layers.3.self_attn.q_proj.weight"), 1u);  // the cpu gqa declares
  const WeightPlan full = plan_weights(m, registry);
  ASSERT_EQ(full.undeclared().size(), 1u);
  EXPECT_EQ(full.undeclared()[0]->label, "layer 0 attention gqa (tessera-fixture-wrong-attention)");
  const WeightStore w = init_random_weights(full, 3);
  EXPECT_TRUE(w.has("model.layers.0.input_layernorm.weight"));
  EXPECT_FALSE(w.has("model.layers.0.self_attn.q_proj.weight"));
}

TEST(InitRandomTest, Smollm2ShapePlan) {
  const Manifest m = builtin_shape("smollm2-135m");
  EXPECT_EQ(m.model.hidden_size, 576);
  EXPECT_EQ(m.model.num_layers, 30);
  ASSERT_EQ(m.layers.size(), 30u);
  EXPECT_EQ(m.layers[29].attention.kind, "gqa");
  EXPECT_EQ(m.layers[29].ffn.kind, "swiglu");
  EXPECT_TRUE(m.model.tie_embeddings);
  EXPECT_EQ(m.model.rope_theta, 100000.0);
  EXPECT_EQ(m.model.bos_token_id, 1);
  EXPECT_EQ(m.model.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(m.weights.format, "random");
  const Plan plan = planned(m);
  EXPECT_EQ(plan.size(), 2u + 30u * 9u);
  EXPECT_EQ(plan_weights(m, test::plugins()).parameters(), 134515008);
  const auto shapes = as_map(plan);
  EXPECT_EQ(shapes.at("model.layers.7.self_attn.k_proj.weight"), (std::vector<int64_t>{192, 576}));
  EXPECT_EQ(shapes.at("model.layers.7.mlp.down_proj.weight"), (std::vector<int64_t>{576, 1536}));
  EXPECT_EQ(shapes.at("model.embed_tokens.weight"), (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(total_elements(plan), 134515008);  // SmolLM2-135M's published parameter count
}

TEST(InitRandomTest, Llama8bShapePlanWithoutAllocating) {
  const Manifest m = builtin_shape("llama-3.1-8b");
  EXPECT_FALSE(m.model.tie_embeddings);
  EXPECT_EQ(m.model.eos_token_ids, (std::vector<int64_t>{128001, 128009}));
  EXPECT_EQ(m.model.bos_token_id, 128000);
  EXPECT_EQ(m.model.rope_theta, 500000.0);
  const Plan plan = planned(m);
  EXPECT_EQ(plan.size(), 3u + 32u * 9u);
  const auto shapes = as_map(plan);
  EXPECT_EQ(shapes.at("lm_head.weight"), (std::vector<int64_t>{128256, 4096}));
  EXPECT_EQ(shapes.at("model.layers.31.self_attn.v_proj.weight"),
            (std::vector<int64_t>{1024, 4096}));
  EXPECT_EQ(shapes.at("model.layers.0.mlp.gate_proj.weight"), (std::vector<int64_t>{14336, 4096}));
  EXPECT_EQ(total_elements(plan), 8030261248);  // Llama 3.1 8B's parameter count
}

TEST(InitRandomTest, BuiltinNamesAndUnknownName) {
  const auto names = builtin_shape_names();
  ASSERT_EQ(names.size(), 2u);
  for (const auto& n : names) EXPECT_EQ(builtin_shape(n).model.name, n);
  try {
    (void)builtin_shape("gpt-5");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'gpt-5'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("smollm2-135m"), std::string::npos) << msg;
    EXPECT_NE(msg.find("llama-3.1-8b"), std::string::npos) << msg;
  }
}

TEST(InitRandomTest, LoadWeightsPicksTheSource) {
  Manifest m = tiny_manifest();
  // Without the plugins the draw waits for the model; with them it happens here.
  const WeightStore deferred = load_weights(m);
  EXPECT_TRUE(deferred.all().empty());
  EXPECT_NE(deferred.source.find("random weights (seed 11)"), std::string::npos);
  const WeightStore random = load_weights(m, &test::plugins());
  const WeightStore direct = random_weights(m, m.weights.seed);
  const Tensor& q = random.get("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(
      std::memcmp(q.raw(), direct.get("model.layers.0.self_attn.q_proj.weight").raw(), q.bytes()),
      0);

  const auto path = std::filesystem::temp_directory_path() /
                    ("tessera_init_random_" + std::to_string(::getpid()) + ".safetensors");
  write_safetensors(path, random);
  m.weights.format = "safetensors";
  m.weights.path = path;
  const WeightStore from_file = load_weights(m);
  EXPECT_EQ(from_file.source, path.string());
  EXPECT_EQ(from_file.all().size(), random.all().size());
  EXPECT_EQ(std::memcmp(from_file.get("model.norm.weight").raw(),
                        random.get("model.norm.weight").raw(), 16 * 4),
            0);
  std::filesystem::remove(path);

  m.weights.format = "onnx";
  try {
    (void)load_weights(m);
    FAIL() << "expected a ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("'onnx'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera
