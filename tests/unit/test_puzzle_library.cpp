// Puzzle's block library on a small parent of the real plugins (gqa + swiglu, a second KV-head
// count, a linear attention, a no-op FFN): the catalogue, calibration (batching does not change
// it; a linear parent block is recovered exactly), every variant runs after swap_block, and the
// initialisers are exact where they should be: a pooled GQA equals the parent when the heads it
// merges are equal, a pruned SwiGLU equals the parent when the dropped channels are dead, the
// least-squares block's reported fit is its error inside the model, and a child manifest runs
// as the parent with its blocks swapped.
#include <gtest/gtest.h>

#include <tessera/engine/error.hpp>
#include <tessera/puzzle/calibration.hpp>
#include <tessera/puzzle/library.hpp>
#include <tessera/puzzle/library_index.hpp>
#include <tessera/puzzle/puzzle_config.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "puzzle_fixtures.hpp"

namespace tessera::puzzle {
namespace {

using test::error_of;
using namespace test_fixtures;

TEST(PuzzleLibrary, CatalogueOfEveryLayer) {
  const std::vector<LayerVariants> lib = plan_variants(parent_manifest(), {});
  ASSERT_EQ(lib.size(), 3U);
  EXPECT_EQ(names(lib[0].attention),
            (std::vector<std::string>{"gqa_kv4", "gqa_kv2", "gqa_kv1", "linear", "noop"}));
  // 96 * {1, .875, .75, .5, .25, .1} rounded to multiples of 32: 96, 64, 32.
  EXPECT_EQ(names(lib[0].ffn),
            (std::vector<std::string>{"swiglu_96", "swiglu_64", "swiglu_32", "linear", "noop"}));
  EXPECT_EQ(names(lib[1].attention),
            (std::vector<std::string>{"gqa_kv2", "gqa_kv1", "linear", "noop"}));
  EXPECT_EQ(names(lib[1].ffn),
            (std::vector<std::string>{"swiglu_40", "swiglu_32", "linear", "noop"}));
  // A parent block that is already linear is not offered twice; a no-op has nothing cheaper.
  EXPECT_EQ(names(lib[2].attention), (std::vector<std::string>{"linear", "noop"}));
  EXPECT_EQ(names(lib[2].ffn), (std::vector<std::string>{"noop"}));

  const Variant& parent_gqa = lib[0].attention[0];
  EXPECT_EQ(parent_gqa.init, VariantInit::kParent);
  EXPECT_TRUE(parent_gqa.block.prefix.empty());
  EXPECT_EQ(parent_gqa.kv_heads, 4);
  EXPECT_EQ(parent_gqa.parameters, 2 * 32 * 32 + 2 * 4 * 8 * 32);  // q, o; k, v
  const Variant& kv1 = find(lib[0].attention, "gqa_kv1");
  EXPECT_EQ(kv1.init, VariantInit::kMeanPooled);
  EXPECT_EQ(kv1.block.prefix, "model.layers.0.variants.attention.gqa_kv1.");
  EXPECT_EQ(kv1.kv_heads, 1);
  EXPECT_EQ(kv1.parameters, 2 * 32 * 32 + 2 * 8 * 32);
  const Variant& s64 = find(lib[0].ffn, "swiglu_64");
  EXPECT_EQ(s64.init, VariantInit::kPruned);
  EXPECT_EQ(s64.parameters, 3 * 64 * 32);
  EXPECT_EQ(s64.block.prefix, "model.layers.0.variants.ffn.swiglu_64.");
  EXPECT_EQ(find(lib[1].ffn, "linear").init, VariantInit::kLeastSquares);
  EXPECT_EQ(find(lib[1].ffn, "linear").parameters, 32 * 32);
  EXPECT_EQ(find(lib[2].ffn, "noop").init, VariantInit::kParent);
  EXPECT_EQ(find(lib[0].attention, "noop").parameters, 0);
  EXPECT_EQ(to_string(VariantInit::kLeastSquares), "least-squares");
}

TEST(PuzzleLibrary, OptionsNarrowTheCatalogue) {
  LibraryOptions o;
  o.ffn_fractions = {0.5};
  o.ffn_width_multiple = 8;
  o.kv_heads = {1};
  o.attention_noop = false;
  o.ffn_linear = false;
  const std::vector<LayerVariants> lib = plan_variants(parent_manifest(), o);
  EXPECT_EQ(names(lib[0].attention), (std::vector<std::string>{"gqa_kv1", "linear"}));
  EXPECT_EQ(names(lib[0].ffn), (std::vector<std::string>{"swiglu_48", "noop"}));
  EXPECT_EQ(names(lib[1].ffn), (std::vector<std::string>{"swiglu_24", "noop"}));
  EXPECT_EQ(ffn_widths(96, {}), (std::vector<int64_t>{96, 64, 32}));
  EXPECT_EQ(ffn_widths(1536, {}), (std::vector<int64_t>{1536, 1344, 1152, 768, 384, 160}));
}

TEST(PuzzleLibrary, OptionsThatNameNoVariantAreRefused) {
  LibraryOptions kv;
  kv.kv_heads = {3};
  EXPECT_NE(error_of([&] {
              plan_variants(parent_manifest(), kv);
            }).find("kv_heads 3 does not divide layer 0's 4 KV heads"),
            std::string::npos);
  for (const double f : {0.0, 1.5, -0.25}) {
    LibraryOptions o;
    o.ffn_fractions = {f};
    EXPECT_NE(error_of([&] { plan_variants(parent_manifest(), o); }).find("is outside (0, 1]"),
              std::string::npos)
        << f;
  }
  LibraryOptions m;
  m.ffn_width_multiple = 0;
  EXPECT_NE(error_of([&] {
              plan_variants(parent_manifest(), m);
            }).find("ffn_width_multiple is 0; expected an integer >= 1"),
            std::string::npos);
}

TEST(PuzzleCalibration, BatchingDoesNotChangeTheStatistics) {
  auto parent = model_of(parent_manifest(), parent_weights());
  const std::vector<train::TrainBatch> two = calibration_batches();
  train::TrainBatch one;
  one.offsets = {0};
  for (const train::TrainBatch& b : two)
    for (size_t s = 0; s + 1 < b.offsets.size(); ++s) {
      one.tokens.insert(one.tokens.end(), b.tokens.begin() + b.offsets[s],
                        b.tokens.begin() + b.offsets[s + 1]);
      one.offsets.push_back(static_cast<int32_t>(one.tokens.size()));
    }
  int64_t calls = 0;
  const Calibration a = calibrate(*parent, two, [&](int64_t) { ++calls; });
  const Calibration b = calibrate(*parent, {one});
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(a.tokens, 89);
  EXPECT_EQ(b.tokens, 89);
  ASSERT_EQ(a.layers.size(), 3U);
  const auto close = [](const std::vector<double>& x, const std::vector<double>& y) {
    double diff = 0, scale = 1e-30;
    for (size_t i = 0; i < x.size(); ++i) {
      diff = std::max(diff, std::fabs(x[i] - y[i]));
      scale = std::max(scale, std::fabs(y[i]));
    }
    return diff / scale;
  };
  for (size_t l = 0; l < 3; ++l) {
    EXPECT_EQ(a.layers[l].attention.tokens(), 89);
    EXPECT_LT(close(a.layers[l].attention.xx(), b.layers[l].attention.xx()), 1e-5) << l;
    EXPECT_LT(close(a.layers[l].attention.yx(), b.layers[l].attention.yx()), 1e-5) << l;
    EXPECT_NEAR(a.layers[l].attention.yy(), b.layers[l].attention.yy(),
                1e-6 * b.layers[l].attention.yy());
  }
  // Layer 2's FFN is a no-op: nothing recorded. Swiglu layers get their channels.
  EXPECT_EQ(a.layers[2].ffn.tokens(), 0);
  EXPECT_EQ(a.layers[0].channels.abs_sum().size(), 96U);
  EXPECT_EQ(a.layers[1].channels.abs_sum().size(), 40U);
  EXPECT_TRUE(a.layers[2].channels.abs_sum().empty());
  EXPECT_LT(close(a.layers[0].channels.abs_sum(), b.layers[0].channels.abs_sum()), 1e-5);
}

TEST(PuzzleCalibration, ALinearParentBlockIsRecoveredByLeastSquares) {
  // Layer 2's attention is linear: its calibration pairs (normalised input, output) are exactly
  // linear, so the fit returns the parent's own weight. This checks the normalisation and the
  // recorded outputs the initialisers read.
  const WeightStore weights = parent_weights();
  auto parent = model_of(parent_manifest(), weights);
  const Calibration c = calibrate(*parent, calibration_batches());
  const LinearFit fit = least_squares_linear(c.layers[2].attention, 1e-9);
  const std::vector<float> w =
      test::values(weights.get("model.layers.2.self_attn.linear_attn.weight"));
  ASSERT_EQ(fit.weight.size(), w.size());
  EXPECT_LT(test::relative_error(fit.weight, w), 1e-3);
  EXPECT_LT(fit.nmse, 1e-5);
}

TEST(PuzzleLibrary, EveryVariantRunsAndTheParentsOwnIsTheParent) {
  Built b = build(parent_weights());
  auto model = model_of(parent_manifest(), b.weights);
  const std::vector<float> parent = logits_of(*model, kPrompt);
  for (int32_t l = 0; l < 3; ++l) {
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const BlockSpec original = part == TS_KIND_ATTENTION ? parent_manifest().layers[l].attention
                                                           : parent_manifest().layers[l].ffn;
      for (const Variant& v : b.library[static_cast<size_t>(l)].of(part)) {
        SCOPED_TRACE("layer " + std::to_string(l) + " " + v.name);
        model->swap_block(l, part, v.block);
        const std::vector<float> out = logits_of(*model, kPrompt);
        for (const float x : out) ASSERT_TRUE(std::isfinite(x));
        if (v.init == VariantInit::kParent) {
          EXPECT_EQ(out, parent);
        } else {
          EXPECT_NE(out, parent);
        }
        if (v.init == VariantInit::kLeastSquares) {
          EXPECT_TRUE(std::isfinite(v.fit_nmse));
          EXPECT_GE(v.fit_nmse, 0.0);
        } else {
          EXPECT_TRUE(std::isnan(v.fit_nmse));
        }
      }
      model->swap_block(l, part, original);
      EXPECT_EQ(logits_of(*model, kPrompt), parent);
    }
  }
}

TEST(PuzzleLibrary, PooledGqaIsTheParentWhenTheMergedHeadsAreEqual) {
  // Layer 0 has 4 KV heads; make heads 1 and 3 copies of 0 and 2 in K and V. Pooling to 2
  // heads then changes nothing, and pooling to 1 does (heads 0 and 2 still differ).
  WeightStore weights = parent_weights();
  for (const char* name : {"k_proj.weight", "v_proj.weight"}) {
    const std::string full = std::string("model.layers.0.self_attn.") + name;
    std::vector<float> w = test::values(weights.get(full));
    const size_t row = 8 * 32;
    std::copy_n(w.begin(), row, w.begin() + row);
    std::copy_n(w.begin() + 2 * row, row, w.begin() + 3 * row);
    Tensor t({32, 32}, TS_F32);
    std::copy(w.begin(), w.end(), t.data<float>());
    weights.add(full, std::move(t));
  }
  Built b = build(std::move(weights));
  auto model = model_of(parent_manifest(), b.weights);
  const std::vector<float> parent = logits_of(*model, kPrompt);
  model->swap_block(0, TS_KIND_ATTENTION, find(b.library[0].attention, "gqa_kv2").block);
  EXPECT_LT(test::max_abs_diff(logits_of(*model, kPrompt), parent), 1e-5f);
  model->swap_block(0, TS_KIND_ATTENTION, find(b.library[0].attention, "gqa_kv1").block);
  EXPECT_GT(test::max_abs_diff(logits_of(*model, kPrompt), parent), 1e-3f);
}

TEST(PuzzleLibrary, PrunedSwigluIsTheParentWhenTheDroppedChannelsAreDead) {
  // Zero the down-projection columns of every third of layer 0's 96 channels: their
  // contribution is 0, so the 64-wide variant keeps exactly the other 64 and equals the parent.
  WeightStore weights = parent_weights();
  const std::string name = "model.layers.0.mlp.down_proj.weight";
  std::vector<float> down = test::values(weights.get(name));
  for (size_t r = 0; r < 32; ++r)
    for (size_t c = 0; c < 96; c += 3) down[r * 96 + c] = 0.0f;
  Tensor t({32, 96}, TS_F32);
  std::copy(down.begin(), down.end(), t.data<float>());
  weights.add(name, std::move(t));
  Built b = build(std::move(weights));
  auto model = model_of(parent_manifest(), b.weights);
  const std::vector<float> parent = logits_of(*model, kPrompt);
  model->swap_block(0, TS_KIND_FFN, find(b.library[0].ffn, "swiglu_64").block);
  EXPECT_LT(test::max_abs_diff(logits_of(*model, kPrompt), parent), 1e-5f);
  model->swap_block(0, TS_KIND_FFN, find(b.library[0].ffn, "swiglu_32").block);
  EXPECT_GT(test::max_abs_diff(logits_of(*model, kPrompt), parent), 1e-4f);
}

TEST(PuzzleLibrary, TheLinearBlocksReportedFitIsItsErrorInsideTheModel) {
  Built b = build(parent_weights());
  const Variant& linear = find(b.library[0].ffn, "linear");
  auto parent = model_of(parent_manifest(), b.weights);
  auto child = model_of(parent_manifest(), b.weights);
  child->swap_block(0, TS_KIND_FFN, linear.block);
  double err = 0, norm = 0;
  for (const train::TrainBatch& batch : calibration_batches()) {
    const train::BlockRecord p = train::record_block_io(*parent, batch, 0, TS_KIND_FFN);
    const train::BlockRecord c = train::record_block_io(*child, batch, 0, TS_KIND_FFN);
    ASSERT_EQ(p.input, c.input);  // layer 0's attention is the parent's in both
    for (size_t i = 0; i < p.output.size(); ++i) {
      const double d = static_cast<double>(c.output[i]) - p.output[i];
      err += d * d;
      norm += static_cast<double>(p.output[i]) * p.output[i];
    }
  }
  EXPECT_NEAR(linear.fit_nmse, err / norm, 1e-3 * (err / norm));
  EXPECT_LT(linear.fit_nmse, 1.0);  // better than a no-op FFN
}

TEST(PuzzleLibrary, AChildManifestRunsAsTheParentWithItsBlocksSwapped) {
  Built b = build(parent_weights());
  const std::vector<std::pair<std::string, std::string>> choice = {
      {"gqa_kv1", "swiglu_32"}, {"noop", "linear"}, {"linear", "noop"}};
  const Manifest child = child_manifest(parent_manifest(), b.library, choice);
  EXPECT_EQ(child.layers[0].attention.prefix, "model.layers.0.variants.attention.gqa_kv1.");
  EXPECT_EQ(child.layers[1].attention.kind, "noop");
  auto built = model_of(child, b.weights);
  auto swapped = model_of(parent_manifest(), b.weights);
  for (int32_t l = 0; l < 3; ++l) {
    swapped->swap_block(l, TS_KIND_ATTENTION, child.layers[static_cast<size_t>(l)].attention);
    swapped->swap_block(l, TS_KIND_FFN, child.layers[static_cast<size_t>(l)].ffn);
  }
  EXPECT_EQ(logits_of(*built, kPrompt), logits_of(*swapped, kPrompt));

  EXPECT_NE(error_of([&] {
              child_manifest(parent_manifest(), b.library, {{"gqa_kv4", "x"}});
            }).find("a child names 1 layers but the library has 3"),
            std::string::npos);
  std::vector<std::pair<std::string, std::string>> bad = choice;
  bad[1].second = "swiglu_96";
  EXPECT_NE(error_of([&] { child_manifest(parent_manifest(), b.library, bad); })
                .find("layer 1 has no FFN variant 'swiglu_96'; it has swiglu_40, swiglu_32, "
                      "linear, noop"),
            std::string::npos);
}

TEST(PuzzleLibraryIndex, RoundTripsEveryField) {
  LibraryIndex index;
  index.parent_path = "/models/parent.gguf";
  index.parent_name = "puzzle-parent";
  index.hidden_size = 32;
  index.calibration_tokens = 89;
  index.calibration_seconds = 1.5;
  index.options.ffn_fractions = {1.0, 0.5};
  index.options.kv_heads = {4, 1};
  index.options.ffn_noop = false;
  index.options.ridge = 1e-3;
  index.layers = plan_variants(parent_manifest(), {});
  index.layers[0].ffn[3].fit_nmse = 0.125;
  const LibraryIndex back = parse_library_json(library_json(index), "library.json");
  EXPECT_EQ(back.parent_path, index.parent_path);
  EXPECT_EQ(back.parent_name, index.parent_name);
  EXPECT_EQ(back.hidden_size, 32);
  EXPECT_EQ(back.calibration_tokens, 89);
  EXPECT_DOUBLE_EQ(back.calibration_seconds, 1.5);
  EXPECT_EQ(back.options.ffn_fractions, index.options.ffn_fractions);
  EXPECT_EQ(back.options.kv_heads, index.options.kv_heads);
  EXPECT_FALSE(back.options.ffn_noop);
  EXPECT_TRUE(back.options.ffn_linear);
  EXPECT_DOUBLE_EQ(back.options.ridge, 1e-3);
  ASSERT_EQ(back.layers.size(), index.layers.size());
  for (size_t l = 0; l < index.layers.size(); ++l) {
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::vector<Variant>& a = index.layers[l].of(part);
      const std::vector<Variant>& z = back.layers[l].of(part);
      ASSERT_EQ(a.size(), z.size());
      for (size_t i = 0; i < a.size(); ++i) {
        SCOPED_TRACE(a[i].name);
        EXPECT_EQ(z[i].name, a[i].name);
        EXPECT_EQ(z[i].part, part);
        EXPECT_EQ(z[i].block.kind, a[i].block.kind);
        EXPECT_EQ(z[i].block.prefix, a[i].block.prefix);
        EXPECT_TRUE(same_params(z[i].block.params, a[i].block.params));
        EXPECT_EQ(z[i].init, a[i].init);
        EXPECT_EQ(z[i].parameters, a[i].parameters);
        EXPECT_EQ(z[i].kv_heads, a[i].kv_heads);
        EXPECT_EQ(std::isnan(z[i].fit_nmse), std::isnan(a[i].fit_nmse));
        if (!std::isnan(a[i].fit_nmse)) {
          EXPECT_DOUBLE_EQ(z[i].fit_nmse, a[i].fit_nmse);
        }
      }
    }
  }
  // What a built child would run: the parsed library names the same blocks.
  const std::vector<std::pair<std::string, std::string>> choice = {
      {"gqa_kv2", "swiglu_64"}, {"gqa_kv1", "noop"}, {"noop", "noop"}};
  const Manifest a = child_manifest(parent_manifest(), index.layers, choice);
  const Manifest z = child_manifest(parent_manifest(), back.layers, choice);
  for (size_t l = 0; l < 3; ++l) {
    EXPECT_EQ(z.layers[l].attention.prefix, a.layers[l].attention.prefix);
    EXPECT_EQ(z.layers[l].ffn.prefix, a.layers[l].ffn.prefix);
    EXPECT_TRUE(same_params(z.block_params(z.layers[l].ffn), a.block_params(a.layers[l].ffn)));
  }
}

