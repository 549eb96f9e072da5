// GGUF files as models: the llama and deci mappings onto manifests and Hugging Face weight
// names, the attn_q/attn_k row order (same logits as the Hugging Face safetensors of the same
// weights), manifests over GGUF weights, and every refusal with what it names.
#include <gtest/gtest.h>

#include <tessera/chat/chat_template.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/formats/gguf_model.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/formats/safetensors.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gguf_test_writer.hpp"
#include "model_fixtures.hpp"

#include "default_model.hpp"

namespace tessera::test {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(TESSERA_SOURCE_DIR) / "tests" / "data" / "gguf";
const fs::path kLlama = kData / "tiny_llama.gguf-fixture";
const fs::path kLlamaHf = kData / "tiny_llama_hf.safetensors-fixture";
const fs::path kDeci = kData / "tiny_deci.gguf-fixture";
const fs::path kDeciHf = kData / "tiny_deci_hf.safetensors-fixture";

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// Every position's logits of one sequence.
std::vector<float> logits_of(const Manifest& manifest, const WeightStore& weights,
                             const std::vector<int32_t>& tokens) {
  Model model(manifest, plugins(), weights, test_pool(), ModelOptions{1, 64, nullptr});
  ForwardBatch batch;
  batch.slots = {0};
  batch.offsets = {0, static_cast<int32_t>(tokens.size())};
  batch.tokens = tokens;
  std::vector<float> logits(tokens.size() * static_cast<size_t>(manifest.model.vocab_size));
  model.forward(batch, logits.data(), nullptr);
  return logits;
}

std::vector<float> floats_of(const Tensor& t) {
  const Tensor f = t.dtype() == TS_F32 ? t : t.to(TS_F32);
  return {f.data<float>(), f.data<float>() + f.numel()};
}

fs::path temp_dir() {
  const fs::path dir =
      fs::temp_directory_path() /
      ("tessera-gguf-model-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
       "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::create_directories(dir);
  return dir;
}

// ---------------------------------------------------------------- the llama fixture

TEST(GgufModel, LlamaFixtureBecomesACompleteManifest) {
  const LoadedModel loaded = load_gguf_model(kLlama);
  EXPECT_EQ(loaded.format, ModelFormat::kGguf);
  const ModelSpec& m = loaded.manifest.model;
  EXPECT_EQ(m.name, "tiny llama fixture");
  EXPECT_EQ(m.num_layers, 2);
  EXPECT_EQ(m.hidden_size, 32);
  EXPECT_EQ(m.num_heads, 4);
  EXPECT_EQ(m.num_kv_heads, 2);
  EXPECT_EQ(m.head_dim, 8);
  EXPECT_EQ(m.intermediate_size, 64);
  EXPECT_EQ(m.vocab_size, 270);
  EXPECT_DOUBLE_EQ(m.rope_theta, 50000.0);
  EXPECT_NEAR(m.rms_norm_eps, 1e-5, 1e-12);
  EXPECT_EQ(m.max_seq_len, 256);
  EXPECT_TRUE(m.tie_embeddings);
  EXPECT_EQ(m.bos_token_id, 1);
  // EOS (<|endoftext|>, 0) and ChatML's end of turn (<|im_end|>, 2).
  EXPECT_EQ(m.eos_token_ids, (std::vector<int64_t>{0, 2}));
  ASSERT_EQ(loaded.manifest.layers.size(), 2U);
  for (const LayerSpec& layer : loaded.manifest.layers) {
    EXPECT_EQ(layer.attention.kind, "gqa");
    EXPECT_EQ(layer.ffn.kind, "swiglu");
    EXPECT_TRUE(layer.attention.params.items().empty());
    EXPECT_TRUE(layer.ffn.params.items().empty());
  }
  EXPECT_EQ(loaded.manifest.weights.format, "gguf");
  EXPECT_EQ(loaded.manifest.weights.path, kLlama);

  // Exactly the tensors the blocks declare, with their declared shapes.
  const WeightPlan plan = plan_weights(loaded.manifest, plugins());
  ASSERT_EQ(loaded.weights.all().size(), plan.tensors.size());
  for (const PlannedTensor& t : plan.tensors) {
    ASSERT_TRUE(loaded.weights.has(t.name)) << t.name;
    EXPECT_EQ(loaded.weights.get(t.name).shape(), t.shape) << t.name;
  }
  EXPECT_EQ(loaded.weights.get("model.embed_tokens.weight").dtype(), TS_F16);  // kept as stored
  // Quantised tensors stay in their blocks (the model dequantises what a block cannot take).
  EXPECT_EQ(loaded.weights.get("model.layers.0.mlp.up_proj.weight").dtype(), TS_Q4_0);
  EXPECT_FALSE(loaded.manifest.runtime.weights_as_stored);  // f32 unless asked
}

// The manifest of a loaded GGUF file with every matrix dequantised to f32.
Manifest as_f32(Manifest m) {
  m.runtime.set_weight_dtype(TS_F32);
  return m;
}

TEST(GgufModel, LlamaFixtureTokenizerAndChatTemplate) {
  const LoadedModel loaded = load_gguf_model(kLlama);
  ASSERT_NE(loaded.tokenizer, nullptr) << loaded.tokenizer_error;
  EXPECT_TRUE(loaded.tokenizer_error.empty());
  EXPECT_EQ(loaded.tokenizer->vocab_size(), 270);
  EXPECT_HAS(loaded.chat_template, "<|im_start|>");
  const std::vector<int32_t> ids = loaded.tokenizer->encode("<|im_start|>hello world<|im_end|>");
  ASSERT_GE(ids.size(), 3U);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(*loaded.tokenizer->token_id("hello"), ids[1]);  // merged through h e, l l, ...
  EXPECT_EQ(loaded.tokenizer->decode(ids), "<|im_start|>hello world<|im_end|>");
  EXPECT_FALSE(loaded.tokenizer->add_bos_by_default());
}

// GGUF stores attn_q/attn_k rows interleaved per head; once reordered, the model must be the
// very same as the Hugging Face checkpoint the fixture generator wrote beside it.
TEST(GgufModel, LlamaLogitsEqualTheHuggingFaceSafetensorsOfTheSameWeights) {
  const LoadedModel loaded = load_gguf_model(kLlama);
  const WeightStore hf = read_safetensors(kLlamaHf);

  // The fixture really is reordered: the stored rows differ from Hugging Face's...
  const GgufFile file = GgufFile::open(kLlama);
  const std::vector<float> stored_q = floats_of(file.load_tensor("blk.0.attn_q.weight"));
  const std::vector<float> hf_q = floats_of(hf.get("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_NE(stored_q, hf_q);
  // ... and the loader puts them back exactly.
  for (const char* name :
       {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
        "model.layers.1.mlp.down_proj.weight", "model.embed_tokens.weight"}) {
    EXPECT_EQ(floats_of(loaded.weights.get(name)), floats_of(hf.get(name))) << name;
  }

  const std::vector<int32_t> tokens{1, 200, 7, 45, 260, 3, 99, 2};
  const Manifest f32 = as_f32(loaded.manifest);
  const std::vector<float> from_gguf = logits_of(f32, loaded.weights, tokens);
  const std::vector<float> from_hf = logits_of(f32, hf, tokens);
  EXPECT_EQ(from_gguf, from_hf);
  EXPECT_GT(max_abs(from_gguf), 0.01f);
  // As stored (Q4_0 matrices, 8-bit activations): close to the f32 run, not equal to it.
  Manifest as_stored = loaded.manifest;
  as_stored.runtime.weights_as_stored = true;
  const std::vector<float> stored = logits_of(as_stored, loaded.weights, tokens);
  EXPECT_NE(stored, from_gguf);
  EXPECT_LT(max_abs_diff(stored, from_gguf), 0.1f);

  // Without the reordering the logits differ (the test would catch a loader that forgot it).
  WeightStore unreordered = loaded.weights;
  for (int layer = 0; layer < 2; ++layer) {
    for (const char* part : {"q", "k"}) {
      const std::string gguf_name = "blk." + std::to_string(layer) + ".attn_" + part + ".weight";
      unreordered.add(
          "model.layers." + std::to_string(layer) + ".self_attn." + part + "_proj.weight",
          file.load_tensor(gguf_name));
    }
  }
  EXPECT_GT(max_abs_diff(logits_of(f32, unreordered, tokens), from_hf), 1e-3f);
}

TEST(GgufModel, UnpermuteRopeRowsRestoresHalfSplitOrder) {
  // Two heads of head_dim 4, one value per row. Hugging Face rows per head: a0 a1 b0 b1
  // (first half a, second half b); GGUF stores a0 b0 a1 b1.
  const std::vector<int32_t> stored{10, 20, 11, 21, 30, 40, 31, 41};
  std::vector<int32_t> restored(stored.size());
  unpermute_rope_rows(stored.data(), restored.data(), 8, 4, sizeof(int32_t));
  EXPECT_EQ(restored, (std::vector<int32_t>{10, 11, 20, 21, 30, 31, 40, 41}));
  EXPECT_HAS(error_of([&] { unpermute_rope_rows(stored.data(), restored.data(), 8, 3, 4); }),
             "even size 3");
  EXPECT_HAS(error_of([&] { unpermute_rope_rows(stored.data(), restored.data(), 6, 4, 4); }),
             "6 rows");
}

// ---------------------------------------------------------------- the deci fixture

TEST(GgufModel, DeciLayersMapOntoGqaLinearNoopAndSwiglu) {
  const LoadedModel loaded = load_gguf_model(kDeci);
  const Manifest& m = loaded.manifest;
  EXPECT_EQ(m.model.num_layers, 4);
  EXPECT_EQ(m.model.num_heads, 4);
  EXPECT_EQ(m.model.num_kv_heads, 2);  // from the first softmax-attention layer
  EXPECT_EQ(m.model.head_dim, 8);
  EXPECT_EQ(m.model.intermediate_size, 64);
  EXPECT_EQ(m.model.vocab_size, 64);
  EXPECT_FALSE(m.model.tie_embeddings);
  ASSERT_EQ(m.layers.size(), 4U);
  EXPECT_EQ(m.layers[0].attention.kind, "gqa");
  EXPECT_TRUE(m.layers[0].attention.params.items().empty());
  EXPECT_EQ(m.layers[1].attention.kind, "linear");
  EXPECT_EQ(m.layers[2].attention.kind, "noop");
  EXPECT_EQ(m.layers[3].attention.kind, "gqa");
  EXPECT_EQ(param_int(m.layers[3].attention.params, "kv_heads"), 1);
  EXPECT_EQ(m.layers[0].ffn.kind, "swiglu");
  EXPECT_EQ(m.layers[1].ffn.kind, "swiglu");
  EXPECT_EQ(param_int(m.layers[1].ffn.params, "intermediate_size"), 96);
  EXPECT_EQ(m.layers[2].ffn.kind, "swiglu");
  EXPECT_TRUE(m.layers[2].ffn.params.items().empty());
  EXPECT_EQ(m.layers[3].ffn.kind, "noop");
  EXPECT_TRUE(loaded.weights.has("model.layers.1.self_attn.linear_attn.weight"));
  EXPECT_FALSE(loaded.weights.has("model.layers.2.input_layernorm.weight"));
  EXPECT_FALSE(loaded.weights.has("model.layers.3.post_attention_layernorm.weight"));
  EXPECT_TRUE(loaded.weights.has("lm_head.weight"));

  // No tokenizer in this file: the model still loads, and says why there is none.
  EXPECT_EQ(loaded.tokenizer, nullptr);
  EXPECT_HAS(loaded.tokenizer_error, "tokenizer.ggml.model");
  EXPECT_HAS(loaded.tokenizer_error, kDeci.string());

  // The manifest writes out and reads back as the same model.
  const Manifest again = parse_manifest(to_toml(m), "again.toml", ".");
  EXPECT_EQ(to_toml(again), to_toml(m));
  EXPECT_EQ(again.weights.format, "gguf");
}

TEST(GgufModel, DeciLogitsEqualTheHuggingFaceSafetensorsAndTheReference) {
  const LoadedModel loaded = load_gguf_model(kDeci);
  const WeightStore hf = read_safetensors(kDeciHf);
  const std::vector<int32_t> tokens{5, 63, 0, 17, 42, 8};
  const Manifest f32 = as_f32(loaded.manifest);
  const std::vector<float> from_gguf = logits_of(f32, loaded.weights, tokens);
  EXPECT_EQ(from_gguf, logits_of(f32, hf, tokens));
  // And the same model computed by hand from the Hugging Face weights.
  ReferenceModel reference(loaded.manifest, hf);
  EXPECT_LT(max_abs_diff(from_gguf, reference.feed(tokens)), 2e-4f);
}

// ---------------------------------------------------------------- manifests over GGUF weights

TEST(GgufModel, ManifestCanUseTheWeightsAndTokenizerOfAGgufFile) {
  const fs::path dir = temp_dir();
  const LoadedModel direct = load_gguf_model(kLlama);
  std::string text = to_toml(direct.manifest);
  // The manifest's own name shows that it, not the GGUF metadata, describes the model.
  const std::string name = "name = \"tiny llama fixture\"";
  ASSERT_NE(text.find(name), std::string::npos) << text;
  text.replace(text.find(name), name.size(), "name = \"over gguf\"");
  const std::string eos = "eos_token_id = [0, 2]\n";
  ASSERT_NE(text.find(eos), std::string::npos) << text;
  text.erase(text.find(eos), eos.size());  // ids then come from the GGUF file
  std::ofstream(dir / "manifest.toml") << text;

  const LoadedModel loaded = open_model(dir / "manifest.toml");
  EXPECT_EQ(loaded.format, ModelFormat::kManifest);
  EXPECT_EQ(loaded.manifest.model.name, "over gguf");
  EXPECT_EQ(loaded.manifest.weights.format, "gguf");
  EXPECT_EQ(loaded.manifest.weights.path, kLlama);
  ASSERT_EQ(loaded.weights.all().size(), direct.weights.all().size());
  EXPECT_EQ(floats_of(loaded.weights.get("model.layers.1.self_attn.q_proj.weight")),
            floats_of(direct.weights.get("model.layers.1.self_attn.q_proj.weight")));
  ASSERT_NE(loaded.tokenizer, nullptr);
  EXPECT_EQ(loaded.chat_template, direct.chat_template);
  EXPECT_EQ(loaded.manifest.model.eos_token_ids, (std::vector<int64_t>{0, 2}));
  fs::remove_all(dir);
}

TEST(GgufModel, ManifestWeightsFormatGgufNeedsAPath) {
  const std::string head =
      "[model]\nhidden_size = 8\nnum_layers = 1\nnum_heads = 2\nvocab_size = 4\n"
      "intermediate_size = 4\n[[layers]]\nrange = 0\n";
  EXPECT_HAS(
      error_of([&] { parse_manifest(head + "[weights]\nformat = \"gguf\"\n", "m.toml", "."); }),
      "format = \"gguf\" needs a non-empty 'path'");
  const Manifest m =
      parse_manifest(head + "[weights]\nformat = \"gguf\"\npath = \"x.gguf\"\n", "m.toml", "/d");
  EXPECT_EQ(m.weights.path, fs::path("/d/x.gguf"));
  EXPECT_HAS(error_of([&] { load_weights(m); }), "/d/x.gguf");
}

// ---------------------------------------------------------------- refusals

// A valid GGUF model of any small shape, built tensor by tensor so that a test can break one
// thing. Layers use gqa + swiglu; weights are small random numbers.
struct TinyGguf {
  std::string arch = "llama";
  int32_t layers = 2, hidden = 16, heads = 4, kv_heads = 2, ffn = 32, vocab = 40;

  GgufTestWriter build() const {
    GgufTestWriter w;
    const std::string a = arch + ".";
    w.set_string("general.architecture", arch);
    w.set_u32(a + "block_count", static_cast<uint32_t>(layers));
    w.set_u32(a + "context_length", 64);
    w.set_u32(a + "embedding_length", static_cast<uint32_t>(hidden));
    w.set_u32(a + "feed_forward_length", static_cast<uint32_t>(ffn));
    w.set_u32(a + "attention.head_count", static_cast<uint32_t>(heads));
    w.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(kv_heads));
    w.set_f32(a + "rope.freq_base", 10000.0f);
    w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_u32(a + "vocab_size", static_cast<uint32_t>(vocab));
    const int64_t hd = hidden / heads;
    Rng rng(3);
    const auto tensor = [&](const std::string& name, std::vector<int64_t> shape) {
      int64_t n = 1;
      for (const int64_t d : shape) n *= d;
      std::vector<float> values(static_cast<size_t>(n));
      for (float& v : values) v = 0.2f * rng.normal();
      w.set_tensor(name, shape, values);
    };
    tensor("token_embd.weight", {vocab, hidden});
    tensor("output_norm.weight", {hidden});
    for (int32_t l = 0; l < layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      tensor(b + "attn_norm.weight", {hidden});
      tensor(b + "attn_q.weight", {heads * hd, hidden});
      tensor(b + "attn_k.weight", {kv_heads * hd, hidden});
      tensor(b + "attn_v.weight", {kv_heads * hd, hidden});
      tensor(b + "attn_output.weight", {hidden, heads * hd});
      tensor(b + "ffn_norm.weight", {hidden});
      tensor(b + "ffn_gate.weight", {ffn, hidden});
      tensor(b + "ffn_up.weight", {ffn, hidden});
      tensor(b + "ffn_down.weight", {hidden, ffn});
    }
    return w;
  }
};

class GgufModelErrors : public ::testing::Test {
 protected:
  void SetUp() override { path_ = temp_dir() / "model.gguf"; }
  void TearDown() override { fs::remove_all(path_.parent_path()); }

  // The message load_gguf_model gives for the file; "<no exception>" when it loads.
  std::string load_error(const GgufTestWriter& w) {
    w.write(path_);
    return error_of([&] { load_gguf_model(path_); });
  }
  LoadedModel load(const GgufTestWriter& w) {
    w.write(path_);
    return load_gguf_model(path_);
  }
  fs::path path_;
};

TEST_F(GgufModelErrors, TheValidTinyModelLoadsAndRuns) {
  const LoadedModel loaded = load(TinyGguf{}.build());
  EXPECT_EQ(loaded.manifest.model.head_dim, 4);
  EXPECT_EQ(loaded.tokenizer, nullptr);
  const std::vector<float> logits = logits_of(loaded.manifest, loaded.weights, {1, 2, 3});
  EXPECT_GT(max_abs(logits), 0.0f);
}

TEST_F(GgufModelErrors, UnknownArchitectureListsTheSupportedOnes) {
  TinyGguf spec;
  spec.arch = "qwen2";
  const std::string error = load_error(spec.build());
  EXPECT_HAS(error, path_.string());
  EXPECT_HAS(error, "architecture 'qwen2'");
  EXPECT_HAS(error, "general.architecture");
  EXPECT_HAS(error, "supported architectures: deci, llama");
}

TEST_F(GgufModelErrors, MissingMetadataKeyIsNamed) {
  GgufTestWriter w = TinyGguf{}.build();
  w.erase_key("llama.embedding_length");
  EXPECT_HAS(load_error(w), "metadata key 'llama.embedding_length' is missing");
  w = TinyGguf{}.build();
  w.erase_key("llama.attention.layer_norm_rms_epsilon");
  EXPECT_HAS(load_error(w), "'llama.attention.layer_norm_rms_epsilon' is missing");
  w = TinyGguf{}.build();
  w.set_u32("llama.block_count", 0);
  EXPECT_HAS(load_error(w), "metadata key 'llama.block_count' is 0; expected an integer in [1, ");
}

TEST_F(GgufModelErrors, VocabularySizeFallsBackToTheTokensThenTheEmbedding) {
  GgufTestWriter w = TinyGguf{}.build();
  w.erase_key("llama.vocab_size");
  EXPECT_EQ(load(w).manifest.model.vocab_size, 40);  // token_embd.weight's rows
  std::vector<std::string> tokens(40, "t");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  EXPECT_EQ(load(w).manifest.model.vocab_size, 40);
  tokens.resize(39);  // the tokenizer's count wins over the embedding; the shapes then disagree
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  EXPECT_HAS(load_error(w), "has shape [40, 16]; expected [39, 16]");
  w.erase_key("tokenizer.ggml.tokens");
  w.erase_tensor("token_embd.weight");
  EXPECT_HAS(load_error(w), "cannot tell the vocabulary size");
}

TEST_F(GgufModelErrors, MissingTensorNamesTensorAndLayer) {
  GgufTestWriter w = TinyGguf{}.build();
  w.erase_tensor("blk.1.ffn_up.weight");
  const std::string error = load_error(w);
  EXPECT_HAS(error, "tensor 'blk.1.ffn_up.weight'");
  EXPECT_HAS(error, "model.layers.1.mlp.up_proj.weight");
  EXPECT_HAS(error, "layer 1 (attention gqa, ffn swiglu)");
  EXPECT_HAS(error, "is missing");
}

TEST_F(GgufModelErrors, ShapeMismatchGivesBothShapes) {
  // A block's own tensor is checked against what the block declares when the model is
  // built; the message still names the GGUF tensor and the file it came from.
  GgufTestWriter w = TinyGguf{}.build();
  w.set_tensor("blk.0.attn_k.weight", {12, 16}, std::vector<float>(12 * 16));
  const LoadedModel bad = load(w);
  const std::string error = error_of([&] {
    Model model(bad.manifest, plugins(), bad.weights, test_pool(), {1, 16, nullptr});
  });
  EXPECT_HAS(error, "tensor 'blk.0.attn_k.weight' of GGUF file '" + path_.string() + "'");
  EXPECT_HAS(error, "layer 0 attention gqa (tessera-attention-cpu)");
  EXPECT_HAS(error, "has shape [12, 16]; expected [8, 16]");
  // The host's own tensors (embedding, norms) are checked as the file is read.
  w = TinyGguf{}.build();
  w.set_tensor("token_embd.weight", {41, 16}, std::vector<float>(41 * 16));
  EXPECT_HAS(load_error(w),
             "tensor 'token_embd.weight' ('model.embed_tokens.weight') has shape "
             "[41, 16]; expected [40, 16]");
}

TEST_F(GgufModelErrors, HeadCountsThatDoNotDivide) {
  TinyGguf spec;
  spec.kv_heads = 3;
  EXPECT_HAS(load_error(spec.build()),
             "layer 0: llama.attention.head_count = 4, llama.attention.head_count_kv = 3: the KV "
             "head count does not divide the head count");
  spec = TinyGguf{};
  spec.heads = 5;
  spec.kv_heads = 5;
  EXPECT_HAS(load_error(spec.build()),
             "'llama.embedding_length' (16) is not a multiple of the head count 5");
}

TEST_F(GgufModelErrors, HeadSizeMismatches) {
  GgufTestWriter w = TinyGguf{}.build();
  w.set_u32("llama.rope.dimension_count", 2);
  EXPECT_HAS(load_error(w), "'llama.rope.dimension_count' is 2 but the head size is 4");
  w = TinyGguf{}.build();
  w.set_u32("llama.attention.value_length", 8);
  EXPECT_HAS(load_error(w), "'llama.attention.value_length' is 8 but the key head size is 4");
  w = TinyGguf{}.build();
  w.set_f32("llama.attention.scale", 0.9f);
  EXPECT_HAS(load_error(w), "'llama.attention.scale'");
}

TEST_F(GgufModelErrors, RopeScalingIsRefusedByName) {
  GgufTestWriter w = TinyGguf{}.build();
  w.set_string("llama.rope.scaling.type", "yarn");
  EXPECT_HAS(load_error(w), "metadata key 'llama.rope.scaling.type' is \"yarn\"; only Llama 3");
  w = TinyGguf{}.build();
  w.set_f32("llama.rope.scale_linear", 2.0f);
  EXPECT_HAS(load_error(w), "'llama.rope.scale_linear'");
  w = TinyGguf{}.build();
  w.set_string("llama.rope.scaling.type", "none");  // explicitly none is fine
  EXPECT_EQ(load_error(w), "<no exception>");
}

// Llama 3 RoPE multipliers as GGUF converters write them, computed here from the definition.
std::vector<float> llama3_multipliers(int64_t head_dim, double theta, double factor, double low,
                                      double high, double context) {
  std::vector<float> out;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const double freq =
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    const double wavelength = 2.0 * std::acos(-1.0) / freq;
    double m = 1.0;
    if (wavelength > context / low) {
      m = factor;
    } else if (wavelength >= context / high) {
      const double smooth = (context / wavelength - low) / (high - low);
      m = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    out.push_back(static_cast<float>(m));
  }
  return out;
}

// One head of 64: 32 frequencies, enough to span short, blended and long wavelengths.
GgufTestWriter wide_head_model() {
  TinyGguf spec;
  spec.hidden = 64;
  spec.heads = 1;
  spec.kv_heads = 1;
  GgufTestWriter w = spec.build();
  w.set_f32("llama.rope.freq_base", 500000.0f);
  return w;
}

TEST_F(GgufModelErrors, Llama3RopeScalingComesFromRopeFreqs) {
  GgufTestWriter w = wide_head_model();
  w.set_tensor("rope_freqs.weight", {32}, llama3_multipliers(64, 500000.0, 8.0, 1.0, 4.0, 8192));
  LoadedModel loaded = load(w);
  const RopeScaling& s = loaded.manifest.model.rope_scaling;
  EXPECT_EQ(s.type, "llama3");
  EXPECT_NEAR(s.factor, 8.0, 1e-5);
  EXPECT_NEAR(s.low_freq_factor, 1.0, 1e-3);
  EXPECT_NEAR(s.high_freq_factor, 4.0, 1e-3);
  EXPECT_EQ(s.original_max_position_embeddings, 8192);
  EXPECT_FALSE(loaded.weights.has("rope_freqs.weight"));  // it became the scaling, not a weight

  // Other parameters are found from the blended frequencies; the context from its key.
  w.set_u32("llama.rope.scaling.original_context_length", 4096);
  w.set_tensor("rope_freqs.weight", {32}, llama3_multipliers(64, 500000.0, 16.0, 1.5, 6.0, 4096));
  loaded = load(w);
  EXPECT_NEAR(loaded.manifest.model.rope_scaling.factor, 16.0, 1e-4);
  EXPECT_NEAR(loaded.manifest.model.rope_scaling.low_freq_factor, 1.5, 1e-3);
  EXPECT_NEAR(loaded.manifest.model.rope_scaling.high_freq_factor, 6.0, 1e-3);
  EXPECT_EQ(loaded.manifest.model.rope_scaling.original_max_position_embeddings, 4096);

  // All ones: no scaling.
  w.set_tensor("rope_freqs.weight", {32}, std::vector<float>(32, 1.0f));
  EXPECT_FALSE(load(w).manifest.model.rope_scaling.enabled());
}

TEST_F(GgufModelErrors, RopeFreqsThatAreNotLlama3AreRefused) {
  GgufTestWriter w = wide_head_model();
  std::vector<float> bent = llama3_multipliers(64, 500000.0, 8.0, 1.0, 4.0, 8192);
  bent[2] = 3.0f;  // a short wavelength scaled: no Llama 3 parameters do that
  w.set_tensor("rope_freqs.weight", {32}, bent);
  EXPECT_HAS(load_error(w), "tensor 'rope_freqs.weight' is not Llama 3 RoPE scaling");
  w.set_tensor("rope_freqs.weight", {16}, std::vector<float>(16, 1.0f));
  EXPECT_HAS(load_error(w), "tensor 'rope_freqs.weight' has shape [16]; expected [32]");
  std::vector<float> below_one(32, 1.0f);
  below_one[0] = 0.5f;
  w.set_tensor("rope_freqs.weight", {32}, below_one);
  EXPECT_HAS(load_error(w), "holds 0.5 at frequency 0");
}

TEST_F(GgufModelErrors, MixtureOfExpertsIsRefused) {
  GgufTestWriter w = TinyGguf{}.build();
  w.set_u32("llama.expert_count", 8);
  EXPECT_HAS(load_error(w), "'llama.expert_count' is 8; mixture-of-experts");
}

TEST_F(GgufModelErrors, TensorsNoBlockUsesAreRefused) {
  GgufTestWriter w = TinyGguf{}.build();
  w.set_tensor("blk.0.attn_q.bias", {16}, std::vector<float>(16));
  const std::string error = load_error(w);
  EXPECT_HAS(error, "tensor 'blk.0.attn_q.bias' (layer 0 (attention gqa, ffn swiglu))");
  EXPECT_HAS(error, "not used by any block");
}

TEST_F(GgufModelErrors, TypesThatCannotBeDequantisedAreNamed) {
  // Q5_1 (ggml type 7): blocks of 32 values in 24 bytes, which Tessera does not dequantise.
  TinyGguf wide;
  wide.hidden = 32;
  GgufTestWriter w = wide.build();
  w.set_raw_tensor("blk.1.ffn_gate.weight", {32, 32}, 7, GgufTestWriter::Bytes(32 * 24, 0));
  const std::string error = load_error(w);
  EXPECT_HAS(error, "tensor 'blk.1.ffn_gate.weight'");
  EXPECT_HAS(error, "layer 1");
  EXPECT_HAS(error, "has ggml type Q5_1, which Tessera cannot dequantise");
}

TEST_F(GgufModelErrors, DeciOnlyLayerKindsAreRefusedForLlama) {
  GgufTestWriter w = TinyGguf{}.build();
  w.set_i32_array("llama.attention.head_count_kv", {2, 0});
  EXPECT_HAS(load_error(w),
             "layer 1: llama.attention.head_count = 4, llama.attention.head_count_kv = 0; "
             "attention-free and linear-attention layers exist only in architecture deci");
  w = TinyGguf{}.build();
  w.set_i32_array("llama.feed_forward_length", {32, 0});
  EXPECT_HAS(load_error(w), "layer 1: llama.feed_forward_length is 0; FFN-free layers");
}

TEST_F(GgufModelErrors, DeciPerLayerArraysAreChecked) {
  TinyGguf spec;
  spec.arch = "deci";
  GgufTestWriter w = spec.build();
  w.set_i32_array("deci.attention.head_count", {4, 4, 4});
  EXPECT_HAS(load_error(w),
             "metadata key 'deci.attention.head_count' has 3 entries; expected one per layer "
             "(deci.block_count = 2)");
  w = spec.build();
  w.set_i32_array("deci.attention.head_count", {4, 0});
  EXPECT_HAS(load_error(w),
             "layer 1: deci.attention.head_count = 0, deci.attention.head_count_kv = 2; a layer "
             "with KV heads needs query heads");
  w = spec.build();
  w.set_i32_array("deci.attention.head_count", {4, 2});
  w.set_i32_array("deci.attention.head_count_kv", {2, 2});
  EXPECT_HAS(load_error(w), "layer 1: deci.attention.head_count is 2 but earlier layers have 4");
  w = spec.build();
  w.set_i32_array("deci.feed_forward_length", {32, -1});
  EXPECT_HAS(load_error(w), "'deci.feed_forward_length[1]' is -1");
  // A no-op layer whose tensors are still in the file: they are refused, not ignored.
  w = spec.build();
  w.set_i32_array("deci.attention.head_count", {4, 0});
  w.set_i32_array("deci.attention.head_count_kv", {2, 0});
  EXPECT_HAS(load_error(w), "(layer 1 (attention noop, ffn swiglu)) is not used by any block");
}

TEST_F(GgufModelErrors, DeciLinearAttentionNeedsItsSquareMatrix) {
  TinyGguf spec;
  spec.arch = "deci";
  GgufTestWriter w = spec.build();
  w.set_i32_array("deci.attention.head_count_kv", {2, 0});
  for (const char* name : {"attn_q", "attn_k", "attn_v"}) {
    w.erase_tensor("blk.1." + std::string(name) + ".weight");
  }
  const LoadedModel loaded = load(w);  // attn_output of the tiny model is [16, 16] already
  EXPECT_EQ(loaded.manifest.layers[1].attention.kind, "linear");
  EXPECT_TRUE(loaded.weights.has("model.layers.1.self_attn.linear_attn.weight"));
  w.erase_tensor("blk.1.attn_output.weight");
  EXPECT_HAS(load_error(w),
             "tensor 'blk.1.attn_output.weight' ('model.layers.1.self_attn.linear_attn.weight', "
             "layer 1 (attention linear, ffn swiglu)) is missing");
}

TEST_F(GgufModelErrors, UnsupportedTokenizersLeaveNoTokenizerAndSayWhy) {
  GgufTestWriter w = TinyGguf{}.build();
  std::vector<std::string> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back("t" + std::to_string(i));
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  LoadedModel loaded = load(w);
  EXPECT_EQ(loaded.tokenizer, nullptr);
  EXPECT_HAS(loaded.tokenizer_error, path_.string());
  EXPECT_HAS(loaded.tokenizer_error,
             "tokenizer.ggml.model is \"llama\"; only \"gpt2\" (byte-level BPE) tokenizers are "
             "supported");

  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "qwen2");
  w.set_string_array("tokenizer.ggml.merges", {"t 1"});
  loaded = load(w);
  EXPECT_EQ(loaded.tokenizer, nullptr);
  EXPECT_HAS(loaded.tokenizer_error, "unsupported pre-tokenizer \"qwen2\"");

  w.set_string("tokenizer.ggml.pre", "gpt2");
  w.erase_key("tokenizer.ggml.merges");
  loaded = load(w);
  EXPECT_HAS(loaded.tokenizer_error, "metadata key 'tokenizer.ggml.merges' is missing");

  // More tokens than embedding rows would index past the embedding.
  w.set_string_array("tokenizer.ggml.merges", {"t 1"});
  tokens.push_back("extra");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  loaded = load(w);
  EXPECT_HAS(loaded.tokenizer_error,
             "tokenizer.ggml.tokens has 41 tokens, more than the model's vocab_size of 40");
}

// ---------------------------------------------------------------- the real SmolLM2 file

fs::path smollm2_path() {
  return test::default_model_path();
}

TEST(GgufModelSmolLM2, TokenizerFromGgufMatchesTheGoldenIds) {
  const fs::path path = smollm2_path();
  TESSERA_NEED_DEFAULT_MODEL(fs::exists(path), path.string());
  const GgufFile file = GgufFile::open(path);
  const TokenizerData data = gguf_tokenizer_data(file);
  EXPECT_EQ(data.pre, "smollm");
  const Tokenizer tokenizer = Tokenizer::from_data(data);
  EXPECT_EQ(tokenizer.vocab_size(), 49152);
  EXPECT_EQ(tokenizer.pre_tokenizer(), PreTokenizerKind::kSmolLM);
  EXPECT_EQ(end_of_turn_ids(file, tokenizer, data), (std::vector<int64_t>{2}));
  EXPECT_EQ(tokenizer.token_text(2), "<|im_end|>");

  std::ifstream golden_file(fs::path(TESSERA_SOURCE_DIR) / "tests" / "golden" / "tokenizer" /
                            "smollm2_golden.json");
  const nlohmann::json golden = nlohmann::json::parse(golden_file);
  ASSERT_GE(golden.at("cases").size(), 40U);
  for (const nlohmann::json& test_case : golden.at("cases")) {
    const std::string text = test_case.at("text");
    const auto expected = test_case.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer.encode(text), expected) << text;
    EXPECT_EQ(tokenizer.decode(expected), text) << text;
  }
}

TEST(GgufModelSmolLM2, LoadsAsTheSmolLM2Shape) {
  const fs::path path = smollm2_path();
  TESSERA_NEED_DEFAULT_MODEL(fs::exists(path), path.string());
  const LoadedModel loaded = load_gguf_model(path);
  const ModelSpec& m = loaded.manifest.model;
  const ModelSpec expected = builtin_shape("smollm2-135m").model;
  EXPECT_EQ(m.num_layers, expected.num_layers);
  EXPECT_EQ(m.hidden_size, expected.hidden_size);
  EXPECT_EQ(m.num_heads, expected.num_heads);
  EXPECT_EQ(m.num_kv_heads, expected.num_kv_heads);
  EXPECT_EQ(m.head_dim, expected.head_dim);
  EXPECT_EQ(m.intermediate_size, expected.intermediate_size);
  EXPECT_EQ(m.vocab_size, expected.vocab_size);
  EXPECT_EQ(m.tie_embeddings, expected.tie_embeddings);
  EXPECT_DOUBLE_EQ(m.rope_theta, expected.rope_theta);
  EXPECT_EQ(m.max_seq_len, 8192);
  EXPECT_EQ(m.bos_token_id, 1);
  EXPECT_EQ(m.eos_token_ids, (std::vector<int64_t>{2}));
  ASSERT_NE(loaded.tokenizer, nullptr) << loaded.tokenizer_error;
  EXPECT_EQ(ChatTemplate::from_template_text(loaded.chat_template).kind(),
            ChatTemplateKind::kChatML);
  EXPECT_EQ(loaded.weights.all().size(), plan_weights(loaded.manifest, plugins()).tensors.size());
  // A dequantised value the GGUF reader's golden file also holds (row 0 of the embedding).
  std::ifstream golden_file(fs::path(TESSERA_SOURCE_DIR) / "tests" / "golden" / "gguf" /
                            "smollm2_q4_1.json");
  const nlohmann::json golden = nlohmann::json::parse(golden_file);
  const auto first = golden.at("tensors")
                         .at("token_embd.weight")
                         .at("rows")
                         .at("0")
                         .at("first")
                         .get<std::vector<float>>();
  const Tensor& embed = loaded.weights.get("model.embed_tokens.weight");
  ASSERT_EQ(embed.dtype(), TS_Q8_0);  // as the file stores it
  const std::vector<float> values = floats_of(embed);
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(values[i], first[i]) << i;
}

}  // namespace
}  // namespace tessera::test
