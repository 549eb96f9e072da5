// Hugging Face folders: the writer and the reader together (heterogeneous DeciLM and uniform
// Llama models, single file and sharded, dtype conversion, tokenizer files), and every error
// of the reader and the writer.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/formats/hf_config.hpp>
#include <tessera/formats/hf_writer.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/formats/safetensors.hpp>
#include <vector>

#include "hf_fixtures.hpp"
#include "model_fixtures.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::expect_error_with;

const fs::path kTokenizerJson =
    fs::path(TESSERA_SOURCE_DIR) / "tests" / "data" / "tokenizer" / "toy_llama3.json";
const std::string kChatTemplate =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

void expect_same_tensors(const WeightStore& got, const WeightStore& want) {
  ASSERT_EQ(got.all().size(), want.all().size());
  for (const auto& [name, tensor] : want.all()) {
    ASSERT_TRUE(got.has(name)) << name;
    EXPECT_TRUE(same_bytes(got.get(name), tensor)) << name;
  }
}

std::vector<float> logits_of(const Manifest& m, const WeightStore& w,
                             const std::vector<int32_t>& prompt) {
  Model model(m, test::plugins(), w, test::test_pool());
  return test::run_logits(model, test::one_sequence(prompt));
}

class HfModelTest : public test::TempFolderTest {
 protected:
  // A folder holding the toy tokenizer and a tokenizer_config.json with a chat template.
  fs::path tokenizer_folder() {
    const fs::path folder = dir_ / "tokenizer-source";
    fs::create_directories(folder);
    fs::copy_file(kTokenizerJson, folder / "tokenizer.json", fs::copy_options::overwrite_existing);
    write_file(folder / "tokenizer_config.json",
               json{{"chat_template", kChatTemplate}, {"bos_token", "<|im_start|>"}}.dump());
    return folder;
  }

  // Writes the heterogeneous model with random f32 weights; returns the folder.
  fs::path write_hetero(const std::string& name, HfWriteOptions options = {}) {
    const fs::path folder = dir_ / name;
    write_hf_model(folder, plan_weights(manifest_, test::plugins()), weights_, options);
    return folder;
  }

  // Rewrites the folder's model.safetensors with `edit` applied to its tensors.
  template <class Edit>
  void edit_weights(const fs::path& folder, Edit&& edit) {
    const WeightStore loaded = read_safetensors(folder / "model.safetensors");
    WeightStore copy;
    for (const auto& [name, tensor] : loaded.all()) copy.add(name, tensor.clone());
    edit(copy);
    fs::remove(folder / "model.safetensors");
    write_safetensors(folder / "model.safetensors", copy);
  }

  Manifest manifest_ = test::hf_hetero_manifest();
  WeightStore weights_ = init_random_weights(manifest_, test::plugins(), 3);
};

// ---- round trips

TEST_F(HfModelTest, HeterogeneousModelRoundTripsExactly) {
  HfWriteOptions options;
  options.tokenizer.source = tokenizer_folder();
  const fs::path folder = dir_ / "hetero";
  const HfWriteResult result =
      write_hf_model(folder, plan_weights(manifest_, test::plugins()), weights_, options);
  EXPECT_EQ(result.architecture, "DeciLMForCausalLM");
  EXPECT_EQ(result.files, (std::vector<std::string>{"config.json", "model.safetensors",
                                                    "tokenizer.json", "tokenizer_config.json"}));
  EXPECT_TRUE(result.dropped.empty());
  EXPECT_EQ(entries(dir_), (std::vector<std::string>{"hetero", "tokenizer-source"}));

  const LoadedModel loaded = load_hf_model(folder);
  EXPECT_EQ(loaded.format, ModelFormat::kHuggingFace);
  EXPECT_EQ(loaded.architecture, "DeciLMForCausalLM");
  EXPECT_EQ(test::effective_layers(loaded.manifest), test::effective_layers(manifest_));
  const ModelSpec& a = loaded.manifest.model;
  const ModelSpec& b = manifest_.model;
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling, b.rope_scaling);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(loaded.manifest.weights.format, "hf");
  EXPECT_EQ(loaded.manifest.weights.path, fs::absolute(folder).lexically_normal());
  expect_same_tensors(loaded.weights, weights_);

  ASSERT_NE(loaded.tokenizer, nullptr) << loaded.tokenizer_error;
  EXPECT_EQ(loaded.tokenizer->vocab_size(), 600);
  EXPECT_EQ(loaded.chat_template, kChatTemplate);

  // The same logits through the engine, and the manifest it read writes back and parses.
  const std::vector<int32_t> prompt = {1, 17, 300, 5, 639, 42, 2};
  EXPECT_EQ(logits_of(loaded.manifest, loaded.weights, prompt),
            logits_of(manifest_, weights_, prompt));
  const Manifest again = parse_manifest(to_toml(loaded.manifest), "again.toml", ".");
  EXPECT_EQ(test::effective_layers(again), test::effective_layers(manifest_));
  EXPECT_EQ(again.weights.format, "hf");
}