TEST(PuzzleLibraryIndex, EveryFaultIsNamedByItsPath) {
  LibraryIndex index;
  index.parent_name = "p";
  index.hidden_size = 32;
  index.layers = plan_variants(parent_manifest(), {});
  const std::string good = library_json(index);
  const auto edited = [&](const std::string& find, const std::string& replace) {
    std::string text = good;
    const size_t at = text.find(find);
    EXPECT_NE(at, std::string::npos) << find;
    return text.replace(at, find.size(), replace);
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "library.json: the document is not valid JSON"},
      {edited("\"tessera.puzzle.library\"", "\"other\""),
       "library.json: format must be \"tessera.puzzle.library\""},
      {edited("\"version\": 1", "\"version\": 2"),
       "library.json: version is 2; this build reads version 1"},
      {edited("\"name\": \"gqa_kv4\"", "\"name\": 4"),
       "library.json: layers[0].attention[0].name must be a string"},
      {edited("\"init\": \"pruned\"", "\"init\": \"grown\""),
       "library.json: layers[0].ffn[1].init is 'grown'"},
      {edited("\"layers\": 3", "\"layers\": 4"), "library.json: parent.layers disagrees"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string e = error_of([&] { parse_library_json(text, "library.json"); });
    EXPECT_NE(e.find(expected), std::string::npos) << e;
  }
  const std::string missing =
      error_of([] { read_library_index("/nonexistent/puzzle/library.json"); });
  EXPECT_NE(missing.find("/nonexistent/puzzle/library.json"), std::string::npos) << missing;
}

