// The weight plan: what each block's provider declares (describe), the checks of those
// declarations and of the parameters behind them (with the block's place in its manifest),
// and what the model derives from the plan: random weights, the shape checks at load, the
// KV cache.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::test {
namespace {

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// Two layers; layer 1's blocks are given as TOML lines (the attention on line 22, the ffn on
// line 23 when both are given).
std::string plan_text(const std::string& layer1, const std::string& model_extra = "") {
  return R"([model]
name = "plan"
hidden_size = 32
num_layers = 2
num_heads = 4
num_kv_heads = 2
intermediate_size = 48
vocab_size = 40
max_seq_len = 32
)" + model_extra +
         R"(
[weights]
format = "random"
seed = 5

[[layers]]
range = "0"
attention = { kind = "gqa", kv_heads = 4 }
ffn = { kind = "swiglu" }

[[layers]]
range = "1"
)" + layer1;
}

Manifest plan_manifest(const std::string& layer1) {
  return parse_manifest(plan_text(layer1), "plan.toml", ".");
}

// The ManifestError planning `m` throws; fails the test when it plans.
ManifestError plan_error(const Manifest& m, const PluginRegistry& registry = plugins()) {
  try {
    (void)plan_weights(m, registry);
  } catch (const ManifestError& e) {
    return e;
  }
  ADD_FAILURE() << "expected a ManifestError";
  return ManifestError("", 0, 0, "");
}