TEST_F(HfModelTest, DeciLMConfigHasEveryFieldTheModelCodeReads) {
  const json config = json::parse(read_file(write_hetero("hetero") / "config.json"));
  EXPECT_EQ(config["architectures"], json::array({"DeciLMForCausalLM"}));
  EXPECT_EQ(config["model_type"], "nemotron-nas");
  EXPECT_TRUE(config["auto_map"].contains("AutoModelForCausalLM"));
  for (const char* key :
       {"hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "rms_norm_eps",
        "rope_theta", "max_position_embeddings", "hidden_act", "attention_bias", "mlp_bias",
        "tie_word_embeddings", "bos_token_id", "eos_token_id", "torch_dtype", "pretraining_tp"}) {
    EXPECT_TRUE(config.contains(key)) << key;
  }
  EXPECT_TRUE(config["intermediate_size"].is_null());
  EXPECT_TRUE(config["num_key_value_heads"].is_null());
  EXPECT_EQ(config["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(config["rope_scaling"]["original_max_position_embeddings"], 16);
  EXPECT_EQ(config["torch_dtype"], "float32");
  EXPECT_EQ(config["eos_token_id"], json::array({2, 0}));

  const json& blocks = config["block_configs"];
  ASSERT_EQ(blocks.size(), 6u);
  for (const json& block : blocks) {
    for (const char* key :
         {"n_heads_in_group", "no_op", "replace_with_linear", "sparsify", "window_length",
          "num_sink_tokens", "unshifted_sink", "use_prefill_window_in_sink_attention"}) {
      EXPECT_TRUE(block["attention"].contains(key)) << key;
    }
    for (const char* key : {"ffn_mult", "no_op", "replace_with_linear", "sparsify"}) {
      EXPECT_TRUE(block["ffn"].contains(key)) << key;
    }
  }
  // kv 4 -> group 1, kv 1 -> group 4; linear and no-op null the sizes.
  EXPECT_EQ(blocks[0]["attention"]["n_heads_in_group"], 1);
  EXPECT_EQ(blocks[1]["attention"]["n_heads_in_group"], 4);
  EXPECT_EQ(blocks[2]["attention"]["replace_with_linear"], true);
  EXPECT_TRUE(blocks[2]["attention"]["n_heads_in_group"].is_null());
  EXPECT_EQ(blocks[3]["attention"]["no_op"], true);
  EXPECT_TRUE(blocks[3]["attention"]["n_heads_in_group"].is_null());
  EXPECT_EQ(blocks[5]["attention"]["n_heads_in_group"], 2);
  // Widths 256, 512, 768 at hidden 64: int(2 * m * 64 / 3) rounded up to 256.
  EXPECT_EQ(blocks[0]["ffn"]["ffn_mult"], 6.0);
  EXPECT_EQ(blocks[1]["ffn"]["ffn_mult"], 12.0);
  EXPECT_EQ(blocks[3]["ffn"]["ffn_mult"], 18.0);
  EXPECT_EQ(blocks[4]["ffn"]["replace_with_linear"], true);
  EXPECT_TRUE(blocks[4]["ffn"]["ffn_mult"].is_null());
  EXPECT_EQ(blocks[5]["ffn"]["no_op"], true);
  EXPECT_TRUE(blocks[5]["ffn"]["ffn_mult"].is_null());
}

TEST_F(HfModelTest, DtypeConversionOnWrite) {
  HfWriteOptions options;
  options.dtype = TS_BF16;
  const fs::path folder = write_hetero("bf16", options);
  EXPECT_EQ(json::parse(read_file(folder / "config.json"))["torch_dtype"], "bfloat16");
  const LoadedModel loaded = load_hf_model(folder / "config.json");
  ASSERT_EQ(loaded.weights.all().size(), weights_.all().size());
  for (const auto& [name, tensor] : weights_.all()) {
    EXPECT_TRUE(same_bytes(loaded.weights.get(name), tensor.to(TS_BF16))) << name;
  }
  // bf16 weights still run.
  const std::vector<int32_t> prompt = {3, 4, 5};
  EXPECT_EQ(logits_of(loaded.manifest, loaded.weights, prompt).size(), 3u * 640u);
}

TEST_F(HfModelTest, ShardedRoundTrip) {
  HfWriteOptions options;
  options.max_shard_bytes = 100 * 1024;  // the embedding alone is 160 KiB
  const fs::path folder = dir_ / "sharded";
  const HfWriteResult result =
      write_hf_model(folder, plan_weights(manifest_, test::plugins()), weights_, options);
  EXPECT_FALSE(fs::exists(folder / "model.safetensors"));
  const json index = json::parse(read_file(folder / "model.safetensors.index.json"));
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : index["weight_map"].items()) shards.insert(shard);
  EXPECT_GT(shards.size(), 2u);
  EXPECT_EQ(shards.size() + 2, result.files.size());  // + index + config
  EXPECT_EQ(index["weight_map"].size(), weights_.all().size());
  EXPECT_EQ(index["metadata"]["total_size"], result.tensor_bytes);
  // Shard names count from 1 and pad both numbers to five digits.
  char first[64];
  std::snprintf(first, sizeof first, "model-00001-of-%05zu.safetensors", shards.size());
  EXPECT_EQ(*shards.begin(), first);
  EXPECT_EQ(*shards.rbegin(), std::string(first).replace(6, 5, first + 15, 5));
  uint64_t bytes = 0;
  for (const auto& [name, tensor] : weights_.all()) bytes += tensor.bytes();
  EXPECT_EQ(result.tensor_bytes, bytes);

  const LoadedModel loaded = load_hf_model(folder);
  expect_same_tensors(loaded.weights, weights_);
  EXPECT_EQ(test::effective_layers(loaded.manifest), test::effective_layers(manifest_));

  // A manifest pointing at the folder (format "hf") reads the same weights.
  const Manifest m = parse_manifest(
      "[model]\nhidden_size = 64\nnum_layers = 1\nnum_heads = 4\nvocab_size = 640\n"
      "intermediate_size = 256\n[[layers]]\nrange = 0\n[weights]\nformat = \"hf\"\npath = "
      "\"sharded\"\n",
      "uses-hf.toml", dir_);
  expect_same_tensors(load_weights(m), weights_);
}

TEST_F(HfModelTest, UniformModelIsWrittenAsLlama) {
  Manifest uniform = test::hetero_manifest();  // intermediate_size 96: not a DeciLM width
  for (LayerSpec& layer : uniform.layers) {
    layer.attention = BlockSpec{};
    layer.attention.kind = "gqa";
    layer.ffn = BlockSpec{};
    layer.ffn.kind = "swiglu";
  }
  const WeightStore weights = init_random_weights(uniform, test::plugins(), 5);
  const fs::path folder = dir_ / "llama";
  EXPECT_EQ(write_hf_model(folder, plan_weights(uniform, test::plugins()), weights).architecture,
            "LlamaForCausalLM");
  const json config = json::parse(read_file(folder / "config.json"));
  EXPECT_EQ(config["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(config["model_type"], "llama");
  EXPECT_EQ(config["intermediate_size"], 96);
  EXPECT_EQ(config["num_key_value_heads"], 2);
  EXPECT_FALSE(config.contains("block_configs"));
  EXPECT_TRUE(config["rope_scaling"].is_null());

  const LoadedModel loaded = load_hf_model(folder);
  EXPECT_EQ(loaded.architecture, "LlamaForCausalLM");
  EXPECT_EQ(test::effective_layers(loaded.manifest), test::effective_layers(uniform));
  expect_same_tensors(loaded.weights, weights);
  EXPECT_EQ(loaded.tokenizer, nullptr);
  EXPECT_NE(loaded.tokenizer_error.find("no tokenizer.json"), std::string::npos);
  EXPECT_TRUE(loaded.chat_template.empty());

  // Forced to DeciLM, width 96 has no ffn_mult: refused before anything is written.
  HfWriteOptions decilm;
  decilm.always_decilm = true;
  expect_error_with(
      [&] {
        write_hf_model(dir_ / "forced", plan_weights(uniform, test::plugins()), weights, decilm);
      },
      {"layer 0", "intermediate_size 96", "ffn_mult", "the nearest representable width is 256"});
  EXPECT_FALSE(fs::exists(dir_ / "forced"));

  // A DeciLM-representable uniform model forced to DeciLM reads back the same.
  const fs::path forced = dir_ / "forced-ok";
  Manifest wide = uniform;
  wide.model.intermediate_size = 512;
  const WeightStore wide_weights = init_random_weights(wide, test::plugins(), 6);
  EXPECT_EQ(write_hf_model(forced, plan_weights(wide, test::plugins()), wide_weights, decilm)
                .architecture,
            "DeciLMForCausalLM");
  const LoadedModel wide_loaded = load_hf_model(forced);
  EXPECT_EQ(wide_loaded.architecture, "DeciLMForCausalLM");
  EXPECT_EQ(test::effective_layers(wide_loaded.manifest), test::effective_layers(wide));
}

TEST_F(HfModelTest, ChatTemplateWithoutTokenizerFiles) {
  HfWriteOptions options;
  options.tokenizer.chat_template = kChatTemplate;
  const fs::path folder = write_hetero("template-only", options);
  EXPECT_EQ(json::parse(read_file(folder / "tokenizer_config.json"))["chat_template"],
            kChatTemplate);
  EXPECT_EQ(load_hf_model(folder).chat_template, kChatTemplate);
}

// ---- writer errors

TEST_F(HfModelTest, WriterRefusesWhatConfigJsonCannotSay) {
  Manifest odd = manifest_;
  odd.layers[3].ffn.params.set("intermediate_size", int64_t{300});
  const WeightStore odd_weights = init_random_weights(odd, test::plugins(), 1);
  expect_error_with(
      [&] { write_hf_model(dir_ / "odd", plan_weights(odd, test::plugins()), odd_weights); },
      {"layer 3", "intermediate_size 300", "256 and 512"});

  // A kind config.json cannot name: no plugin here provides it, so there is no plan to write
  // from, and the config writer refuses it by name too.
  Manifest foreign = manifest_;
  foreign.layers[2].attention.kind = "mamba";
  expect_error_with([&] { (void)plan_weights(foreign, test::plugins()); },
                    {"layer 2", "attention 'mamba'"});
  expect_error_with([&] { (void)hf_config_json(foreign); },
                    {"layer 2", "attention kind 'mamba'", "expected gqa, linear or noop"});

  Manifest extra = manifest_;
  extra.layers[0].attention.params.set("rope_theta", 1000.0);
  expect_error_with(
      [&] { write_hf_model(dir_ / "extra", plan_weights(extra, test::plugins()), weights_); },
      {"layer 0", "parameter 'rope_theta'", "cannot be written to config.json"});

  WeightStore missing;
  for (const auto& [name, tensor] : weights_.all())
    if (name != "model.layers.4.mlp.linear_mlp.weight") missing.add(name, tensor);
  expect_error_with(
      [&] { write_hf_model(dir_ / "missing", plan_weights(manifest_, test::plugins()), missing); },
      {"model.layers.4.mlp.linear_mlp.weight", "is missing", "[64, 64]"});

  WeightStore wrong_shape = missing;
  wrong_shape.add("model.layers.4.mlp.linear_mlp.weight", Tensor({64, 32}, TS_F32));
  expect_error_with(
      [&] {
        write_hf_model(dir_ / "shape", plan_weights(manifest_, test::plugins()), wrong_shape);
      },
      {"model.layers.4.mlp.linear_mlp.weight", "[64, 32]", "[64, 64]"});

  HfWriteOptions int_dtype;
  int_dtype.dtype = TS_I32;
  expect_error_with(
      [&] {
        write_hf_model(dir_ / "i32", plan_weights(manifest_, test::plugins()), weights_, int_dtype);
      },
      {"i32", "expected f32, f16 or bf16"});

  // Nothing of any failed write is left behind.
  EXPECT_EQ(entries(dir_), std::vector<std::string>{});
}

TEST_F(HfModelTest, WriterReportsTensorsNoBlockUses) {
  WeightStore more = weights_;
  more.add("model.layers.3.self_attn.q_proj.weight", Tensor({64, 64}, TS_F32));  // layer 3: noop
  const HfWriteResult result =
      write_hf_model(dir_ / "more", plan_weights(manifest_, test::plugins()), more);
  EXPECT_EQ(result.dropped, std::vector<std::string>{"model.layers.3.self_attn.q_proj.weight"});
  expect_same_tensors(load_hf_model(dir_ / "more").weights, weights_);
}

TEST_F(HfModelTest, WriterKeepsAnExistingFolderUnlessAllowed) {
  const fs::path folder = dir_ / "taken";
  fs::create_directories(folder);
  write_file(folder / "keep.txt", "mine");
  expect_error_with(
      [&] { write_hf_model(folder, plan_weights(manifest_, test::plugins()), weights_); },
      {"taken", "exists and is not empty", "--force"});
  EXPECT_EQ(entries(folder), std::vector<std::string>{"keep.txt"});
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"taken"});

  HfWriteOptions overwrite;
  overwrite.overwrite = true;
  write_hf_model(folder, plan_weights(manifest_, test::plugins()), weights_, overwrite);
  EXPECT_EQ(entries(folder), (std::vector<std::string>{"config.json", "model.safetensors"}));
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"taken"});

  // An empty folder is fine; a file in the way is not.
  fs::create_directories(dir_ / "empty");
  write_hf_model(dir_ / "empty", plan_weights(manifest_, test::plugins()), weights_);
  EXPECT_TRUE(fs::exists(dir_ / "empty" / "config.json"));
  write_file(dir_ / "file", "x");
  expect_error_with(
      [&] {
        write_hf_model(dir_ / "file", plan_weights(manifest_, test::plugins()), weights_,
                       overwrite);
      },
      {"exists and is not a folder"});
}

