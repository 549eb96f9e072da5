// Model: assembly from a heterogeneous manifest, the forward loop against a
// by-hand reference, the KV cache, block swapping and the error paths.
#include "model_fixtures.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

// f32 everywhere, logits O(1..10): the blocks and the reference differ only in
// summation order, which stays far below this.
constexpr float kTolerance = 2e-4f;

class ModelTest : public ::testing::Test {
 protected:
  ModelTest() : manifest(hetero_manifest()), weights(init_random_weights(manifest, plugins(), 7)) {}

  Model make(ModelOptions options = {}) {
    return Model(manifest, plugins(), weights, test_pool(), options);
  }

  Manifest manifest;
  WeightStore weights;
  const std::vector<int32_t> prompt{1, 17, 42, 99, 5, 0, 63, 100, 8, 23};
};

TEST_F(ModelTest, HeterogeneousMatchesReference) {
  Model model = make();
  ASSERT_EQ(model.num_layers(), 6);
  const std::vector<float> logits = run_logits(model, one_sequence(prompt));
  ReferenceModel ref(manifest, weights);
  const std::vector<float> expected = ref.feed(prompt);
  ASSERT_GT(max_abs(expected), 0.1f);  // a meaningful comparison, not zeros against zeros
  EXPECT_LT(max_abs_diff(logits, expected), kTolerance);
  EXPECT_EQ(model.kv_cache().length(0), static_cast<int32_t>(prompt.size()));
}

TEST_F(ModelTest, TiedEmbeddingsMatchReference) {
  const Manifest tied = hetero_manifest("{ kind = \"swiglu\" }", true);
  const WeightStore w = init_random_weights(tied, plugins(), 3);
  ASSERT_FALSE(w.has("lm_head.weight"));
  Model model(tied, plugins(), w, test_pool());
  ReferenceModel ref(tied, w);
  EXPECT_LT(max_abs_diff(run_logits(model, one_sequence(prompt)), ref.feed(prompt)), kTolerance);
}

TEST_F(ModelTest, IncrementalDecodeMatchesFullRecompute) {
  Model full = make();
  const std::vector<float> all = run_logits(full, one_sequence(prompt));
  Model inc = make();
  const size_t vocab = static_cast<size_t>(inc.vocab());
  const size_t k = 4;
  const std::vector<int32_t> head(prompt.begin(), prompt.begin() + k);
  EXPECT_LT(max_abs_diff(run_logits(inc, one_sequence(head)), rows_of(all, vocab, 0, k)),
            kTolerance);
  for (size_t i = k; i < prompt.size(); ++i) {
    const std::vector<float> step = run_logits(inc, one_sequence({prompt[i]}));
    EXPECT_LT(max_abs_diff(step, rows_of(all, vocab, i, 1)), kTolerance) << "position " << i;
    EXPECT_EQ(inc.kv_cache().length(0), static_cast<int32_t>(i + 1));
  }
}

TEST_F(ModelTest, TwoSequencesInOneBatchEqualEachAlone) {
  const std::vector<int32_t> a{4, 8, 15, 16, 23, 42};
  const std::vector<int32_t> b{7, 7, 30};
  ModelOptions options;
  options.slots = 3;
  Model model = make(options);
  // Give slot 2 a history first so the sequences have different cached lengths.
  run_logits(model, one_sequence({9, 10}, 2));
  ForwardBatch batch;
  batch.slots = {2, 0};
  batch.offsets = {0, 6, 9};
  batch.tokens = a;
  batch.tokens.insert(batch.tokens.end(), b.begin(), b.end());
  const std::vector<float> together = run_logits(model, batch);

  const size_t vocab = static_cast<size_t>(model.vocab());
  Model alone = make();
  run_logits(alone, one_sequence({9, 10}));
  EXPECT_LT(max_abs_diff(rows_of(together, vocab, 0, 6), run_logits(alone, one_sequence(a))),
            kTolerance);
  alone.reset(0);
  EXPECT_LT(max_abs_diff(rows_of(together, vocab, 6, 3), run_logits(alone, one_sequence(b))),
            kTolerance);
  EXPECT_EQ(model.kv_cache().length(2), 8);
  EXPECT_EQ(model.kv_cache().length(0), 3);
  EXPECT_EQ(model.kv_cache().length(1), 0);
}