// --- the config -----------------------------------------------------------------------------

const char* const kConfig = R"([puzzle]
parent = "models/parent.gguf"
output = "runs/p"

[data]
path = "corpus"
seq_len = 256
)";

TEST(PuzzleConfig, MinimalConfigGetsTheDefaults) {
  const PuzzleConfig c = parse_puzzle_config(kConfig, "puzzle.toml", "/base");
  EXPECT_EQ(c.parent, "/base/models/parent.gguf");
  EXPECT_EQ(c.output, "/base/runs/p");
  EXPECT_EQ(c.library_folder(), "/base/runs/p/library");
  EXPECT_EQ(c.data.data.path, "/base/corpus");
  EXPECT_EQ(c.data.data.seq_len, 256);
  EXPECT_EQ(c.library.calibration_tokens, 8192);
  EXPECT_EQ(c.library.options.ffn_fractions, LibraryOptions{}.ffn_fractions);
  EXPECT_EQ(c.library.options.ffn_width_multiple, 32);
  EXPECT_TRUE(c.library.options.kv_heads.empty());
}

TEST(PuzzleConfig, EveryLibraryKey) {
  const std::string text = std::string(kConfig) + R"(
[library]
ffn_fractions = [1, 0.5, 0.25]
ffn_width_multiple = 64
kv_heads = [3, 1]
attention_linear = false
attention_noop = false
ffn_linear = false
ffn_noop = false
ridge = 0.01
calibration_tokens = 4096
)";
  const PuzzleConfig c = parse_puzzle_config(text, "puzzle.toml", "/base");
  const LibraryOptions& o = c.library.options;
  EXPECT_EQ(o.ffn_fractions, (std::vector<double>{1.0, 0.5, 0.25}));
  EXPECT_EQ(o.ffn_width_multiple, 64);
  EXPECT_EQ(o.kv_heads, (std::vector<int32_t>{3, 1}));
  EXPECT_FALSE(o.attention_linear || o.attention_noop || o.ffn_linear || o.ffn_noop);
  EXPECT_DOUBLE_EQ(o.ridge, 0.01);
  EXPECT_EQ(c.library.calibration_tokens, 4096);
}