// ---- reader errors

TEST_F(HfModelTest, ReaderNeedsAFolderConfigAndWeights) {
  expect_error_with([&] { (void)load_hf_model(dir_ / "model.bin"); },
                    {"model.bin", "expected its folder or its config.json"});
  expect_error_with([&] { (void)load_hf_model(dir_); }, {"config.json' does not exist"});
  const fs::path folder = write_hetero("no-weights");
  fs::remove(folder / "model.safetensors");
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {"no-weights", "neither model.safetensors nor model.safetensors.index.json"});
  expect_error_with([&] { (void)load_hf_weights(folder); }, {"neither model.safetensors"});
}

TEST_F(HfModelTest, ReaderChecksEveryTensorAgainstTheConfig) {
  const fs::path folder = write_hetero("checked");
  const std::string file = (folder / "model.safetensors").string();

  edit_weights(folder, [](WeightStore& w) {
    WeightStore fewer;
    for (const auto& [name, tensor] : w.all())
      if (name != "model.layers.1.mlp.up_proj.weight") fewer.add(name, tensor);
    w = fewer;
  });
  // Presence and shape are checked against what the blocks declare, when the model is built.
  const auto build = [&] {
    const LoadedModel loaded = load_hf_model(folder);
    Model model(loaded.manifest, test::plugins(), loaded.weights, test::test_pool());
  };
  expect_error_with(build, {"model.layers.1.mlp.up_proj.weight", "layer 1 ffn swiglu", "is missing",
                            "config.json", "[512, 64]"});

  edit_weights(folder, [](WeightStore& w) {
    w.add("model.layers.1.mlp.up_proj.weight", Tensor({256, 64}, TS_F32));
  });
  expect_error_with(build, {file, "model.layers.1.mlp.up_proj.weight", "layer 1 ffn swiglu",
                            "shape [256, 64]", "[512, 64]"});

  edit_weights(folder, [](WeightStore& w) {
    w.add("model.layers.1.mlp.up_proj.weight", Tensor({512, 64}, TS_I32));
  });
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {file, "model.layers.1.mlp.up_proj.weight", "dtype i32", "f32, f16 or bf16"});

  edit_weights(folder, [&](WeightStore& w) {
    w.add("model.layers.1.mlp.up_proj.weight",
          weights_.get("model.layers.1.mlp.up_proj.weight").clone());
    w.add("model.layers.3.self_attn.q_proj.weight", Tensor({64, 64}, TS_F32));
  });
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {file, "model.layers.3.self_attn.q_proj.weight", "(layer 3)",
                     "is not a weight of the model"});

  // Derived RoPE tables are dropped, not refused.
  edit_weights(folder, [](WeightStore& w) {
    WeightStore kept;
    for (const auto& [name, tensor] : w.all())
      if (name != "model.layers.3.self_attn.q_proj.weight") kept.add(name, tensor);
    kept.add("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor({8}, TS_F32));
    w = kept;
  });
  const LoadedModel loaded = load_hf_model(folder);
  EXPECT_FALSE(loaded.weights.has("model.layers.0.self_attn.rotary_emb.inv_freq"));
  expect_same_tensors(loaded.weights, weights_);
}