TEST_F(ModelTest, LastOnlyEqualsLastRowsOfFullOutput) {
  ModelOptions options;
  options.slots = 2;
  ForwardBatch batch;
  batch.slots = {0, 1};
  batch.offsets = {0, 7, 10};
  batch.tokens = prompt;
  Model full = make(options);
  const size_t vocab = static_cast<size_t>(full.vocab());
  const size_t hidden = static_cast<size_t>(full.hidden());
  std::vector<float> logits(10 * vocab), hid(10 * hidden);
  full.forward(batch, logits.data(), hid.data());

  Model last = make(options);
  batch.last_only = true;
  std::vector<float> last_logits(2 * vocab), last_hidden(2 * hidden);
  last.forward(batch, last_logits.data(), last_hidden.data());
  EXPECT_EQ(rows_of(last_logits, vocab, 0, 1), rows_of(logits, vocab, 6, 1));
  EXPECT_EQ(rows_of(last_logits, vocab, 1, 1), rows_of(logits, vocab, 9, 1));
  EXPECT_EQ(rows_of(last_hidden, hidden, 0, 1), rows_of(hid, hidden, 6, 1));
  EXPECT_EQ(rows_of(last_hidden, hidden, 1, 1), rows_of(hid, hidden, 9, 1));
  EXPECT_EQ(last.kv_cache().length(0), 7);
  EXPECT_EQ(last.kv_cache().length(1), 3);
}