TEST(PuzzleConfig, EveryErrorIsLocated) {
  struct Case {
    std::string text;
    int line, column;
    const char* expected;
  };
  const std::string lib = std::string(kConfig) + "\n[library]\n";  // [library] on line 9
  const std::vector<Case> cases = {
      {"[puzzle\n", 1, 8, "TOML syntax error"},
      {std::string(kConfig) + "[train]\n", 8, 2, "unknown key 'train' in the top level"},
      {"[data]\npath = \"c\"\n", 1, 1, "missing [puzzle] table"},
      {"[puzzle]\noutput = \"o\"\n[data]\npath = \"c\"\n", 1, 1,
       "missing required key 'parent' in [puzzle]"},
      {"[puzzle]\nparent = \"\"\noutput = \"o\"\n[data]\npath = \"c\"\n", 2, 10,
       "'parent' in [puzzle] is empty"},
      {"[puzzle]\nparent = \"p\"\noutput = \"o\"\nouput = 1\n[data]\npath = \"c\"\n", 4, 1,
       "unknown key 'ouput' in [puzzle]"},
      {lib + "ffn_fractions = [0.5, 1.5]\n", 10, 23, "holds 1.5; expected fractions in (0, 1]"},
      {lib + "ffn_fractions = []\n", 10, 17, "must be a non-empty array"},
      {lib + "ffn_width_multiple = 0\n", 10, 22, "'ffn_width_multiple' in [library] is 0"},
      {lib + "kv_heads = [2, 0.5]\n", 10, 16, "expected KV-head counts >= 1"},
      {lib + "ridge = 0\n", 10, 9, "'ridge' in [library] is 0; expected a number in (0, 1)"},
      {lib + "calibration_tokens = 0\n", 10, 22, "expected an integer >= 1"},
      {lib + "ffn_noop = \"no\"\n", 10, 12, "'ffn_noop' in [library] must be"},
      {lib + "width = 3\n", 10, 1, "unknown key 'width' in [library]"},
  };
  for (const Case& c : cases) {
    try {
      parse_puzzle_config(c.text, "puzzle.toml", "/base");
      ADD_FAILURE() << c.text << ": no error";
    } catch (const ManifestError& e) {
      EXPECT_EQ(e.file, "puzzle.toml") << c.text;
      EXPECT_EQ(e.line, c.line) << e.what();
      EXPECT_EQ(e.column, c.column) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << e.what();
    }
  }
  const std::string missing = error_of([] { load_puzzle_config("/nonexistent/puzzle.toml"); });
  EXPECT_NE(missing.find("puzzle config does not exist"), std::string::npos) << missing;
}

}  // namespace
}  // namespace tessera::puzzle