TEST_F(HfModelTest, TiedEmbeddingsIgnoreASavedLmHead) {
  Manifest tied = manifest_;
  tied.model.tie_embeddings = true;
  const WeightStore weights = init_random_weights(tied, test::plugins(), 2);
  const fs::path folder = dir_ / "tied";
  write_hf_model(folder, plan_weights(tied, test::plugins()), weights);
  EXPECT_EQ(json::parse(read_file(folder / "config.json"))["tie_word_embeddings"], true);
  edit_weights(folder, [](WeightStore& w) { w.add("lm_head.weight", Tensor({640, 64}, TS_F32)); });
  const LoadedModel loaded = load_hf_model(folder);
  EXPECT_TRUE(loaded.manifest.model.tie_embeddings);
  EXPECT_FALSE(loaded.weights.has("lm_head.weight"));
  expect_same_tensors(loaded.weights, weights);
}

TEST_F(HfModelTest, ShardIndexErrorsNameIndexTensorAndShard) {
  HfWriteOptions options;
  options.max_shard_bytes = 100 * 1024;
  const fs::path folder = dir_ / "sharded";
  write_hf_model(folder, plan_weights(manifest_, test::plugins()), weights_, options);
  const fs::path index_path = folder / "model.safetensors.index.json";
  const std::string index_name = index_path.string();
  const json good = json::parse(read_file(index_path));
  auto with_index = [&](const json& index) { write_file(index_path, index.dump()); };

  write_file(index_path, "{ not json");
  expect_error_with([&] { (void)load_hf_model(folder); }, {index_name, "not valid JSON"});
  with_index(json{{"metadata", json::object()}});
  expect_error_with([&] { (void)load_hf_model(folder); }, {index_name, "weight_map"});

  json missing_shard = good;
  missing_shard["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors";
  with_index(missing_shard);
  expect_error_with(
      [&] { (void)load_hf_model(folder); },
      {index_name, "model.norm.weight", "model-00009-of-00009.safetensors", "does not exist"});

  json escaping = good;
  escaping["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  with_index(escaping);
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {index_name, "model.norm.weight", "file name of a shard in the same folder"});

  // Claim a tensor in a shard that does not hold it.
  const std::string first_shard = good["weight_map"]["lm_head.weight"];
  std::string other_shard;
  for (const auto& [tensor, shard] : good["weight_map"].items())
    if (shard != first_shard) other_shard = shard;
  ASSERT_FALSE(other_shard.empty());
  json misplaced = good;
  misplaced["weight_map"]["lm_head.weight"] = other_shard;
  with_index(misplaced);
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {index_name, "lm_head.weight", other_shard, "does not hold it"});

  // A shard holding a tensor the index does not list (one of a shard with several).
  std::map<std::string, int> per_shard;
  for (const auto& [tensor, shard] : good["weight_map"].items()) per_shard[shard]++;
  std::string dropped;
  for (const auto& [tensor, shard] : good["weight_map"].items())
    if (per_shard[shard] > 1) dropped = tensor;
  ASSERT_FALSE(dropped.empty());
  json unlisted = good;
  unlisted["weight_map"].erase(dropped);
  with_index(unlisted);
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {good["weight_map"][dropped].get<std::string>(), dropped, "does not list"});
}