TEST_F(ModelTest, LayerByLayerEqualsForward) {
  Model model = make();
  const std::vector<float> expected = run_logits(model, one_sequence(prompt));
  model.reset(0);
  const auto n = static_cast<int32_t>(prompt.size());
  std::vector<float> x(prompt.size() * static_cast<size_t>(model.hidden()));
  model.embed(prompt, x.data());
  std::vector<int32_t> positions(prompt.size());
  for (int32_t i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = i;
  const int32_t slots[1] = {0};
  const int32_t offsets[2] = {0, n};
  ts_batch batch{sizeof(ts_batch), 1, n, slots, offsets, positions.data(), nullptr, 0u};
  for (int32_t layer = 0; layer < model.num_layers(); ++layer)
    model.run_layer(layer, batch, x.data(), n);
  std::vector<float> logits(prompt.size() * static_cast<size_t>(model.vocab()));
  model.final_norm_and_head(x.data(), n, logits.data(), nullptr);
  EXPECT_EQ(logits, expected);
}

TEST_F(ModelTest, KvCacheOnlyForGqaLayers) {
  ModelOptions options;
  options.capacity = 32;
  options.slots = 2;
  Model model = make(options);
  KvCache& kv = model.kv_cache();
  EXPECT_EQ(kv.capacity(), 32);
  EXPECT_EQ(kv.slots(), 2);
  const std::vector<int32_t> expected_heads{4, 1, 0, 0, 2, 2};
  size_t per_token = 0;
  for (int32_t layer = 0; layer < 6; ++layer) {
    const int32_t heads = expected_heads[static_cast<size_t>(layer)];
    EXPECT_EQ(model.attention(layer).info().kv_heads, heads) << "layer " << layer;
    EXPECT_EQ(kv.has_layer(layer), heads > 0) << "layer " << layer;
    per_token += 2u * static_cast<size_t>(heads) * 16u * 4u;
  }
  EXPECT_EQ(kv.bytes_per_token(), per_token);
  EXPECT_TRUE(model.attention(3).identity());
  EXPECT_TRUE(model.ffn(5).identity());
  EXPECT_FALSE(model.ffn(3).identity());
  // Default capacity comes from the manifest's max_seq_len.
  EXPECT_EQ(make().kv_cache().capacity(), 64);
}

TEST_F(ModelTest, SwapFfnEqualsModelBuiltThatWay) {
  const Manifest linear2 = hetero_manifest("{ kind = \"linear\" }");
  const WeightStore linear_weights = init_random_weights(linear2, plugins(), 7);
  Model expected_model(linear2, plugins(), linear_weights, test_pool());
  const std::vector<float> expected = run_logits(expected_model, one_sequence(prompt));

  Model model = make();
  const std::vector<float> before = run_logits(model, one_sequence(prompt));
  ASSERT_GT(max_abs_diff(before, expected), 1e-3f);  // the swap must matter
  const std::string name = "model.layers.2.mlp.linear_mlp.weight";
  model.add_weights(name, linear_weights.get(name));
  model.swap_block(2, TS_KIND_FFN, linear2.layers[2].ffn);
  EXPECT_EQ(model.manifest().layers[2].ffn.kind, "linear");
  model.reset(0);
  EXPECT_LT(max_abs_diff(run_logits(model, one_sequence(prompt)), expected), 1e-5f);
}

TEST_F(ModelTest, SwapAttentionResizesCacheAndResetsLengths) {
  // Layer 0: gqa with 4 KV heads -> 1 KV head (same weights names, new shapes).
  std::string text = hetero_manifest_text();
  const std::string from = "attention = { kind = \"gqa\", kv_heads = 4 }";
  text.replace(text.find(from), from.size(), "attention = { kind = \"gqa\", kv_heads = 1 }");
  const Manifest narrow = parse_manifest(text, "narrow.toml", ".");
  const WeightStore narrow_weights = init_random_weights(narrow, plugins(), 7);
  Model expected_model(narrow, plugins(), narrow_weights, test_pool());
  const std::vector<float> expected = run_logits(expected_model, one_sequence(prompt));

  ModelOptions options;
  options.slots = 2;
  Model model = make(options);
  run_logits(model, one_sequence(prompt, 0));
  run_logits(model, one_sequence({1, 2, 3}, 1));
  const size_t bytes_before = model.kv_cache().bytes_per_token();
  for (const char* name :
       {"model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"})
    model.add_weights(name, narrow_weights.get(name));
  model.swap_block(0, TS_KIND_ATTENTION, narrow.layers[0].attention);
  EXPECT_EQ(model.attention(0).info().kv_heads, 1);
  EXPECT_EQ(model.kv_cache().bytes_per_token(), bytes_before - 2u * 3u * 16u * 4u);
  EXPECT_EQ(model.kv_cache().length(0), 0);  // documented: every slot is reset
  EXPECT_EQ(model.kv_cache().length(1), 0);
  EXPECT_LT(max_abs_diff(run_logits(model, one_sequence(prompt)), expected), 1e-5f);
}

TEST_F(ModelTest, SwapNoopAttentionForGqa) {
  // Layer 3 has no attention (and no input norm weight); give it a gqa.
  std::string text = hetero_manifest_text();
  const std::string from = "attention = { kind = \"noop\" }";
  text.replace(text.find(from), from.size(), "attention = { kind = \"gqa\", kv_heads = 2 }");
  const Manifest full = parse_manifest(text, "full.toml", ".");
  const WeightStore full_weights = init_random_weights(full, plugins(), 7);
  Model expected_model(full, plugins(), full_weights, test_pool());

  Model model = make();
  BlockSpec gqa = full.layers[3].attention;
  // Without the weights the swap fails, naming the missing norm or projection.
  const std::string message = error_of([&] { model.swap_block(3, TS_KIND_ATTENTION, gqa); });
  EXPECT_NE(message.find("layer 3"), std::string::npos) << message;
  EXPECT_FALSE(model.kv_cache().has_layer(3));
  for (const auto& [name, t] : full_weights.all())
    if (name.rfind("model.layers.3.", 0) == 0 && !model.weights().has(name))
      model.add_weights(name, t);
  model.swap_block(3, TS_KIND_ATTENTION, gqa);
  EXPECT_TRUE(model.kv_cache().has_layer(3));
  EXPECT_LT(max_abs_diff(run_logits(model, one_sequence(prompt)),
                         run_logits(expected_model, one_sequence(prompt))),
            1e-5f);
}

TEST_F(ModelTest, SwapsFfnVariantsKeptSideBySideInOneStore) {
  // Three variants of layer 2's FFN next to its own (swiglu 96) in one store, each under a
  // prefix of its own: two narrower swiglus and a linear map (a Puzzle block library).
  struct Variant {
    std::string prefix;
    std::string table;
  };
  const std::vector<Variant> variants = {
      {"model.layers.2.variants.ffn_50pct.",
       "{ kind = \"swiglu\", intermediate_size = 48, prefix = "
       "\"model.layers.2.variants.ffn_50pct.\" }"},
      {"model.layers.2.variants.ffn_25pct.",
       "{ kind = \"swiglu\", intermediate_size = 24, prefix = "
       "\"model.layers.2.variants.ffn_25pct.\" }"},
      {"model.layers.2.variants.linear.",
       "{ kind = \"linear\", prefix = \"model.layers.2.variants.linear.\" }"},
  };
  WeightStore library = weights;
  std::vector<Manifest> manifests;
  for (const Variant& v : variants) {
    manifests.push_back(hetero_manifest(v.table));
    const WeightStore drawn = init_random_weights(manifests.back(), plugins(), 7);
    size_t own = 0;
    for (const auto& [name, t] : drawn.all()) {
      if (name.rfind(v.prefix, 0) != 0) continue;
      library.add(name, t);
      ++own;
    }
    ASSERT_GT(own, 0u) << v.prefix;
    EXPECT_FALSE(drawn.has("model.layers.2.mlp.gate_proj.weight")) << v.prefix;
  }
  // Each variant as if the model had been built with it.
  std::vector<std::vector<float>> expected;
  for (const Manifest& m : manifests) {
    Model direct(m, plugins(), library, test_pool());
    expected.push_back(run_logits(direct, one_sequence(prompt)));
  }

  Model model(manifest, plugins(), library, test_pool());
  const std::vector<float> original = run_logits(model, one_sequence(prompt));
  const size_t tensors = model.weights().all().size();
  const BlockSpec own_ffn = manifest.layers[2].ffn;
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < variants.size(); ++i) {
      model.swap_block(2, TS_KIND_FFN, manifests[i].layers[2].ffn);
      EXPECT_EQ(model.manifest().layers[2].ffn.prefix, variants[i].prefix);
      model.reset(0);
      const std::vector<float> got = run_logits(model, one_sequence(prompt));
      EXPECT_LE(max_abs_diff(got, expected[i]), 1e-6f) << variants[i].prefix;
      EXPECT_GT(max_abs_diff(got, original), 1e-3f) << variants[i].prefix;  // it mattered
      // Back to the layer's own FFN between variants.
      model.swap_block(2, TS_KIND_FFN, own_ffn);
      model.reset(0);
      EXPECT_LE(max_abs_diff(run_logits(model, one_sequence(prompt)), original), 1e-6f);
    }
  }
  EXPECT_EQ(model.weights().all().size(), tensors);  // nothing was loaded or added
  EXPECT_EQ(model.manifest().layers[2].ffn.prefix, "");
}

