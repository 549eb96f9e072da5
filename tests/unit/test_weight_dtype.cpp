// [runtime] weight_dtype: the manifest key, and a model that keeps its matrices
// in bf16/f16 computing what the f32 model computes on weights rounded to that
// dtype first.
#include "model_fixtures.hpp"

#include <tessera/engine/weight_plan.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

std::string error_of(const std::string& text) {
  try {
    (void)parse_manifest(text, "wd.toml", ".");
  } catch (const ManifestError& e) {
    return e.what();
  }
  return "<no error>";
}

// The hetero manifest with a [runtime] table holding `runtime_line`.
std::string with_runtime(const std::string& runtime_line) {
  return hetero_manifest_text() + "\n[runtime]\n" + runtime_line + "\n";
}

TEST(WeightDtypeManifest, DefaultsToF32AndParsesEveryFloatDtype) {
  EXPECT_EQ(hetero_manifest().runtime.weight_dtype, TS_F32);
  const std::pair<const char*, ts_dtype> cases[] = {
      {"f32", TS_F32}, {"bf16", TS_BF16}, {"f16", TS_F16}};
  for (const auto& [name, dtype] : cases) {
    const Manifest m = parse_manifest(with_runtime(std::string("weight_dtype = \"") + name + "\""),
                                      "wd.toml", ".");
    EXPECT_EQ(m.runtime.weight_dtype, dtype) << name;
    EXPECT_EQ(m.runtime.dtype, TS_F32) << "weight_dtype must not change the activation dtype";
    // Written back and read again, it survives.
    const Manifest again = parse_manifest(to_toml(m), "again.toml", ".");
    EXPECT_EQ(again.runtime.weight_dtype, dtype) << to_toml(m);
  }
}

TEST(WeightDtypeManifest, BadValuesNameTheKeyTheValueAndTheChoices) {
  const std::string text = with_runtime("weight_dtype = \"int8\"");
  const std::string message = error_of(text);
  EXPECT_NE(message.find("weight_dtype"), std::string::npos) << message;
  EXPECT_NE(message.find("int8"), std::string::npos) << message;
  EXPECT_NE(message.find("\"bf16\""), std::string::npos) << message;
  // file:line of the offending key (the last line of the text).
  const auto line = std::count(text.begin(), text.end(), '\n');
  EXPECT_NE(message.find("wd.toml:" + std::to_string(line)), std::string::npos) << message;

  const std::string not_string = error_of(with_runtime("weight_dtype = 16"));
  EXPECT_NE(not_string.find("weight_dtype"), std::string::npos) << not_string;
  EXPECT_NE(not_string.find("string"), std::string::npos) << not_string;
  // A misspelt key is refused, not ignored.
  const std::string misspelt = error_of(with_runtime("weights_dtype = \"bf16\""));
  EXPECT_NE(misspelt.find("weights_dtype"), std::string::npos) << misspelt;
}

class WeightDtypeModel : public ::testing::TestWithParam<ts_dtype> {};

// Matrices through `dtype` and back to f32; vectors (norms) untouched, as the
// model keeps them.
WeightStore rounded_matrices(const WeightStore& w, ts_dtype dtype) {
  WeightStore out;
  for (const auto& [name, t] : w.all()) out.add(name, t.ndim() >= 2 ? t.to(dtype).to(TS_F32) : t);
  return out;
}