TEST_F(HfModelTest, ConfigErrorsComeWithTheConfigPath) {
  const fs::path folder = write_hetero("bad-config");
  json config = json::parse(read_file(folder / "config.json"));
  config["block_configs"][4]["attention"]["window_length"] = 4096;
  write_file(folder / "config.json", config.dump());
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {(folder / "config.json").string(), "block_configs[4].attention.window_length",
                     "window attention is not supported"});
}

TEST_F(HfModelTest, TokenizerProblemsAreReportedOrRefused) {
  const fs::path folder = write_hetero("tokenizers");
  write_file(folder / "tokenizer.json", "{\"model\": {\"type\": \"Unigram\"}}");
  LoadedModel loaded = load_hf_model(folder);
  EXPECT_EQ(loaded.tokenizer, nullptr);
  EXPECT_NE(loaded.tokenizer_error.find("tokenizer.json"), std::string::npos)
      << loaded.tokenizer_error;

  // A tokenizer larger than the model's vocabulary cannot be used with it.
  Manifest small = manifest_;
  small.model.vocab_size = 500;
  small.model.eos_token_ids = {2};
  const WeightStore small_weights = init_random_weights(small, test::plugins(), 1);
  HfWriteOptions with_tokenizer;
  with_tokenizer.tokenizer.source = tokenizer_folder();
  write_hf_model(dir_ / "small", plan_weights(small, test::plugins()), small_weights,
                 with_tokenizer);
  loaded = load_hf_model(dir_ / "small");
  EXPECT_EQ(loaded.tokenizer, nullptr);
  EXPECT_NE(loaded.tokenizer_error.find("more than the model's vocab_size of 500"),
            std::string::npos)
      << loaded.tokenizer_error;

  // chat_template: a list with a "default" entry, a bad type, or chat_template.jinja.
  write_file(folder / "tokenizer_config.json",
             json{{"chat_template", json::array({json{{"name", "tool_use"}, {"template", "T"}},
                                                 json{{"name", "default"}, {"template", "D"}}})}}
                 .dump());
  EXPECT_EQ(load_hf_model(folder).chat_template, "D");
  write_file(folder / "tokenizer_config.json", json{{"chat_template", 7}}.dump());
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {"tokenizer_config.json", "'chat_template' must be a string"});
  write_file(folder / "tokenizer_config.json", "[1,");
  expect_error_with([&] { (void)load_hf_model(folder); },
                    {"tokenizer_config.json", "not valid JSON"});
  fs::remove(folder / "tokenizer_config.json");
  write_file(folder / "chat_template.jinja", "J");
  EXPECT_EQ(load_hf_model(folder).chat_template, "J");
}

TEST_F(HfModelTest, OpenModelDispatchesToTheReader) {
  const fs::path folder = write_hetero("opened");
  for (const fs::path& path : {folder, folder / "config.json"}) {
    const LoadedModel loaded = open_model(path);
    EXPECT_EQ(loaded.format, ModelFormat::kHuggingFace);
    EXPECT_EQ(loaded.path, path);
    EXPECT_EQ(loaded.manifest.model.name, "hf-hetero");
    expect_same_tensors(loaded.weights, weights_);
  }
}

}  // namespace
}  // namespace tessera