TEST_F(ModelTest, AddWeightsReplacesInPlaceAndBuiltBlocksKeepTheirTensor) {
  Model model = make();
  const std::vector<float> before = run_logits(model, one_sequence(prompt));
  const size_t tensors = model.weights().all().size();
  const std::string name = "model.layers.4.mlp.linear_mlp.weight";
  model.add_weights(name, Tensor({64, 64}, TS_F32));  // zeros (fresh tensors are zeroed)
  EXPECT_EQ(model.weights().all().size(), tensors);
  // The block built earlier still reads the tensor it was given...
  model.reset(0);
  EXPECT_EQ(run_logits(model, one_sequence(prompt)), before);
  // ...until it is made again.
  model.swap_block(4, TS_KIND_FFN, manifest.layers[4].ffn);
  model.reset(0);
  EXPECT_GT(max_abs_diff(run_logits(model, one_sequence(prompt)), before), 1e-4f);
  model.add_weights("extra.weight", Tensor({3}, TS_F32));
  EXPECT_EQ(model.weights().all().size(), tensors + 1);
}

TEST_F(ModelTest, FailedSwapLeavesModelWorkingAndUnchanged) {
  Model model = make();
  const std::vector<float> before = run_logits(model, one_sequence(prompt));
  const int32_t heads_before = model.attention(1).info().kv_heads;

  BlockSpec unknown;
  unknown.kind = "no-such-ffn";
  EXPECT_THROW(model.swap_block(2, TS_KIND_FFN, unknown), PluginError);

  BlockSpec bad_width = manifest.layers[2].ffn;            // swiglu
  bad_width.params.set("intermediate_size", int64_t{33});  // the weights are 96 wide
  const std::string message = error_of([&] { model.swap_block(2, TS_KIND_FFN, bad_width); });
  EXPECT_NE(message.find("layer 2"), std::string::npos) << message;

  BlockSpec bad_heads = manifest.layers[1].attention;
  bad_heads.params.set("kv_heads", int64_t{2});  // k_proj holds one head
  EXPECT_THROW(model.swap_block(1, TS_KIND_ATTENTION, bad_heads), Error);

  EXPECT_THROW(model.swap_block(9, TS_KIND_FFN, manifest.layers[2].ffn), Error);
  EXPECT_THROW(model.swap_block(0, TS_KIND_DECODER, manifest.layers[2].ffn), Error);

  EXPECT_EQ(model.manifest().layers[2].ffn.kind, "swiglu");
  EXPECT_EQ(model.attention(1).info().kv_heads, heads_before);
  EXPECT_EQ(model.kv_cache().length(0), static_cast<int32_t>(prompt.size()));
  model.reset(0);
  EXPECT_EQ(run_logits(model, one_sequence(prompt)), before);
}