TEST(WeightPlan, TheBuiltInKindsDeclareTheirTensorsAndCaches) {
  const Manifest m = hetero_manifest();
  const WeightPlan plan = plan_weights(m, plugins());
  ASSERT_EQ(plan.attention.size(), 6u);
  ASSERT_EQ(plan.ffn.size(), 6u);
  EXPECT_TRUE(plan.undeclared().empty());
  for (size_t i = 1; i < plan.tensors.size(); ++i)
    EXPECT_LT(plan.tensors[i - 1].name, plan.tensors[i].name);

  const PlannedBlock& gqa = plan.block(0, TS_KIND_ATTENTION);
  EXPECT_EQ(gqa.label, "layer 0 attention gqa (tessera-attention-cpu)");
  EXPECT_EQ(gqa.prefix, "model.layers.0.self_attn.");
  EXPECT_EQ(gqa.norm, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(gqa.where(), "hetero-test.toml:" + std::to_string(gqa.spec.where.line) + ":13");
  EXPECT_EQ(gqa.kv().kv_heads, 4);
  EXPECT_EQ(gqa.kv().head_dim, 16);
  EXPECT_EQ(gqa.kv().dtype, TS_F32);
  EXPECT_EQ(gqa.parameters(), 2 * 64 * 64 + 2 * 64 * 64);
  EXPECT_EQ(plan.block(1, TS_KIND_ATTENTION).kv().kv_heads, 1);
  EXPECT_EQ(plan.block(2, TS_KIND_ATTENTION).kv().kv_heads, 0);  // linear
  EXPECT_TRUE(plan.block(3, TS_KIND_ATTENTION).identity());      // noop
  EXPECT_TRUE(plan.block(3, TS_KIND_ATTENTION).norm.empty());
  EXPECT_TRUE(plan.block(5, TS_KIND_FFN).identity());
  EXPECT_EQ(plan.block(3, TS_KIND_FFN).parameters(), 3 * 40 * 64);  // its own width

  const PlannedTensor* q = plan.find("model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->local, "q_proj.weight");
  EXPECT_EQ(q->shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(q->split, TS_SPLIT_ROWS);
  EXPECT_EQ(q->init, TS_INIT_LINEAR);
  EXPECT_EQ(q->layer, 0);
  EXPECT_EQ(q->kind, TS_KIND_ATTENTION);
  EXPECT_EQ(q->owner, gqa.label);
  EXPECT_EQ(plan.find("model.layers.0.self_attn.k_proj.weight")->shape,
            (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(plan.find("model.layers.1.self_attn.k_proj.weight")->shape,
            (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(plan.find("model.layers.0.self_attn.o_proj.weight")->split, TS_SPLIT_COLUMNS);
  EXPECT_EQ(plan.find("model.layers.0.mlp.gate_proj.weight")->split, TS_SPLIT_ROWS);
  EXPECT_EQ(plan.find("model.layers.0.mlp.down_proj.weight")->split, TS_SPLIT_COLUMNS);
  EXPECT_EQ(plan.find("model.layers.2.self_attn.linear_attn.weight")->split, TS_SPLIT_COLUMNS);
  EXPECT_EQ(plan.find("model.layers.4.mlp.linear_mlp.weight")->shape,
            (std::vector<int64_t>{64, 64}));
  const PlannedTensor* norm = plan.find("model.layers.4.post_attention_layernorm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->init, TS_INIT_NORM);
  EXPECT_TRUE(norm->local.empty());
  EXPECT_EQ(norm->owner, "layer 4 ffn norm");
  const PlannedTensor* embed = plan.find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->init, TS_INIT_NORMAL);
  EXPECT_FLOAT_EQ(embed->init_scale, 0.125f);                              // 1 / sqrt(hidden)
  EXPECT_EQ(plan.find("model.layers.3.input_layernorm.weight"), nullptr);  // noop: no norm
  EXPECT_EQ(plan.find("model.layers.5.post_attention_layernorm.weight"), nullptr);

  // The random weights are exactly the plan's tensors; the cache is the declared one.
  const WeightStore w = init_random_weights(plan, 7);
  ASSERT_EQ(w.all().size(), plan.tensors.size());
  int64_t elements = 0;
  for (const auto& [name, t] : w.all()) elements += t.numel();
  EXPECT_EQ(plan.parameters(), elements);
  Model model(m, plugins(), w, test_pool());
  EXPECT_EQ(plan.kv_bytes_per_token(), model.kv_cache().bytes_per_token());
  for (int32_t layer = 0; layer < 6; ++layer) {
    EXPECT_EQ(model.kv_cache().has_layer(layer),
              plan.block(layer, TS_KIND_ATTENTION).kv().kv_heads > 0);
    EXPECT_EQ(model.attention(layer).info().parameters,
              plan.block(layer, TS_KIND_ATTENTION).parameters());
    EXPECT_EQ(model.ffn(layer).info().parameters, plan.block(layer, TS_KIND_FFN).parameters());
  }
}

TEST(WeightPlan, KvHeadsArePerRankAndSplitsThatDoNotFitDecline) {
  Manifest m = plan_manifest("attention = { kind = \"gqa\", kv_heads = 1 }\n");
  ts_comm comm{};
  comm.struct_size = sizeof(ts_comm);
  comm.rank = 1;
  comm.world = 2;
  PlanOptions options;
  options.comm = &comm;
  const WeightPlan two = plan_weights(m, plugins(), options);
  EXPECT_EQ(two.block(0, TS_KIND_ATTENTION).kv().kv_heads, 2);  // 4 KV heads over 2 ranks
  EXPECT_EQ(two.block(1, TS_KIND_ATTENTION).kv().kv_heads, 1);  // 1 KV head, held by both
  // The tensors are declared whole, whatever the ranks.
  EXPECT_EQ(two.find("model.layers.0.self_attn.k_proj.weight")->shape,
            (std::vector<int64_t>{32, 32}));
  comm.world = 4;
  comm.rank = 3;
  EXPECT_EQ(plan_weights(m, plugins(), options).block(0, TS_KIND_ATTENTION).kv().kv_heads, 1);

  comm.world = 3;
  comm.rank = 0;
  const std::string message = error_of([&] { (void)plan_weights(m, plugins(), options); });
  EXPECT_HAS(message, "layer 0 attention 'gqa' (plan.toml:17:13): its only provider declined it");
  EXPECT_HAS(message, "num_heads 4 cannot be split over 3 ranks");
}

TEST(WeightPlan, GqaKvHeadsThatDoNotDivideTheHeadsNameTheirPlace) {
  // The checks the manifest reader used to make for gqa and swiglu are the plugins' own now
  // (describe), at the block's file:line:column.
  const Manifest m = plan_manifest("attention = { kind = \"gqa\", kv_heads = 3 }\n");
  const ManifestError e = plan_error(m);
  EXPECT_EQ(e.file, "plan.toml");
  EXPECT_EQ(e.line, 22);
  EXPECT_EQ(e.column, 13);
  EXPECT_HAS(e.what(), "plan.toml:22:13: layer 1 attention gqa (tessera-attention-cpu)");
  EXPECT_HAS(e.what(), "kv_heads 3 does not divide num_heads 4");
  // The model refuses it the same way, before reading any weight.
  const std::string model_error =
      error_of([&] { Model model(m, plugins(), WeightStore{}, test_pool()); });
  EXPECT_HAS(model_error, "plan.toml:22:13:");
  EXPECT_HAS(model_error, "kv_heads 3 does not divide num_heads 4");

  EXPECT_HAS(plan_error(plan_manifest("attention = { kind = \"gqa\", kv_heads = 0 }\n")).what(),
             "plan.toml:22:13: layer 1 attention gqa");
  EXPECT_HAS(plan_error(plan_manifest("attention = { kind = \"gqa\", kv_heads = 0 }\n")).what(),
             "kv_heads 0 and head_dim 8 must all be positive");
  EXPECT_HAS(
      plan_error(plan_manifest("attention = { kind = \"gqa\", kv_heads = \"two\" }\n")).what(),
      "parameter 'kv_heads' must be an integer");
  const ManifestError width =
      plan_error(plan_manifest("ffn = { kind = \"swiglu\", intermediate_size = 0 }\n"));
  EXPECT_EQ(width.line, 22);
  EXPECT_EQ(width.column, 7);
  EXPECT_HAS(width.what(), "layer 1 ffn swiglu (tessera-ffn-cpu)");
  EXPECT_HAS(width.what(), "intermediate_size must be positive, got 0");
  // A swiglu with no size anywhere: the omitted block is located at its [[layers]] entry.
  std::string text = plan_text("");
  text.replace(text.find("intermediate_size = 48\n"), 23, "");
  text.replace(text.find("ffn = { kind = \"swiglu\" }"), 25,
               "ffn = { kind = \"swiglu\", intermediate_size = 48 }");
  const ManifestError nowhere = plan_error(parse_manifest(text, "plan.toml", "."));
  EXPECT_EQ(nowhere.line, 19);
  EXPECT_EQ(nowhere.column, 1);
  EXPECT_HAS(nowhere.what(), "layer 1 ffn swiglu (tessera-ffn-cpu)");
  EXPECT_HAS(nowhere.what(), "intermediate_size must be positive, got 0");
}

TEST(WeightPlan, DescribeOutputIsChecked) {
  const PluginRegistry& registry = fixture_plugins();
  auto error_for = [&](const std::string& kind) {
    return plan_error(plan_manifest("ffn = { kind = \"" + kind + "\" }\n"), registry);
  };
  const ManifestError dup = error_for("affine-dup");
  EXPECT_EQ(dup.line, 22);
  EXPECT_HAS(dup.what(), "layer 1 ffn affine-dup (fixture-describe)");
  EXPECT_HAS(dup.what(), "declares 'scale.weight' twice");
  EXPECT_HAS(error_for("affine-zero-dim").what(),
             "weight #1 ('shift.weight') has dimension 1 = 0; expected > 0");
  EXPECT_HAS(error_for("affine-kv").what(),
             "describe declares a KV cache of 2 heads for an FFN block");
  const ManifestError refused = error_for("affine-refuses");
  EXPECT_EQ(refused.line, 22);
  EXPECT_EQ(refused.column, 7);
  EXPECT_HAS(refused.what(), "layer 1 ffn affine-refuses (fixture-describe)");
  EXPECT_HAS(refused.what(), "parameter 'alpha' must be > 0");
  EXPECT_NO_THROW((void)plan_weights(
      plan_manifest("ffn = { kind = \"affine-refuses\", alpha = 1.5 }\n"), registry));
}

TEST(WeightPlan, InfoThatContradictsDescribeIsRefused) {
  const Manifest m = plan_manifest("ffn = { kind = \"affine-lies\" }\n");
  const std::string message =
      error_of([&] { Model model(m, fixture_plugins(), WeightStore{}, test_pool()); });
  EXPECT_HAS(message,
             "layer 1 ffn affine-lies (fixture-describe) (plan.toml:22:7): info() "
             "reports flags 0");
  EXPECT_HAS(message, "but describe declared flags 1");
}

TEST(WeightPlan, EveryDeclaredWeightIsDrawnByItsLaw) {
  // affine declares 23 weights, more than the host's first room for 16: the two-call
  // protocol of describe gets them all.
  const Manifest m = plan_manifest("ffn = { kind = \"affine\" }\n");
  const WeightPlan plan = plan_weights(m, fixture_plugins());
  EXPECT_EQ(plan.block(1, TS_KIND_FFN).layout->weights.size(), 23u);
  ASSERT_NE(plan.find("model.layers.1.mlp.pad.19"), nullptr);
  const WeightStore w = init_random_weights(plan, 9);
  const Tensor& scale = w.get("model.layers.1.mlp.scale.weight");
  const Tensor& shift = w.get("model.layers.1.mlp.shift.weight");
  for (int64_t i = 0; i < 32; ++i) {
    EXPECT_EQ(scale.data<float>()[i], 1.0f);
    EXPECT_EQ(shift.data<float>()[i], 0.0f);
  }
  EXPECT_EQ(w.get("model.layers.1.mlp.pad.7").data<float>()[0], 0.0f);
  const Tensor& noise = w.get("model.layers.1.mlp.noise.weight");
  double sum_sq = 0;
  for (int64_t i = 0; i < 32; ++i)
    sum_sq += static_cast<double>(noise.data<float>()[i]) * noise.data<float>()[i];
  EXPECT_NEAR(std::sqrt(sum_sq / 32), 0.5, 0.2);  // init_scale 0.5
  // And the model runs on them, drawn when it is built.
  Model model(m, fixture_plugins(), WeightStore{}, test_pool());
  EXPECT_GT(max_abs(run_logits(model, one_sequence({1, 2, 3}))), 0.0f);
}

TEST(WeightPlan, BlocksSharingAPrefixMustDeclareTheSameTensors) {
  std::string shared = plan_text("ffn = { kind = \"swiglu\", prefix = \"shared.mlp.\" }\n");
  shared.replace(shared.find("ffn = { kind = \"swiglu\" }"), 25,
                 "ffn = { kind = \"swiglu\", prefix = \"shared.mlp.\" }");
  const Manifest m = parse_manifest(shared, "plan.toml", ".");
  const WeightPlan plan = plan_weights(m, plugins());
  EXPECT_NE(plan.find("shared.mlp.gate_proj.weight"), nullptr);
  EXPECT_EQ(plan.find("model.layers.1.mlp.gate_proj.weight"), nullptr);
  // One tensor read by both layers; the norms stay per layer.
  EXPECT_NE(plan.find("model.layers.1.post_attention_layernorm.weight"), nullptr);
  Model model(m, plugins(), WeightStore{}, test_pool());
  EXPECT_EQ(run_logits(model, one_sequence({3, 4})).size(), 2u * 40u);

  std::string clash = shared;
  clash.replace(clash.rfind("prefix = \"shared.mlp.\""), 22,
                "prefix = \"shared.mlp.\", intermediate_size = 16");
  const ManifestError e = plan_error(parse_manifest(clash, "plan.toml", "."));
  EXPECT_EQ(e.line, 22);
  EXPECT_HAS(e.what(),
             "weight 'shared.mlp.gate_proj.weight' is declared by layer 1 ffn swiglu "
             "(tessera-ffn-cpu) with shape [16, 32] and by layer 0 ffn swiglu");
  EXPECT_HAS(e.what(), "blocks that share a prefix must declare the same tensors");
}

TEST(ModelWeights, AMissingOrMisshapenDeclaredTensorIsNamedWithItsBlock) {
  const Manifest m = hetero_manifest();
  const WeightStore weights = init_random_weights(m, plugins(), 7);
  WeightStore partial;
  for (const auto& [name, t] : weights.all())
    if (name != "model.layers.1.self_attn.k_proj.weight") partial.add(name, t);
  const std::string missing = error_of([&] { Model model(m, plugins(), partial, test_pool()); });
  EXPECT_HAS(missing,
             "hetero-test.toml: weight 'model.layers.1.self_attn.k_proj.weight' is "
             "missing from 'random weights (seed 7)'");
  EXPECT_HAS(missing, "layer 1 attention gqa (tessera-attention-cpu) (hetero-test.toml:");
  EXPECT_HAS(missing, "reads it as 'k_proj.weight' with shape [16, 64]");

  WeightStore misshapen = weights;
  misshapen.add("model.layers.1.self_attn.k_proj.weight", Tensor({32, 64}, TS_F32));
  misshapen.set_origin("model.layers.1.self_attn.k_proj.weight", "'k.safetensors'");
  const std::string shape = error_of([&] { Model model(m, plugins(), misshapen, test_pool()); });
  EXPECT_HAS(shape,
             "weight 'model.layers.1.self_attn.k_proj.weight' ('k.safetensors') has shape "
             "[32, 64]; expected [16, 64], as layer 1 attention gqa "
             "(tessera-attention-cpu)");
}

TEST(ModelWeights, ADtypeNoBlockTakesNamesTheTensorAndItsFile) {
  const Manifest m = hetero_manifest();
  WeightStore weights = init_random_weights(m, plugins(), 7);
  weights.add("model.layers.1.self_attn.k_proj.weight", Tensor({16, 64}, TS_I32));
  weights.set_origin("model.layers.1.self_attn.k_proj.weight", "'k.safetensors'");
  const std::string message = error_of([&] { Model model(m, plugins(), weights, test_pool()); });
  EXPECT_HAS(message,
             "weight 'model.layers.1.self_attn.k_proj.weight' ('k.safetensors') has dtype i32; "
             "expected f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k or q6_k, as layer 1 attention "
             "gqa (tessera-attention-cpu)");
  WeightStore head = init_random_weights(m, plugins(), 7);
  head.add("model.norm.weight", Tensor({64}, TS_U8));
  EXPECT_HAS(error_of([&] { Model model(m, plugins(), head, test_pool()); }),
             "weight 'model.norm.weight' (final norm, 'random weights (seed 7)') has dtype u8");
}

TEST(ModelWeights, ATensorNoBlockReadsIsRefusedWhenTheStoreAsksForIt) {
  const Manifest m = hetero_manifest();
  WeightStore weights = init_random_weights(m, plugins(), 7);
  weights.add("model.layers.1.self_attn.q_proj.bias", Tensor({64}, TS_F32));
  weights.set_origin("model.layers.1.self_attn.q_proj.bias", "'w.safetensors'");
  // Stores assembled in code (variants side by side) are taken as they are...
  EXPECT_NO_THROW(Model(m, plugins(), weights, test_pool()));
  // ... a manifest's own file is not: open_model sets refuse_unread.
  weights.refuse_unread = true;
  const std::string message = error_of([&] { Model model(m, plugins(), weights, test_pool()); });
  EXPECT_HAS(message,
             "tensor 'model.layers.1.self_attn.q_proj.bias' ('w.safetensors') is read "
             "by no block of the model");
  EXPECT_HAS(message, "unread = \"allow\" in [weights]");
  // What every block reads, a tied lm head and the derived RoPE table are not extra.
  WeightStore exact = init_random_weights(m, plugins(), 7);
  exact.add("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor({8}, TS_F32));
  exact.refuse_unread = true;
  EXPECT_NO_THROW(Model(m, plugins(), exact, test_pool()));
  Manifest allowing = m;
  allowing.weights.allow_unread = true;
  weights.refuse_unread = false;  // what open_model leaves for unread = "allow"
  EXPECT_NO_THROW(Model(allowing, plugins(), weights, test_pool()));
}

TEST(ModelWeights, RandomWeightsAreDrawnWhenTheModelIsBuilt) {
  const Manifest m = hetero_manifest();
  Model drawn(m, plugins(), WeightStore{}, test_pool());
  Model given(m, plugins(), init_random_weights(m, plugins(), m.weights.seed), test_pool());
  EXPECT_EQ(drawn.weights().source, "random weights (seed 7)");
  const std::vector<int32_t> prompt{5, 9, 13, 2};
  EXPECT_EQ(run_logits(drawn, one_sequence(prompt)), run_logits(given, one_sequence(prompt)));
}

TEST(ModelWeights, AKindWithoutDescribeCannotHaveRandomWeights) {
  // The tree-blind gqa declares nothing: random weights hold only its norm, and the model
  // says why its projections are missing.
  Manifest m = plan_manifest(
      "attention = { kind = \"gqa\", plugin = \"tessera-fixture-wrong-attention\" }\n");
  const std::string message =
      error_of([&] { Model model(m, fixture_plugins(), WeightStore{}, test_pool()); });
  EXPECT_HAS(message, "missing weight 'model.layers.1.self_attn.q_proj.weight'");
  EXPECT_HAS(message, "random weights (seed 5)");
  EXPECT_HAS(message,
             "layer 1 attention gqa (tessera-fixture-wrong-attention) declares no "
             "weights (its provider has no describe)");
  // With its weights given, the same block is fine: its cache is sized from its info().
  const WeightPlan plan = plan_weights(m, fixture_plugins());
  WeightStore w = init_random_weights(plan, 5);
  const WeightStore gqa = init_random_weights(plan_manifest(""), plugins(), 5);
  for (const char* local : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"}) {
    const std::string name = std::string("model.layers.1.self_attn.") + local;
    // num_kv_heads 2 of the model: the same shapes as the default gqa.
    w.add(name, gqa.get(name));
  }
  Model model(m, fixture_plugins(), w, test_pool());
  EXPECT_EQ(model.kv_cache().layer_shape(1).kv_heads, 2);
}

}  // namespace
}  // namespace tessera::test