TEST_P(WeightDtypeModel, MatchesTheF32ModelOnRoundedWeights) {
  const ts_dtype dtype = GetParam();
  for (const bool tied : {false, true}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)) + (tied ? " tied" : " untied"));
    Manifest half_manifest = hetero_manifest("{ kind = \"swiglu\" }", tied);
    const WeightStore weights = init_random_weights(half_manifest, plugins(), 5);
    half_manifest.runtime.set_weight_dtype(dtype);
    const Manifest f32_manifest = hetero_manifest("{ kind = \"swiglu\" }", tied);

    Model half(half_manifest, plugins(), weights, test_pool());
    Model exact(f32_manifest, plugins(), rounded_matrices(weights, dtype), test_pool());
    // Kept in the asked dtype: matrices and embedding yes, norms no.
    EXPECT_EQ(half.weights().get("model.embed_tokens.weight").dtype(), dtype);
    EXPECT_EQ(half.weights().get("model.layers.0.self_attn.q_proj.weight").dtype(), dtype);
    EXPECT_EQ(half.weights().get("model.layers.0.mlp.down_proj.weight").dtype(), dtype);
    EXPECT_EQ(half.weights().get("model.layers.0.input_layernorm.weight").dtype(), TS_F32);
    EXPECT_EQ(half.weights().get("model.norm.weight").dtype(), TS_F32);
    if (!tied) {
      EXPECT_EQ(half.weights().get("lm_head.weight").dtype(), dtype);
    }

    // Prefill (GEMM path) then two decode steps (GEMV path).
    const std::vector<int32_t> prompt{4, 8, 15, 16, 23, 42, 7, 99};
    std::vector<float> got = run_logits(half, one_sequence(prompt));
    std::vector<float> want = run_logits(exact, one_sequence(prompt));
    ASSERT_GT(max_abs(want), 0.1f);
    // Same kernels on the same values (the conversion to f32 is exact): only
    // the order of a few additions may differ.
    EXPECT_LT(max_abs_diff(got, want), 1e-5f * std::max(1.0f, max_abs(want)));
    for (const int32_t token : {3, 77}) {
      got = run_logits(half, one_sequence({token}));
      want = run_logits(exact, one_sequence({token}));
      EXPECT_LT(max_abs_diff(got, want), 1e-5f * std::max(1.0f, max_abs(want)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(HalfDtypes, WeightDtypeModel, ::testing::Values(TS_BF16, TS_F16),
                         [](const ::testing::TestParamInfo<ts_dtype>& param_info) {
                           return std::string(dtype_name(param_info.param));
                         });

TEST(WeightDtypeModel, AddedWeightsAreStoredInTheWeightDtype) {
  Manifest m = hetero_manifest();
  m.runtime.set_weight_dtype(TS_BF16);
  Model model(m, plugins(), init_random_weights(m, plugins(), 2), test_pool());
  model.add_weights("extra.matrix", Tensor({4, 8}, TS_F32));
  model.add_weights("extra.vector", Tensor({8}, TS_F16));
  EXPECT_EQ(model.weights().get("extra.matrix").dtype(), TS_BF16);
  EXPECT_EQ(model.weights().get("extra.vector").dtype(), TS_F32);
}

// "stored" keeps each matrix as its file has it; writing the manifest keeps the word, and an
// explicit dtype afterwards (set_weight_dtype) turns it off.
TEST(WeightDtypeManifest, StoredIsAChoiceThatSurvivesWritingAndCanBeOverridden) {
  Manifest m = parse_manifest(with_runtime("weight_dtype = \"stored\""), "wd.toml", ".");
  EXPECT_TRUE(m.runtime.weights_as_stored);
  EXPECT_NE(to_toml(m).find("weight_dtype = \"stored\""), std::string::npos) << to_toml(m);
  EXPECT_TRUE(parse_manifest(to_toml(m), "again.toml", ".").runtime.weights_as_stored);
  m.runtime.set_weight_dtype(TS_BF16);
  EXPECT_FALSE(m.runtime.weights_as_stored);
  EXPECT_EQ(m.runtime.weight_dtype, TS_BF16);
  EXPECT_NE(error_of(with_runtime("weight_dtype = \"q4_1\"")).find("\"stored\""),
            std::string::npos);
}

// What the model keeps each tensor in (run_dtype): a quantised matrix stays so only as stored
// weights read by blocks that accept its dtype; vectors are f32; float matrices follow
// weight_dtype, or stay as they are when stored.
TEST(WeightDtypeModel, RunDtypeKeepsQuantisedMatricesOnlyWhereTheReaderTakesThem) {
  const Tensor q4({4, 64}, TS_Q4_1);
  const Tensor half({4, 64}, TS_F16);
  const Tensor vector({64}, TS_F16);
  const uint32_t floats = kFloatDtypeMask;
  const uint32_t all = kFloatDtypeMask | kQuantizedDtypeMask;
  RuntimeSpec f32;
  EXPECT_EQ(run_dtype(f32, q4, all), TS_F32);
  EXPECT_EQ(run_dtype(f32, half, all), TS_F32);
  RuntimeSpec bf16;
  bf16.set_weight_dtype(TS_BF16);
  EXPECT_EQ(run_dtype(bf16, q4, all), TS_BF16);
  RuntimeSpec stored;
  stored.weights_as_stored = true;
  EXPECT_EQ(run_dtype(stored, q4, all), TS_Q4_1);
  EXPECT_EQ(run_dtype(stored, q4, floats), TS_F32);  // a block that reads no quantised dtype
  EXPECT_EQ(run_dtype(stored, q4, 0), TS_F32);       // 0: f32, f16 and bf16
  EXPECT_EQ(run_dtype(stored, half, all), TS_F16);
  EXPECT_EQ(run_dtype(stored, vector, all), TS_F32);
  EXPECT_EQ(run_dtype(stored, Tensor({4}, TS_I32), all), TS_I32);
}

// A quantised tensor handed to the model: kept as stored weights, dequantised otherwise.
TEST(WeightDtypeModel, AddedQuantisedWeightsAreKeptOnlyAsStoredWeights) {
  Manifest m = hetero_manifest();
  const WeightStore weights = init_random_weights(m, plugins(), 2);
  Model f32_model(m, plugins(), weights, test_pool());
  f32_model.add_weights("extra.q", Tensor({2, 64}, TS_Q8_0));
  EXPECT_EQ(f32_model.weights().get("extra.q").dtype(), TS_F32);
  m.runtime.weights_as_stored = true;
  Model stored_model(m, plugins(), weights, test_pool());
  stored_model.add_weights("extra.q", Tensor({2, 64}, TS_Q8_0));
  EXPECT_EQ(stored_model.weights().get("extra.q").dtype(), TS_Q8_0);
}

}  // namespace
}  // namespace tessera::test