TEST_F(ModelTest, CompactKvAfterTreeVerificationEqualsKeptPath) {
  // Feed a, b, c after a prefix, where c sees a but not b (a tree: a -> b, a -> c),
  // keep rows {a, c}, then decode d: equals a model fed prefix, a, c, d causally.
  const std::vector<int32_t> prefix{11, 12, 13, 14};
  Model model = make();
  run_logits(model, one_sequence(prefix));
  const uint8_t mask[9] = {1, 0, 0, 1, 1, 0, 1, 0, 1};
  ForwardBatch tree = one_sequence({50, 60, 70});
  tree.positions = {4, 5, 5};
  tree.tree_masks = {mask};
  run_logits(model, tree);
  ASSERT_EQ(model.kv_cache().length(0), 7);
  const int32_t keep[2] = {0, 2};
  model.compact_kv(0, 4, keep, 2);
  EXPECT_EQ(model.kv_cache().length(0), 6);
  const std::vector<float> got = run_logits(model, one_sequence({80}));

  Model straight = make();
  const std::vector<float> all = run_logits(straight, one_sequence({11, 12, 13, 14, 50, 70, 80}));
  EXPECT_LT(max_abs_diff(got, rows_of(all, static_cast<size_t>(straight.vocab()), 6, 1)),
            kTolerance);

  const int32_t unordered[2] = {1, 0};
  EXPECT_THROW(model.compact_kv(0, 4, unordered, 2), Error);
  EXPECT_THROW(model.compact_kv(0, 99, keep, 2), Error);
}

// ------------------------------------------------------------------ errors

TEST_F(ModelTest, TokenOutOfRangeNamesTokenAndPosition) {
  Model model = make();
  const std::string message = error_of([&] { run_logits(model, one_sequence({1, 2, 101})); });
  EXPECT_NE(message.find("101"), std::string::npos) << message;
  EXPECT_NE(message.find("position 2"), std::string::npos) << message;
  EXPECT_EQ(model.kv_cache().length(0), 0);
  EXPECT_THROW(run_logits(model, one_sequence({-1})), Error);
}

