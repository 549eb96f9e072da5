// config.json <-> Manifest: DeciLM's FFN width rule both ways, Llama and DeciLM configs, every
// refusal, and the writer's output read back.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/formats/hf_config.hpp>
#include <vector>

#include "hf_fixtures.hpp"

namespace tessera {
namespace {

using nlohmann::json;

// ---- the FFN width rule

TEST(HfConfigFfnWidth, MatchesThePuzzleTable) {
  EXPECT_EQ(decilm_ffn_width(5.25, 8192), 28672);
  EXPECT_EQ(decilm_ffn_width(2.625, 8192), 14336);
  EXPECT_EQ(decilm_ffn_width(1.3125, 8192), 7168);
  EXPECT_EQ(decilm_ffn_width(1.0, 8192), 5632);
  EXPECT_EQ(decilm_ffn_width(0.5, 8192), 2816);
  EXPECT_EQ(decilm_ffn_width(3.28125, 8192), 17920);
  EXPECT_EQ(decilm_ffn_width(1.95, 16384), 21504);  // 21299.2 -> 21299 -> up to 21504
  EXPECT_EQ(decilm_ffn_width(1e-7, 8192), 0);       // rounds to 0 at 6 decimals
}

TEST(HfConfigFfnWidth, RefusesUnusableMultipliers) {
  test::expect_error_with([] { (void)decilm_ffn_width(0.0, 8192); }, {"ffn_mult 0", "> 0"});
  test::expect_error_with([] { (void)decilm_ffn_width(-1.0, 8192); }, {"ffn_mult -1"});
  test::expect_error_with([] { (void)decilm_ffn_width(1e300, 8192); }, {"over the limit"});
  test::expect_error_with([] { (void)decilm_ffn_width(1.0, 0); }, {"hidden_size 0"});
}

TEST(HfConfigFfnWidth, EveryMultipleOf256HasAMultiplierThatGivesItBack) {
  for (const int64_t hidden : {64, 576, 4096, 8192, 16384}) {
    for (int64_t width = 256; width <= 64 * 1024; width += 256) {
      const std::optional<double> mult = decilm_ffn_mult_for_width(width, hidden);
      ASSERT_TRUE(mult.has_value()) << "width " << width << " hidden " << hidden;
      EXPECT_EQ(decilm_ffn_width(*mult, hidden), width) << "mult " << *mult;
    }
  }
  // Puzzle's widths come back as Puzzle's multipliers.
  EXPECT_EQ(decilm_ffn_mult_for_width(28672, 8192), 5.25);
  EXPECT_EQ(decilm_ffn_mult_for_width(14336, 8192), 2.625);
  EXPECT_EQ(decilm_ffn_mult_for_width(7168, 8192), 1.3125);
  // Puzzle's 1.0 and 0.5 give these widths too; the exact ratio is what comes back.
  EXPECT_EQ(decilm_ffn_mult_for_width(5632, 8192), 1.03125);
  EXPECT_EQ(decilm_ffn_mult_for_width(2816, 8192), 0.515625);
  // No exact ratio within 6 decimals: the shortest multiplier that works.
  const std::optional<double> short_mult = decilm_ffn_mult_for_width(256, 576);
  ASSERT_TRUE(short_mult.has_value());
  EXPECT_EQ(decilm_ffn_width(*short_mult, 576), 256);
  EXPECT_EQ(*short_mult, 0.6);  // 3 * 256 / 1152 = 0.666...; int(2 * 0.6 * 576 / 3) = 230 -> 256
}

TEST(HfConfigFfnWidth, OtherWidthsHaveNone) {
  EXPECT_FALSE(decilm_ffn_mult_for_width(5000, 8192).has_value());
  EXPECT_FALSE(decilm_ffn_mult_for_width(0, 8192).has_value());
  EXPECT_FALSE(decilm_ffn_mult_for_width(-256, 8192).has_value());
  EXPECT_FALSE(decilm_ffn_mult_for_width(256, 0).has_value());
}

// ---- reading

json llama31_8b() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

json attention(const json& n_heads_in_group, bool no_op = false, bool linear = false) {
  return {{"n_heads_in_group", n_heads_in_group},
          {"no_op", no_op},
          {"replace_with_linear", linear},
          {"sparsify", nullptr},
          {"window_length", nullptr},
          {"num_sink_tokens", nullptr},
          {"unshifted_sink", false},
          {"use_prefill_window_in_sink_attention", false}};
}
json ffn(const json& ffn_mult, bool no_op = false, bool linear = false) {
  return {{"ffn_mult", ffn_mult},
          {"no_op", no_op},
          {"replace_with_linear", linear},
          {"sparsify", nullptr}};
}

// Four layers at hidden 8192 / 64 heads, in the Nemotron style.
json nemotron() {
  json c = {{"architectures", {"DeciLMForCausalLM"}},
            {"model_type", "nemotron-nas"},
            {"hidden_size", 8192},
            {"num_attention_heads", 64},
            {"num_hidden_layers", 4},
            {"num_key_value_heads", nullptr},
            {"intermediate_size", nullptr},
            {"vocab_size", 128256},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 500000.0},
            {"max_position_embeddings", 131072},
            {"bos_token_id", 128000},
            {"eos_token_id", 128009},
            {"tie_word_embeddings", false}};
  c["block_configs"] = {{{"attention", attention(8)}, {"ffn", ffn(5.25)}},
                        {{"attention", attention(nullptr, true)}, {"ffn", ffn(1.3125)}},
                        {{"attention", attention(nullptr, false, true)}, {"ffn", ffn(1.0)}},
                        {{"attention", attention(64)}, {"ffn", ffn(nullptr, true)}}};
  return c;
}

TEST(HfConfigRead, Llama31) {
  const HfConfig config = parse_hf_config(llama31_8b().dump(), "llama/config.json");
  EXPECT_EQ(config.architecture, "LlamaForCausalLM");
  const Manifest& m = config.manifest;
  EXPECT_EQ(m.model.hidden_size, 4096);
  EXPECT_EQ(m.model.num_layers, 32);
  EXPECT_EQ(m.model.num_heads, 32);
  EXPECT_EQ(m.model.head_dim, 128);
  EXPECT_EQ(m.model.num_kv_heads, 8);
  EXPECT_EQ(m.model.intermediate_size, 14336);
  EXPECT_EQ(m.model.vocab_size, 128256);
  EXPECT_EQ(m.model.rope_theta, 500000.0);
  EXPECT_EQ(m.model.rope_scaling, (RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192}));
  EXPECT_EQ(m.model.rms_norm_eps, 1e-5);
  EXPECT_EQ(m.model.max_seq_len, 131072);
  EXPECT_FALSE(m.model.tie_embeddings);
  EXPECT_EQ(m.model.bos_token_id, 128000);
  EXPECT_EQ(m.model.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(m.weights.format, "hf");
  ASSERT_EQ(m.layers.size(), 32u);
  for (const std::string& layer : test::effective_layers(m))
    EXPECT_EQ(layer, "gqa kv=8 | swiglu w=14336");
  // The manifest it gives is one the manifest parser accepts (once it knows the folder).
  Manifest with_path = m;
  with_path.weights.path = "llama";
  const Manifest again = parse_manifest(to_toml(with_path), "again.toml", ".");
  EXPECT_EQ(test::effective_layers(again), test::effective_layers(m));
  EXPECT_EQ(again.model.rope_scaling, m.model.rope_scaling);
}

TEST(HfConfigRead, LlamaDefaultsAndOlderKeys) {
  json c = llama31_8b();
  for (const char* key :
       {"num_key_value_heads", "rope_theta", "rms_norm_eps", "max_position_embeddings",
        "tie_word_embeddings", "bos_token_id", "eos_token_id", "hidden_act", "architectures"}) {
    c.erase(key);
  }
  c["rope_scaling"] = {{"type", "default"}};
  c["head_dim"] = 64;  // explicit head_dim wins over hidden / heads
  const Manifest m = parse_hf_config(c.dump(), "config.json").manifest;
  EXPECT_EQ(m.model.num_kv_heads, 32);
  EXPECT_EQ(m.model.head_dim, 64);
  EXPECT_EQ(m.model.rope_theta, 10000.0);
  EXPECT_EQ(m.model.rms_norm_eps, 1e-6);
  EXPECT_EQ(m.model.max_seq_len, 2048);
  EXPECT_FALSE(m.model.rope_scaling.enabled());
  EXPECT_EQ(m.model.bos_token_id, -1);
  EXPECT_TRUE(m.model.eos_token_ids.empty());

  c["rope_scaling"] = {{"type", "llama3"},
                       {"factor", 2},
                       {"low_freq_factor", 1},
                       {"high_freq_factor", 2},
                       {"original_max_position_embeddings", 4096}};
  EXPECT_EQ(parse_hf_config(c.dump(), "config.json").manifest.model.rope_scaling,
            (RopeScaling{"llama3", 2.0, 1.0, 2.0, 4096}));
}

TEST(HfConfigRead, DeciLMBlockConfigs) {
  const HfConfig config = parse_hf_config(nemotron().dump(), "nemotron/config.json");
  EXPECT_EQ(config.architecture, "DeciLMForCausalLM");
  EXPECT_EQ(test::effective_layers(config.manifest),
            (std::vector<std::string>{"gqa kv=8 | swiglu w=28672", "noop | swiglu w=7168",
                                      "linear | swiglu w=5632", "gqa kv=1 | noop"}));
  // Model-wide defaults: the most common values.
  EXPECT_EQ(config.manifest.model.num_kv_heads, 1);  // ties go to the smaller value
  EXPECT_GT(config.manifest.model.intermediate_size, 0);
  EXPECT_EQ(config.manifest.model.eos_token_ids, std::vector<int64_t>{128009});

  json deci = nemotron();
  deci["model_type"] = "deci";
  deci["block_configs"][0]["ffn"]["ffn_mult"] = nullptr;
  deci["block_configs"][0]["ffn"]["intermediate_size"] = 4096;  // newer form: width given
  deci["block_configs"][0]["attention"]["mamba"] = nullptr;     // unset features are fine
  deci["block_configs"][0]["ffn"]["gated"] = true;
  EXPECT_EQ(test::effective_layers(parse_hf_config(deci.dump(), "c.json").manifest)[0],
            "gqa kv=8 | swiglu w=4096");
}

TEST(HfConfigRead, OlderDeciKvHeadsPerLayer) {
  const json c = {{"architectures", {"DeciLMForCausalLM"}},
                  {"model_type", "deci"},
                  {"hidden_size", 256},
                  {"num_attention_heads", 8},
                  {"num_hidden_layers", 3},
                  {"intermediate_size", 512},
                  {"vocab_size", 1000},
                  {"num_key_value_heads_per_layer", {4, 2, 1}}};
  EXPECT_EQ(test::effective_layers(parse_hf_config(c.dump(), "c.json").manifest),
            (std::vector<std::string>{"gqa kv=4 | swiglu w=512", "gqa kv=2 | swiglu w=512",
                                      "gqa kv=1 | swiglu w=512"}));
  json bad = c;
  bad["num_key_value_heads_per_layer"] = {4, 3, 1};
  test::expect_error_with([&] { (void)parse_hf_config(bad.dump(), "c.json"); },
                          {"'num_key_value_heads_per_layer[1]'", "is 3", "divisor"});
  bad["num_key_value_heads_per_layer"] = {4, 2};
  test::expect_error_with([&] { (void)parse_hf_config(bad.dump(), "c.json"); },
                          {"'num_key_value_heads_per_layer'", "num_hidden_layers = 3"});
}

// Each case: a change to a valid config, and what the error must say (besides the file name).
struct ConfigCase {
  const char* what;
  std::function<void(json&)> edit;
  std::vector<std::string> parts;
};

void expect_refused(const json& base, const ConfigCase& c) {
  json config = base;
  c.edit(config);
  SCOPED_TRACE(c.what);
  std::vector<std::string> parts = c.parts;
  try {
    (void)parse_hf_config(config.dump(), "models/x/config.json");
    ADD_FAILURE() << "expected a ModelError";
  } catch (const ModelError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("models/x/config.json: ", 0), 0u) << message;
    for (const std::string& part : parts)
      EXPECT_NE(message.find(part), std::string::npos) << "missing '" << part << "' in " << message;
  }
}

