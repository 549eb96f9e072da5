// RoPE scaling ("llama3", Llama 3.1): the SDK's frequency table, the naive reference, the
// manifest keys, the block parameters, and the CPU attention plugin through a whole model.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <tessera/cpu/ops.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/plugin.hpp>
#include <tessera/reference/reference.hpp>
#include <tessera/rope_scaling.hpp>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera {
namespace {

// Llama-3.1-8B: head_dim 128, theta 500000, factor 8, low 1, high 4, original context 8192.
constexpr int64_t kHeadDim = 128;
constexpr double kTheta = 500000.0;
const RopeScaling kLlama31{"llama3", 8.0, 1.0, 4.0, 8192};

// The Llama 3.1 rule, written out here on its own: for each unscaled frequency f with
// wavelength 2 pi / f, high frequencies (wavelength < 8192 / 4 = 2048) stay, low frequencies
// (wavelength > 8192 / 1) are divided by 8, and in between f is blended linearly in
// 8192 / wavelength between f / 8 (at 1) and f (at 4).
std::vector<double> expected_llama31_inv_freq() {
  const double pi = 3.14159265358979323846;
  std::vector<double> out;
  for (int64_t i = 0; i < kHeadDim / 2; ++i) {
    const double f = 1.0 / std::pow(kTheta, static_cast<double>(2 * i) / kHeadDim);
    const double wavelength = 2 * pi / f;
    if (wavelength < 2048.0) {
      out.push_back(f);
    } else if (wavelength > 8192.0) {
      out.push_back(f / 8.0);
    } else {
      const double t = (8192.0 / wavelength - 1.0) / 3.0;  // 0 at the long end, 1 at the short
      out.push_back(f / 8.0 + t * (f - f / 8.0));
    }
  }
  return out;
}

ParamList scaling_params(const RopeScaling& s) {
  Manifest m = builtin_shape("llama-3.1-8b");
  m.model.rope_scaling = s;
  BlockSpec gqa;
  gqa.kind = "gqa";
  return m.block_params(gqa);
}

void expect_near_relative(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-12 * want[i]) << "frequency " << i;
  }
}