TEST_F(ModelTest, CapacityOverflowNamesTheNumbers) {
  ModelOptions options;
  options.capacity = 8;
  Model model = make(options);
  run_logits(model, one_sequence({1, 2, 3, 4, 5}));
  const std::string message = error_of([&] { run_logits(model, one_sequence({1, 2, 3, 4})); });
  EXPECT_NE(message.find("slot 0"), std::string::npos) << message;
  EXPECT_NE(message.find(" 5 "), std::string::npos) << message;
  EXPECT_NE(message.find(" 4 "), std::string::npos) << message;
  EXPECT_NE(message.find("capacity of 8"), std::string::npos) << message;
  EXPECT_EQ(model.kv_cache().length(0), 5);    // unchanged
  run_logits(model, one_sequence({1, 2, 3}));  // exactly full is fine
  EXPECT_EQ(model.kv_cache().length(0), 8);
}

TEST_F(ModelTest, MalformedBatchesAreRefused) {
  ModelOptions options;
  options.slots = 2;
  Model model = make(options);
  ForwardBatch b = one_sequence({1, 2});
  b.slots = {5};
  EXPECT_NE(error_of([&] { run_logits(model, b); }).find("slot 5"), std::string::npos);
  b = one_sequence({1, 2});
  b.offsets = {0, 3};
  EXPECT_THROW(run_logits(model, b), Error);
  b = one_sequence({1, 2});
  b.positions = {0};
  EXPECT_THROW(run_logits(model, b), Error);
  ForwardBatch twice;
  twice.slots = {1, 1};
  twice.offsets = {0, 1, 2};
  twice.tokens = {1, 2};
  EXPECT_NE(error_of([&] { run_logits(model, twice); }).find("both use slot 1"), std::string::npos);
  ForwardBatch empty_seq;
  empty_seq.slots = {0, 1};
  empty_seq.offsets = {0, 0, 1};
  empty_seq.tokens = {1};
  EXPECT_THROW(run_logits(model, empty_seq), Error);
  EXPECT_THROW(run_logits(model, ForwardBatch{}), Error);
  EXPECT_THROW(model.reset(2), Error);
}