TEST(HfConfigRead, GlobalRefusals) {
  const std::vector<ConfigCase> cases = {
      {"not JSON", [](json& c) { c = "x"; }, {"expected a JSON object"}},
      {"architecture",
       [](json& c) { c["architectures"] = {"MistralForCausalLM"}; },
       {"'architectures'", "MistralForCausalLM", "expected \"LlamaForCausalLM\" or"}},
      {"two architectures",
       [](json& c) {
         c["architectures"] = {"LlamaForCausalLM", "DeciLMForCausalLM"};
       },
       {"'architectures'", "expected one name"}},
      {"no architecture",
       [](json& c) {
         c.erase("architectures");
         c["model_type"] = "gpt2";
       },
       {"'architectures' is missing", "\"gpt2\""}},
      {"model_type",
       [](json& c) { c["model_type"] = "mistral"; },
       {"'model_type'", "\"mistral\"", "expected \"llama\""}},
      {"attention_bias",
       [](json& c) { c["attention_bias"] = true; },
       {"'attention_bias' is true", "expected false"}},
      {"mlp_bias", [](json& c) { c["mlp_bias"] = true; }, {"'mlp_bias' is true"}},
      {"hidden_act",
       [](json& c) { c["hidden_act"] = "gelu"; },
       {"'hidden_act'", "\"gelu\"", "expected \"silu\""}},
      {"quantised",
       [](json& c) {
         c["quantization_config"] = {{"quant_method", "gptq"}};
       },
       {"'quantization_config'", "quantised checkpoints are not supported"}},
      {"sliding window",
       [](json& c) { c["sliding_window"] = 4096; },
       {"'sliding_window'", "window attention"}},
      {"rope type",
       [](json& c) { c["rope_scaling"]["rope_type"] = "yarn"; },
       {"'rope_scaling.rope_type'", "\"yarn\"", "expected \"llama3\""}},
      {"rope field",
       [](json& c) { c["rope_scaling"].erase("low_freq_factor"); },
       {"'rope_scaling.low_freq_factor' is missing"}},
      {"rope order",
       [](json& c) { c["rope_scaling"]["high_freq_factor"] = 0.5; },
       {"'rope_scaling.high_freq_factor'", "more than low_freq_factor"}},
      {"rope context",
       [](json& c) { c["rope_scaling"]["original_max_position_embeddings"] = 8192.5; },
       {"'rope_scaling.original_max_position_embeddings'", "positive integer"}},
      {"rope not an object",
       [](json& c) { c["rope_scaling"] = 8; },
       {"'rope_scaling'", "must be null or an object"}},
      {"hidden_size missing",
       [](json& c) { c.erase("hidden_size"); },
       {"'hidden_size' is missing", "positive integer"}},
      {"hidden_size type",
       [](json& c) { c["hidden_size"] = "4096"; },
       {"'hidden_size'", "the string \"4096\""}},
      {"hidden_size huge",
       [](json& c) { c["hidden_size"] = 1ull << 40; },
       {"'hidden_size'", "1099511627776"}},
      {"heads", [](json& c) { c["num_attention_heads"] = 0; }, {"'num_attention_heads' is 0"}},
      {"head_dim",
       [](json& c) { c["num_attention_heads"] = 3; },
       {"'num_attention_heads' is 3", "does not divide hidden_size 4096"}},
      {"kv heads",
       [](json& c) { c["num_key_value_heads"] = 5; },
       {"'num_key_value_heads' is 5", "divisor of num_attention_heads = 32"}},
      {"intermediate_size",
       [](json& c) { c.erase("intermediate_size"); },
       {"'intermediate_size' is missing"}},
      {"eps", [](json& c) { c["rms_norm_eps"] = 0; }, {"'rms_norm_eps' is 0", "> 0"}},
      {"tie",
       [](json& c) { c["tie_word_embeddings"] = 1; },
       {"'tie_word_embeddings'", "true or false"}},
      {"bos",
       [](json& c) { c["bos_token_id"] = 128256; },
       {"'bos_token_id' is 128256", "[0, 128255]"}},
      {"eos item",
       [](json& c) {
         c["eos_token_id"] = {1, -2};
       },
       {"'eos_token_id[1]' is -2"}},
      {"eos null item",
       [](json& c) {
         c["eos_token_id"] = {1, nullptr};
       },
       {"'eos_token_id[1]' is missing"}},
      {"block_configs on llama",
       [](json& c) { c["block_configs"] = json::array(); },
       {"'block_configs'", "expected DeciLMForCausalLM"}},
  };
  for (const ConfigCase& c : cases) expect_refused(llama31_8b(), c);
  test::expect_error_with([] { (void)parse_hf_config("{ \"a\": ", "broken.json"); },
                          {"broken.json", "not valid JSON"});
}