TEST(RopeScaling, SdkTableMatchesTheLlama31Formula) {
  const ParamList params = scaling_params(kLlama31);
  const sdk::RopeScalingParams s = sdk::rope_scaling_from_params(sdk::Params(params.c_params()));
  EXPECT_EQ(s.type, "llama3");
  EXPECT_EQ(s.factor, 8.0);
  EXPECT_EQ(s.low_freq_factor, 1.0);
  EXPECT_EQ(s.high_freq_factor, 4.0);
  EXPECT_EQ(s.original_max_position_embeddings, 8192.0);

  std::vector<double> inv_freq = cpu::rope_inv_freq(kHeadDim, kTheta);
  const std::vector<double> unscaled = inv_freq;
  sdk::apply_rope_scaling(inv_freq, s);
  const std::vector<double> want = expected_llama31_inv_freq();
  expect_near_relative(inv_freq, want);

  // All three regimes occur at these values.
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    if (inv_freq[i] == unscaled[i]) {
      ++kept;
    } else if (std::fabs(inv_freq[i] - unscaled[i] / 8.0) <= 1e-15 * unscaled[i]) {
      ++divided;
    } else {
      ++blended;
      EXPECT_GT(inv_freq[i], unscaled[i] / 8.0);
      EXPECT_LT(inv_freq[i], unscaled[i]);
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
  EXPECT_EQ(inv_freq[0], unscaled[0]);  // the fastest rotation is never scaled
}

TEST(RopeScaling, ReferenceTableMatchesTheLlama31Formula) {
  expect_near_relative(reference::rope_inv_freq(kHeadDim, kTheta, kLlama31),
                       expected_llama31_inv_freq());
  // Without scaling it is the plain table.
  expect_near_relative(reference::rope_inv_freq(kHeadDim, kTheta, RopeScaling{}),
                       cpu::rope_inv_freq(kHeadDim, kTheta));
  EXPECT_THROW((void)reference::rope_inv_freq(kHeadDim, kTheta, RopeScaling{"yarn", 2, 1, 4, 64}),
               std::invalid_argument);
}

TEST(RopeScaling, NoParametersMeansNoScaling) {
  Manifest m = builtin_shape("smollm2-135m");
  BlockSpec gqa;
  gqa.kind = "gqa";
  const ParamList params = m.block_params(gqa);
  EXPECT_EQ(params.find("rope_scaling_type"), nullptr);
  const sdk::RopeScalingParams s = sdk::rope_scaling_from_params(sdk::Params(params.c_params()));
  EXPECT_TRUE(s.type.empty());
  std::vector<double> inv_freq = cpu::rope_inv_freq(64, 100000.0);
  const std::vector<double> before = inv_freq;
  sdk::apply_rope_scaling(inv_freq, s);
  EXPECT_EQ(inv_freq, before);
}

TEST(RopeScaling, SdkRefusesBadParameters) {
  auto parse = [](ParamList p) { return sdk::rope_scaling_from_params(sdk::Params(p.c_params())); };
  auto expect_invalid = [&](ParamList p, const std::string& part) {
    try {
      (void)parse(p);
      FAIL() << "expected std::invalid_argument mentioning " << part;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  ParamList unknown = scaling_params(kLlama31);
  unknown.set("rope_scaling_type", std::string("yarn"));
  expect_invalid(unknown, "rope_scaling_type 'yarn'");
  ParamList zero_factor = scaling_params(kLlama31);
  zero_factor.set("rope_scaling_factor", 0.0);
  expect_invalid(zero_factor, "rope_scaling_factor");
  ParamList inverted = scaling_params(kLlama31);
  inverted.set("rope_scaling_high_freq_factor", 0.5);
  expect_invalid(inverted, "0 < low < high");
  ParamList no_context = scaling_params(kLlama31);
  no_context.set("rope_scaling_original_max_position_embeddings", int64_t{0});
  expect_invalid(no_context, "original_max_position_embeddings");
  ParamList missing;
  missing.set("rope_scaling_type", std::string("llama3"));
  expect_invalid(missing, "rope_scaling_factor");
}

// ---- manifest keys

const std::string kHead = R"([model]
hidden_size = 64
num_layers = 1
num_heads = 4
intermediate_size = 32
vocab_size = 50
)";
const std::string kTail = R"(
[[layers]]
range = 0

[weights]
format = "random"
)";

TEST(RopeScaling, ManifestKeysParseAndWriteBack) {
  const Manifest m =
      parse_manifest(kHead +
                         "rope_scaling = { type = \"llama3\", factor = 8.0, low_freq_factor = 1, "
                         "high_freq_factor = 4.0, original_max_position_embeddings = 8192 }\n" +
                         kTail,
                     "scaled.toml", ".");
  EXPECT_EQ(m.model.rope_scaling, kLlama31);
  const Manifest again = parse_manifest(to_toml(m), "again.toml", ".");
  EXPECT_EQ(again.model.rope_scaling, kLlama31);
  EXPECT_NE(to_toml(m).find("rope_scaling = { type = \"llama3\", factor = 8.0"), std::string::npos);

  const ParamList params = m.block_params(m.layers[0].attention);
  ASSERT_NE(params.find("rope_scaling_factor"), nullptr);
  EXPECT_EQ(std::get<double>(*params.find("rope_scaling_factor")), 8.0);
  EXPECT_EQ(std::get<int64_t>(*params.find("rope_scaling_original_max_position_embeddings")), 8192);

  // The built-in Llama 3.1 shape carries it; without it nothing is written.
  EXPECT_EQ(builtin_shape("llama-3.1-8b").model.rope_scaling, kLlama31);
  EXPECT_FALSE(builtin_shape("smollm2-135m").model.rope_scaling.enabled());
  EXPECT_EQ(to_toml(builtin_shape("smollm2-135m")).find("rope_scaling"), std::string::npos);
}

TEST(RopeScaling, ManifestErrorsNameTheKey) {
  auto expect_error = [](const std::string& scaling, const std::string& part) {
    try {
      (void)parse_manifest(kHead + "rope_scaling = " + scaling + "\n" + kTail, "bad.toml", ".");
      FAIL() << "expected a ManifestError for " << scaling;
    } catch (const ManifestError& e) {
      EXPECT_EQ(e.line, 7) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  const std::string rest =
      ", factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, "
      "original_max_position_embeddings = 8192 }";
  expect_error("{ type = \"yarn\"" + rest, "expected one of \"llama3\"");
  expect_error("{ factor = 8.0 }", "missing required key 'type'");
  expect_error("{ type = \"llama3\", factor = 8.0 }", "missing required key 'low_freq_factor'");
  expect_error("{ type = \"llama3\"" + rest.substr(0, rest.size() - 2) + ", beta = 1 }",
               "unknown key 'beta'");
  expect_error(
      "{ type = \"llama3\", factor = 8.0, low_freq_factor = 4.0, high_freq_factor = 4.0, "
      "original_max_position_embeddings = 8192 }",
      "must be greater than low_freq_factor");
  expect_error(
      "{ type = \"llama3\", factor = -1.0, low_freq_factor = 1.0, high_freq_factor = 4.0, "
      "original_max_position_embeddings = 8192 }",
      "'factor' in [model] rope_scaling is -1");
  expect_error(
      "{ type = \"llama3\", factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, "
      "original_max_position_embeddings = 0 }",
      "original_max_position_embeddings");
  expect_error("\"llama3\"", "must be a table");
}

// ---- the CPU plugin, through a whole model

TEST(RopeScaling, CpuAttentionMatchesTheReferenceAndTheScalingMatters) {
  // A short original context makes every regime occur at small positions.
  Manifest scaled = test::hetero_manifest();
  scaled.model.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 16};
  const Manifest plain = test::hetero_manifest();
  const WeightStore weights = init_random_weights(plain, test::plugins(), 7);

  const std::vector<int32_t> prompt = {5, 17, 3, 99, 42, 8, 23, 61, 2, 77, 12, 30};
  Model scaled_model(scaled, test::plugins(), weights, test::test_pool());
  Model plain_model(plain, test::plugins(), weights, test::test_pool());
  const std::vector<float> with = test::run_logits(scaled_model, test::one_sequence(prompt));
  const std::vector<float> without = test::run_logits(plain_model, test::one_sequence(prompt));

  test::ReferenceModel reference(scaled, weights);
  EXPECT_LT(test::max_abs_diff(with, reference.feed(prompt)), 2e-4f);
  EXPECT_GT(test::max_abs_diff(with, without), 1e-3f);  // the scaling changes the result
}

}  // namespace
}  // namespace tessera