TEST_F(ModelTest, MissingWeightNamesTensorAndLayer) {
  WeightStore partial;
  for (const auto& [name, t] : weights.all())
    if (name != "model.layers.1.self_attn.k_proj.weight") partial.add(name, t);
  const std::string message = error_of([&] { Model m(manifest, plugins(), partial, test_pool()); });
  EXPECT_NE(message.find("model.layers.1.self_attn.k_proj.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("layer 1"), std::string::npos) << message;

  WeightStore no_norm;
  for (const auto& [name, t] : weights.all())
    if (name != "model.layers.4.post_attention_layernorm.weight") no_norm.add(name, t);
  const std::string norm_message =
      error_of([&] { Model m(manifest, plugins(), no_norm, test_pool()); });
  EXPECT_NE(norm_message.find("model.layers.4.post_attention_layernorm.weight"), std::string::npos)
      << norm_message;
  EXPECT_NE(norm_message.find("layer 4"), std::string::npos) << norm_message;

  WeightStore no_head;
  for (const auto& [name, t] : weights.all())
    if (name != "lm_head.weight") no_head.add(name, t);
  EXPECT_THROW((void)Model(manifest, plugins(), no_head, test_pool()), ModelError);
}

TEST_F(ModelTest, ProviderNotFoundNamesLayerAndKind) {
  std::string text = hetero_manifest_text();
  const std::string from = "ffn = { kind = \"linear\" }";
  text.replace(text.find(from), from.size(), "ffn = { kind = \"mystery-ffn\" }");
  const Manifest m = parse_manifest(text, "mystery.toml", ".");
  const std::string message = error_of([&] { Model model(m, plugins(), weights, test_pool()); });
  EXPECT_NE(message.find("layer 4"), std::string::npos) << message;
  EXPECT_NE(message.find("mystery-ffn"), std::string::npos) << message;
  EXPECT_THROW((void)Model(m, plugins(), weights, test_pool()), PluginError);
}

TEST_F(ModelTest, HalfKvCacheHalvesItsBytesAndTracksTheF32Logits) {
  Model f32 = make();
  const std::vector<float> want = run_logits(f32, one_sequence(prompt));
  for (const ts_dtype dtype : {TS_F16, TS_BF16}) {
    Manifest m = manifest;
    m.runtime.kv_dtype = dtype;
    Model model(m, plugins(), weights, test_pool());
    EXPECT_EQ(model.kv_cache().bytes_per_token() * 2, f32.kv_cache().bytes_per_token());
    for (int32_t layer = 0; layer < model.num_layers(); ++layer) {
      if (model.kv_cache().has_layer(layer)) {
        EXPECT_EQ(model.kv_cache().layer_shape(layer).dtype, dtype) << "layer " << layer;
      }
    }
    // The tiled prefill within the cache's rounding of the f32 logits.
    const float tolerance = (dtype == TS_F16 ? 2e-3f : 2e-2f) * max_abs(want);
    const std::vector<float> got = run_logits(model, one_sequence(prompt));
    EXPECT_LT(max_abs_diff(got, want), tolerance) << dtype_name(dtype);
    // Decoding one token at a time (the one-query path) over the same cache.
    model.reset(0);
    const size_t vocab = static_cast<size_t>(model.vocab()), k = 4;
    (void)run_logits(model, one_sequence({prompt.begin(), prompt.begin() + k}));
    for (size_t i = k; i < prompt.size(); ++i)
      EXPECT_LT(
          max_abs_diff(run_logits(model, one_sequence({prompt[i]})), rows_of(want, vocab, i, 1)),
          tolerance)
          << dtype_name(dtype) << " position " << i;
  }
}

TEST_F(ModelTest, KvDtypeThatAPluginIgnoresIsRefusedByName) {
  // The fixture GQA keeps f32 whatever it is asked.
  PluginRegistry registry;
  registry.add_search_path(TESSERA_PLUGIN_DIR);
  registry.load_all();
  registry.load(std::filesystem::path(TESSERA_FIXTURE_PLUGIN_DIR) /
                "libtessera-fixture-wrong-attention.so");
  std::string text = hetero_manifest_text();
  const std::string from = "attention = { kind = \"gqa\", kv_heads = 4 }";
  text.replace(text.find(from), from.size(),
               "attention = { kind = \"gqa\", kv_heads = 4, plugin = "
               "\"tessera-fixture-wrong-attention\" }");
  Manifest m = parse_manifest(text, "ignores.toml", ".");
  m.runtime.kv_dtype = TS_F16;
  const std::string message = error_of([&] { Model model(m, registry, weights, test_pool()); });
  EXPECT_NE(message.find("layer 0 attention gqa (tessera-fixture-wrong-attention)"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("keeps its KV cache in f32, but kv_dtype \"f16\" was asked for"),
            std::string::npos)
      << message;
}

TEST_F(ModelTest, NonF32RuntimeDtypeIsRefused) {
  Manifest m = manifest;
  m.runtime.dtype = TS_BF16;
  const std::string message = error_of([&] { Model model(m, plugins(), weights, test_pool()); });
  EXPECT_NE(message.find("bf16"), std::string::npos) << message;
}

TEST_F(ModelTest, Bf16WeightsAreConvertedToF32) {
  WeightStore half;
  WeightStore rounded;  // the same values, rounded through bf16, kept in f32
  for (const auto& [name, t] : weights.all()) {
    half.add(name, t.to(TS_BF16));
    rounded.add(name, t.to(TS_BF16).to(TS_F32));
  }
  Model model(manifest, plugins(), half, test_pool());
  EXPECT_EQ(model.weights().get("model.embed_tokens.weight").dtype(), TS_F32);
  ReferenceModel ref(manifest, rounded);
  EXPECT_LT(max_abs_diff(run_logits(model, one_sequence(prompt)), ref.feed(prompt)), kTolerance);
}

}  // namespace
}  // namespace tessera::test