TEST(HfConfigRead, BlockConfigRefusalsNameTheLayer) {
  const std::vector<ConfigCase> cases = {
      {"missing",
       [](json& c) { c.erase("block_configs"); },
       {"'block_configs' is missing", "one entry per layer"}},
      {"length",
       [](json& c) { c["block_configs"].erase(3); },
       {"'block_configs' has 3 entries", "num_hidden_layers = 4"}},
      {"not a list",
       [](json& c) {
         c["block_configs"] = {{"a", 1}};
       },
       {"'block_configs' must be a list"}},
      {"entry type",
       [](json& c) { c["block_configs"][2] = 5; },
       {"'block_configs[2]' must be an object"}},
      {"no attention",
       [](json& c) { c["block_configs"][1].erase("attention"); },
       {"'block_configs[1].attention' is missing"}},
      {"no_op and linear",
       [](json& c) { c["block_configs"][1]["attention"]["replace_with_linear"] = true; },
       {"'block_configs[1].attention'", "both no_op and replace_with_linear"}},
      {"ffn no_op and linear",
       [](json& c) { c["block_configs"][3]["ffn"]["replace_with_linear"] = true; },
       {"'block_configs[3].ffn'", "exclude each other"}},
      {"window",
       [](json& c) { c["block_configs"][0]["attention"]["window_length"] = 4096; },
       {"'block_configs[0].attention.window_length'", "window attention is not supported"}},
      {"sinks",
       [](json& c) { c["block_configs"][3]["attention"]["num_sink_tokens"] = 4; },
       {"'block_configs[3].attention.num_sink_tokens'", "sink attention"}},
      {"sparsify attention",
       [](json& c) { c["block_configs"][0]["attention"]["sparsify"] = {"q_proj"}; },
       {"'block_configs[0].attention.sparsify'", "sparsified blocks are not supported"}},
      {"sparsify ffn",
       [](json& c) { c["block_configs"][1]["ffn"]["sparsify"] = true; },
       {"'block_configs[1].ffn.sparsify'"}},
      {"group missing",
       [](json& c) { c["block_configs"][0]["attention"]["n_heads_in_group"] = nullptr; },
       {"'block_configs[0].attention.n_heads_in_group' is missing"}},
      {"group divisor",
       [](json& c) { c["block_configs"][3]["attention"]["n_heads_in_group"] = 6; },
       {"'block_configs[3].attention.n_heads_in_group' is 6",
        "divisor of num_attention_heads = 64"}},
      {"group type",
       [](json& c) { c["block_configs"][3]["attention"]["n_heads_in_group"] = 8.5; },
       {"'block_configs[3].attention.n_heads_in_group'", "the number 8.5"}},
      {"ffn_mult missing",
       [](json& c) { c["block_configs"][2]["ffn"]["ffn_mult"] = nullptr; },
       {"'block_configs[2].ffn.ffn_mult' is missing", "rounded up to a multiple of 256"}},
      {"ffn_mult zero",
       [](json& c) { c["block_configs"][2]["ffn"]["ffn_mult"] = 0; },
       {"'block_configs[2].ffn.ffn_mult' is 0"}},
      {"ffn_mult tiny",
       [](json& c) { c["block_configs"][2]["ffn"]["ffn_mult"] = 1e-9; },
       {"'block_configs[2].ffn.ffn_mult'", "FFN width of 0"}},
      {"ffn_mult huge",
       [](json& c) { c["block_configs"][2]["ffn"]["ffn_mult"] = 1e12; },
       {"'block_configs[2].ffn.ffn_mult'", "over the limit"}},
      {"width disagrees",
       [](json& c) { c["block_configs"][0]["ffn"]["intermediate_size"] = 28000; },
       {"'block_configs[0].ffn.intermediate_size' is 28000", "gives 28672"}},
      {"ungated",
       [](json& c) { c["block_configs"][0]["ffn"]["gated"] = false; },
       {"'block_configs[0].ffn.gated' is false"}},
      {"ffn act",
       [](json& c) { c["block_configs"][0]["ffn"]["hidden_act"] = "relu"; },
       {"'block_configs[0].ffn.hidden_act'", "\"relu\""}},
      {"unknown feature",
       [](json& c) {
         c["block_configs"][1]["ffn"]["moe"] = {{"experts", 8}};
       },
       {"'block_configs[1].ffn.moe'", "a setting Tessera does not support"}},
      {"unknown flag",
       [](json& c) { c["block_configs"][1]["attention"]["llama4"] = true; },
       {"'block_configs[1].attention.llama4' is true"}},
      {"sink flag type",
       [](json& c) { c["block_configs"][1]["attention"]["unshifted_sink"] = "no"; },
       {"'block_configs[1].attention.unshifted_sink' must be true or false"}},
  };
  for (const ConfigCase& c : cases) expect_refused(nemotron(), c);
}

// ---- writing

TEST(HfConfigWrite, HeterogeneousManifestRoundTripsThroughText) {
  const Manifest m = test::hf_hetero_manifest();
  EXPECT_FALSE(is_uniform_llama(m));
  const HfConfig back = parse_hf_config(hf_config_json(m), "written.json");
  EXPECT_EQ(back.architecture, "DeciLMForCausalLM");
  EXPECT_EQ(test::effective_layers(back.manifest), test::effective_layers(m));
  EXPECT_EQ(back.manifest.model.rope_scaling, m.model.rope_scaling);
  EXPECT_EQ(back.manifest.model.name, "hf-hetero");
}

TEST(HfConfigWrite, UniformManifestIsLlamaUnlessAskedOtherwise) {
  const HfConfig llama = parse_hf_config(llama31_8b().dump(), "in.json");
  ASSERT_TRUE(is_uniform_llama(llama.manifest));
  const json written = json::parse(hf_config_json(llama.manifest));
  EXPECT_EQ(written["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(written["intermediate_size"], 14336);
  EXPECT_EQ(written["num_key_value_heads"], 8);
  EXPECT_EQ(written["eos_token_id"], json::array({128001, 128008, 128009}));
  EXPECT_EQ(written["rope_scaling"]["factor"], 8.0);

  HfConfigWriteOptions decilm;
  decilm.always_decilm = true;
  decilm.torch_dtype = TS_F16;
  const json forced = json::parse(hf_config_json(llama.manifest, decilm));
  EXPECT_EQ(forced["architectures"], json::array({"DeciLMForCausalLM"}));
  EXPECT_EQ(forced["torch_dtype"], "float16");
  ASSERT_EQ(forced["block_configs"].size(), 32u);
  EXPECT_EQ(forced["block_configs"][0]["attention"]["n_heads_in_group"], 4);
  EXPECT_EQ(forced["block_configs"][0]["ffn"]["ffn_mult"], 5.25);
  const HfConfig back = parse_hf_config(forced.dump(), "forced.json");
  EXPECT_EQ(test::effective_layers(back.manifest), test::effective_layers(llama.manifest));
}

}  // namespace
}  // namespace tessera
