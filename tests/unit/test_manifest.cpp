// Manifest parsing: a valid heterogeneous model, defaults, layer ranges, every
// error with its line:column, block parameters, and the to_toml round trip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/manifest.hpp>
#include <variant>
#include <vector>

namespace fs = std::filesystem;
using tessera::BlockSpec;
using tessera::Manifest;
using tessera::ManifestError;
using tessera::ParamList;
using tessera::ParamValue;

namespace {

// A small valid document; tests append or replace parts of it.
const std::string kModel = R"([model]
name = "tiny"
hidden_size = 32
num_layers = 4
num_heads = 4
num_kv_heads = 2
intermediate_size = 64
vocab_size = 50

[weights]
format = "random"
seed = 3
)";

Manifest parse(const std::string& text, const fs::path& base_dir = "/base") {
  return tessera::parse_manifest(text, "test.toml", base_dir);
}

// The ManifestError that parsing `text` throws; fails the test if it parses.
ManifestError manifest_error(const std::string& text) {
  try {
    parse(text);
  } catch (const ManifestError& e) {
    return e;
  }
  ADD_FAILURE() << "expected a ManifestError for:\n" << text;
  return ManifestError("", 0, 0, "");
}

// Expects an error at line:column whose message contains every fragment.
void expect_error(const std::string& text, int line, int column,
                  const std::vector<std::string>& fragments) {
  const ManifestError e = manifest_error(text);
  EXPECT_EQ(e.file, "test.toml") << e.what();
  EXPECT_EQ(e.line, line) << e.what();
  EXPECT_EQ(e.column, column) << e.what();
  const std::string what = e.what();
  EXPECT_EQ(
      what.rfind("test.toml:" + std::to_string(line) + ":" + std::to_string(column) + ": ", 0), 0u)
      << what;
  for (const std::string& f : fragments) EXPECT_NE(what.find(f), std::string::npos) << what;
}

// kModel with four layers of the given [[layers]] text.
std::string with_layers(const std::string& layers) {
  return kModel + "\n" + layers;
}

const std::string kFourDefaultLayers = "[[layers]]\nrange = \"0-3\"\n";

template <class T>
T param(const ParamList& params, const std::string& key) {
  const ParamValue* v = params.find(key);
  if (v == nullptr) throw std::runtime_error("no parameter " + key);
  return std::get<T>(*v);
}

bool same_params(const ParamList& a, const ParamList& b) {
  if (a.items().size() != b.items().size()) return false;
  for (const auto& item : a.items()) {
    const ParamValue* other = b.find(item.key);
    if (other == nullptr || !(*other == item.value)) return false;
  }
  return true;
}

void expect_same_block(const BlockSpec& a, const BlockSpec& b, const std::string& what) {
  EXPECT_EQ(a.kind, b.kind) << what;
  EXPECT_EQ(a.plugin, b.plugin) << what;
  EXPECT_TRUE(same_params(a.params, b.params)) << what;
}

void expect_same_manifest(const Manifest& a, const Manifest& b) {
  EXPECT_EQ(a.model.name, b.model.name);
  EXPECT_EQ(a.model.hidden_size, b.model.hidden_size);
  EXPECT_EQ(a.model.num_layers, b.model.num_layers);
  EXPECT_EQ(a.model.num_heads, b.model.num_heads);
  EXPECT_EQ(a.model.head_dim, b.model.head_dim);
  EXPECT_EQ(a.model.num_kv_heads, b.model.num_kv_heads);
  EXPECT_EQ(a.model.intermediate_size, b.model.intermediate_size);
  EXPECT_EQ(a.model.vocab_size, b.model.vocab_size);
  EXPECT_EQ(a.model.rope_theta, b.model.rope_theta);
  EXPECT_EQ(a.model.rms_norm_eps, b.model.rms_norm_eps);
  EXPECT_EQ(a.model.max_seq_len, b.model.max_seq_len);
  EXPECT_EQ(a.model.tie_embeddings, b.model.tie_embeddings);
  EXPECT_EQ(a.model.bos_token_id, b.model.bos_token_id);
  EXPECT_EQ(a.model.eos_token_ids, b.model.eos_token_ids);
  EXPECT_EQ(a.weights.format, b.weights.format);
  EXPECT_EQ(a.weights.path, b.weights.path);
  EXPECT_EQ(a.weights.seed, b.weights.seed);
  EXPECT_EQ(a.runtime.device, b.runtime.device);
  EXPECT_EQ(a.runtime.dtype, b.runtime.dtype);
  EXPECT_EQ(a.runtime.threads, b.runtime.threads);
  EXPECT_EQ(a.runtime.plugin_paths, b.runtime.plugin_paths);
  expect_same_block(a.runtime.decoder, b.runtime.decoder, "decoder");
  expect_same_block(a.runtime.parallel, b.runtime.parallel, "parallel");
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    expect_same_block(a.layers[i].attention, b.layers[i].attention,
                      "layer " + std::to_string(i) + " attention");
    expect_same_block(a.layers[i].ffn, b.layers[i].ffn, "layer " + std::to_string(i) + " ffn");
  }
}

const std::string kHeterogeneous = R"(# A model whose layers all differ.
[model]
name = "hetero"
hidden_size = 64
num_layers = 8
num_heads = 8
num_kv_heads = 4
intermediate_size = 128
vocab_size = 300
rope_theta = 500000.0
rms_norm_eps = 1e-6
max_seq_len = 512
tie_embeddings = true
bos_token_id = 1
eos_token_id = [2, 7]

[weights]
format = "safetensors"
path = "weights/model.safetensors"

[[layers]]
range = "0-2"
attention = { kind = "gqa", kv_heads = 2, plugin = "tessera-attention-cpu" }
ffn = { kind = "swiglu" }

[[layers]]
range = 3
attention = { kind = "linear" }
ffn = { kind = "swiglu", intermediate_size = 40 }

[[layers]]
range = "4 - 5"
attention = { kind = "noop" }

[[layers]]
range = "6"
attention = { kind = "sliding-window", window = 128, sinks = [0, 1], exact = true, scale = 0.5, mode = "fast" }
[layers.ffn]
kind = "noop"

[[layers]]
range = "7"
ffn = { kind = "linear" }

[runtime]
device = "cpu"
dtype = "bf16"
threads = 3
plugin_paths = ["plugins", "/opt/tessera/plugins"]

[runtime.decoder]
kind = "sample"
temperature = 0.7
top_k = 40

[runtime.parallel]
kind = "local"
plugin = "tessera-parallel-local"
)";

}  // namespace

// ------------------------------------------------------------------ valid

TEST(Manifest, HeterogeneousModelParsesToTheExpectedLayers) {
  const Manifest m = parse(kHeterogeneous, "/models/hetero");
  EXPECT_TRUE(m.source.empty());
  EXPECT_EQ(m.model.name, "hetero");
  EXPECT_EQ(m.model.hidden_size, 64);
  EXPECT_EQ(m.model.num_layers, 8);
  EXPECT_EQ(m.model.num_heads, 8);
  EXPECT_EQ(m.model.head_dim, 8);  // 64 / 8
  EXPECT_EQ(m.model.num_kv_heads, 4);
  EXPECT_EQ(m.model.intermediate_size, 128);
  EXPECT_EQ(m.model.vocab_size, 300);
  EXPECT_DOUBLE_EQ(m.model.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(m.model.rms_norm_eps, 1e-6);
  EXPECT_EQ(m.model.max_seq_len, 512);
  EXPECT_TRUE(m.model.tie_embeddings);
  EXPECT_EQ(m.model.bos_token_id, 1);
  EXPECT_EQ(m.model.eos_token_ids, (std::vector<int64_t>{2, 7}));

  EXPECT_EQ(m.weights.format, "safetensors");
  EXPECT_EQ(m.weights.path, fs::path("/models/hetero/weights/model.safetensors"));
  EXPECT_EQ(m.weights.where.line, 17);

  ASSERT_EQ(m.layers.size(), 8u);
  for (int i = 0; i <= 2; ++i) {
    const BlockSpec& a = m.layers[i].attention;
    EXPECT_EQ(a.kind, "gqa");
    EXPECT_EQ(a.plugin, "tessera-attention-cpu");
    EXPECT_EQ(param<int64_t>(a.params, "kv_heads"), 2);
    EXPECT_EQ(a.params.items().size(), 1u);
    EXPECT_EQ(a.where.file, "test.toml");
    EXPECT_EQ(a.where.line, 23);
    EXPECT_EQ(a.where.column, 13);
    EXPECT_EQ(m.layers[i].ffn.kind, "swiglu");
    EXPECT_TRUE(m.layers[i].ffn.params.items().empty());
  }
  EXPECT_EQ(m.layers[3].attention.kind, "linear");
  EXPECT_EQ(param<int64_t>(m.layers[3].ffn.params, "intermediate_size"), 40);
  for (int i = 4; i <= 5; ++i) {
    EXPECT_EQ(m.layers[i].attention.kind, "noop");
    EXPECT_EQ(m.layers[i].ffn.kind, "swiglu");  // omitted: the default
    EXPECT_EQ(m.layers[i].ffn.where.line, 31);  // points at the [[layers]] entry
  }
  // An unknown kind is kept with its params untouched, in the order written.
  const BlockSpec& sliding = m.layers[6].attention;
  EXPECT_EQ(sliding.kind, "sliding-window");
  ASSERT_EQ(sliding.params.items().size(), 5u);
  EXPECT_EQ(sliding.params.items()[0].key, "window");
  EXPECT_EQ(param<int64_t>(sliding.params, "window"), 128);
  EXPECT_EQ(param<std::vector<int64_t>>(sliding.params, "sinks"), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(param<bool>(sliding.params, "exact"), true);
  EXPECT_DOUBLE_EQ(param<double>(sliding.params, "scale"), 0.5);
  EXPECT_EQ(param<std::string>(sliding.params, "mode"), "fast");
  EXPECT_EQ(m.layers[6].ffn.kind, "noop");
  EXPECT_EQ(m.layers[6].ffn.where.line, 38);
  EXPECT_EQ(m.layers[7].attention.kind, "gqa");  // omitted: the default
  EXPECT_TRUE(m.layers[7].attention.params.items().empty());
  EXPECT_EQ(m.layers[7].ffn.kind, "linear");

  EXPECT_EQ(m.runtime.device, "cpu");
  EXPECT_EQ(m.runtime.dtype, TS_BF16);
  EXPECT_EQ(m.runtime.threads, 3);
  EXPECT_EQ(m.runtime.plugin_paths,
            (std::vector<fs::path>{"/models/hetero/plugins", "/opt/tessera/plugins"}));
  EXPECT_EQ(m.runtime.decoder.kind, "sample");
  EXPECT_DOUBLE_EQ(param<double>(m.runtime.decoder.params, "temperature"), 0.7);
  EXPECT_EQ(param<int64_t>(m.runtime.decoder.params, "top_k"), 40);
  EXPECT_EQ(m.runtime.parallel.kind, "local");
  EXPECT_EQ(m.runtime.parallel.plugin, "tessera-parallel-local");
  EXPECT_TRUE(m.runtime.parallel.params.items().empty());
}

TEST(Manifest, DefaultsWhenKeysAreOmitted) {
  const Manifest m = parse(R"([model]
hidden_size = 48
num_layers = 2
num_heads = 6
vocab_size = 10
intermediate_size = 96

[weights]
format = "random"

[[layers]]
range = "0-1"
)");
  EXPECT_EQ(m.model.head_dim, 8);
  EXPECT_EQ(m.model.num_kv_heads, 6);  // num_heads
  EXPECT_DOUBLE_EQ(m.model.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(m.model.rms_norm_eps, 1e-5);
  EXPECT_EQ(m.model.max_seq_len, 2048);
  EXPECT_FALSE(m.model.tie_embeddings);
  EXPECT_EQ(m.model.bos_token_id, -1);
  EXPECT_TRUE(m.model.eos_token_ids.empty());
  EXPECT_EQ(m.weights.seed, 0u);
  EXPECT_TRUE(m.weights.path.empty());
  EXPECT_EQ(m.runtime.device, "cpu");
  EXPECT_EQ(m.runtime.dtype, TS_F32);
  EXPECT_EQ(m.runtime.threads, 0);
  EXPECT_TRUE(m.runtime.plugin_paths.empty());
  EXPECT_EQ(m.runtime.decoder.kind, "greedy");
  EXPECT_EQ(m.runtime.parallel.kind, "local");
  for (const auto& layer : m.layers) {
    EXPECT_EQ(layer.attention.kind, "gqa");
    EXPECT_EQ(layer.ffn.kind, "swiglu");
    EXPECT_TRUE(layer.attention.plugin.empty());
  }
  // A single eos id, and head_dim given explicitly where hidden % heads != 0.
  const Manifest odd = parse(R"([model]
hidden_size = 50
num_layers = 1
num_heads = 4
head_dim = 16
vocab_size = 10
intermediate_size = 8
eos_token_id = 9
[weights]
format = "random"
[[layers]]
range = 0
)");
  EXPECT_EQ(odd.model.head_dim, 16);
  EXPECT_EQ(odd.model.eos_token_ids, (std::vector<int64_t>{9}));
}

TEST(Manifest, RangeForms) {
  const Manifest m = parse(with_layers(R"([[layers]]
range = 0
attention = { kind = "linear" }
[[layers]]
range = "1"
attention = { kind = "noop" }
[[layers]]
range = "2-3"
ffn = { kind = "linear" }
)"));
  ASSERT_EQ(m.layers.size(), 4u);
  EXPECT_EQ(m.layers[0].attention.kind, "linear");
  EXPECT_EQ(m.layers[1].attention.kind, "noop");
  EXPECT_EQ(m.layers[2].ffn.kind, "linear");
  EXPECT_EQ(m.layers[3].ffn.kind, "linear");
  EXPECT_EQ(m.layers[3].attention.kind, "gqa");
  // Entries may come in any order.
  const Manifest shuffled =
      parse(with_layers("[[layers]]\nrange = \"2-3\"\n[[layers]]\nrange = "
                        "\"0-1\"\nattention = { kind = \"noop\" }\n"));
  EXPECT_EQ(shuffled.layers[0].attention.kind, "noop");
  EXPECT_EQ(shuffled.layers[3].attention.kind, "gqa");
}

TEST(Manifest, BlockParamsMergeModelWideAndOwnKeys) {
  const Manifest m = parse(kHeterogeneous);
  const ParamList gqa = m.block_params(m.layers[0].attention);
  EXPECT_EQ(param<int64_t>(gqa, "hidden_size"), 64);
  EXPECT_EQ(param<int64_t>(gqa, "num_heads"), 8);
  EXPECT_EQ(param<int64_t>(gqa, "head_dim"), 8);
  EXPECT_EQ(param<int64_t>(gqa, "kv_heads"), 2);  // the block's own replaces the model's 4
  EXPECT_EQ(param<int64_t>(gqa, "intermediate_size"), 128);
  EXPECT_DOUBLE_EQ(param<double>(gqa, "rope_theta"), 500000.0);
  EXPECT_DOUBLE_EQ(param<double>(gqa, "rms_norm_eps"), 1e-6);
  EXPECT_EQ(param<int64_t>(gqa, "max_seq_len"), 512);
  EXPECT_EQ(param<int64_t>(gqa, "vocab_size"), 300);
  EXPECT_EQ(gqa.items().size(), 9u);  // replaced, not appended twice

  const ParamList defaulted = m.block_params(m.layers[7].attention);
  EXPECT_EQ(param<int64_t>(defaulted, "kv_heads"), 4);  // model num_kv_heads
  const ParamList pruned = m.block_params(m.layers[3].ffn);
  EXPECT_EQ(param<int64_t>(pruned, "intermediate_size"), 40);
  const ParamList sliding = m.block_params(m.layers[6].attention);
  EXPECT_EQ(param<int64_t>(sliding, "window"), 128);
  EXPECT_EQ(sliding.items().size(), 14u);

  // The C view carries the same values.
  const ts_params c = gqa.c_params();
  bool found = false;
  for (int32_t i = 0; i < c.count; ++i) {
    if (std::string(c.items[i].key) == "kv_heads") {
      found = true;
      EXPECT_EQ(c.items[i].type, TS_PARAM_INT);
      EXPECT_EQ(c.items[i].i, 2);
    }
  }
  EXPECT_TRUE(found);

  // Without num_kv_heads the model default is num_heads.
  const Manifest plain = parse(with_layers(kFourDefaultLayers));
  EXPECT_EQ(param<int64_t>(plain.block_params(plain.layers[0].attention), "kv_heads"), 2);
}

TEST(Manifest, RuntimeKvDtypeReachesEveryBlockUnlessItsOwnWins) {
  const std::string text = with_layers(kFourDefaultLayers);
  EXPECT_FALSE(parse(text).runtime.kv_dtype.has_value());
  EXPECT_EQ(parse(text).block_params(parse(text).layers[0].attention).find("kv_dtype"), nullptr);
  const Manifest m = parse(text + "[runtime]\nkv_dtype = \"f16\"\n");
  ASSERT_TRUE(m.runtime.kv_dtype.has_value());
  EXPECT_EQ(*m.runtime.kv_dtype, TS_F16);
  EXPECT_EQ(param<std::string>(m.block_params(m.layers[0].attention), "kv_dtype"), "f16");
  EXPECT_EQ(param<std::string>(m.block_params(m.layers[0].ffn), "kv_dtype"), "f16");
  // A block's own kv_dtype replaces the runtime's.
  BlockSpec own = m.layers[0].attention;
  own.params.set("kv_dtype", std::string("bf16"));
  EXPECT_EQ(param<std::string>(m.block_params(own), "kv_dtype"), "bf16");
  // to_toml keeps it, and leaves it out when unset.
  EXPECT_EQ(*parse(to_toml(m)).runtime.kv_dtype, TS_F16);
  EXPECT_EQ(to_toml(parse(text)).find("kv_dtype"), std::string::npos);
}

TEST(Manifest, LoadManifestResolvesAgainstItsFolder) {
  const fs::path dir =
      fs::temp_directory_path() / ("tessera-manifest-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "model.toml";
  std::ofstream(file) << kHeterogeneous;
  const Manifest m = tessera::load_manifest(file);
  EXPECT_EQ(m.source, file);
  EXPECT_EQ(m.weights.path, (dir / "weights/model.safetensors").lexically_normal());
  EXPECT_EQ(m.layers[0].attention.where.file, file.string());

  std::ofstream(file) << "[model]\nhidden_size = \"big\"\n";
  try {
    tessera::load_manifest(file);
    ADD_FAILURE() << "expected a ManifestError";
  } catch (const ManifestError& e) {
    EXPECT_EQ(e.file, file.string());
    EXPECT_EQ(e.line, 2);
  }
  fs::remove_all(dir);

  try {
    tessera::load_manifest(dir / "missing.toml");
    ADD_FAILURE() << "expected a ManifestError";
  } catch (const ManifestError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.toml:1:1: manifest file does not exist"),
              std::string::npos)
        << e.what();
  }
}

// --------------------------------------------------------------- round trip

TEST(Manifest, ToTomlRoundTrips) {
  const Manifest original = parse(kHeterogeneous, "/models/hetero");
  const std::string text = tessera::to_toml(original);
  const Manifest again = parse(text, "/elsewhere");  // paths are absolute by now
  expect_same_manifest(original, again);
  // Equal neighbouring layers were merged: 0-2 share blocks, 4-5 too.
  EXPECT_NE(text.find("range = \"0-2\""), std::string::npos) << text;
  EXPECT_NE(text.find("range = \"4-5\""), std::string::npos) << text;
  EXPECT_EQ(text.find("range = \"1\""), std::string::npos) << text;
  // And writing again gives the same text.
  EXPECT_EQ(tessera::to_toml(again), text);

  // Awkward values: strings needing escapes, floats needing full precision, random weights.
  Manifest odd = parse(with_layers(kFourDefaultLayers));
  odd.model.name = "quote \" back\\slash\ttab";
  odd.model.rope_theta = 0.1 + 0.2;
  odd.model.rms_norm_eps = 1e-300;
  odd.model.eos_token_ids = {4};
  odd.weights.seed = 123456789012345ull;
  odd.layers[2].ffn.params.set("odd key", ParamValue{std::string("x")});
  odd.layers[3].attention.params.set("big", ParamValue{int64_t{-9007199254740993}});
  odd.layers[3].attention.params.set("neg", ParamValue{-2.5e-7});
  odd.layers[3].attention.params.set("list", ParamValue{std::vector<int64_t>{}});
  odd.runtime.device = "cuda";
  odd.runtime.dtype = TS_F16;
  expect_same_manifest(odd, parse(tessera::to_toml(odd)));
}

TEST(Manifest, WeightsUnreadKey) {
  const std::string head = kModel.substr(0, kModel.find("[weights]")) +
                           "[weights]\nformat = \"safetensors\"\npath = \"w.safetensors\"\n";
  EXPECT_FALSE(parse(head + kFourDefaultLayers).weights.allow_unread);
  EXPECT_FALSE(parse(head + "unread = \"refuse\"\n" + kFourDefaultLayers).weights.allow_unread);
  const Manifest allowing = parse(head + "unread = \"allow\"\n" + kFourDefaultLayers);
  EXPECT_TRUE(allowing.weights.allow_unread);
  const std::string text = tessera::to_toml(allowing);
  EXPECT_NE(text.find("unread = \"allow\""), std::string::npos) << text;
  EXPECT_TRUE(parse(text).weights.allow_unread);
  EXPECT_EQ(tessera::to_toml(parse(head + kFourDefaultLayers)).find("unread"), std::string::npos);
  expect_error(head + "unread = \"maybe\"\n" + kFourDefaultLayers, 13, 10,
               {"'unread' in [weights] is \"maybe\"; expected one of \"refuse\", \"allow\""});
}

TEST(Manifest, NulInAKeyOrAStringIsRefusedWhereItIs) {
  expect_error(kModel + "\"a\\u0000b\" = 1\n", 13, 1, {"a key holds a NUL character"});
  expect_error("[model]\nname = \"x\\u0000y\"\n", 2, 8, {"a string holds a NUL character"});
  // And an Error that carries one anyway shows it instead of ending there.
  const tessera::Error e(std::string("path 'a\0b' is missing", 21));
  EXPECT_EQ(std::string(e.what()), "path 'a\\0b' is missing");
}

// ------------------------------------------------------------------ errors

TEST(Manifest, TomlSyntaxErrorHasLineAndColumn) {
  expect_error("[model]\nhidden_size = 4\nnum_heads = [1,\n", 3, 17,
               {"TOML syntax error", "end-of-file"});
  expect_error("[model]\nhidden_size = 4\nhidden_size = 5\n", 3, 15,
               {"TOML syntax error", "hidden_size"});
}

TEST(Manifest, MissingTablesAndRequiredKeys) {
  expect_error("[weights]\nformat = \"random\"\n", 1, 1, {"missing [model] table"});
  expect_error("[model]\nhidden_size = 8\nnum_layers = 1\nnum_heads = 2\n", 1, 1,
               {"missing required key 'vocab_size' in [model]"});
  expect_error("\n[model]\nhidden_size = 8\nnum_heads = 2\nvocab_size = 3\n", 2, 1,
               {"missing required key 'num_layers'"});
  expect_error("[model]\nhidden_size = 8\nnum_layers = 1\nnum_heads = 2\nvocab_size = 3\n", 1, 1,
               {"missing [weights] table", "\"safetensors\"", "\"random\""});
  expect_error(kModel + "\n", 1, 1,
               {"layers 0-3 of num_layers = 4 are not covered by any [[layers]] entry"});
}

TEST(Manifest, UnknownKeysAtEveryLevel) {
  expect_error("[modle]\n", 1, 2,
               {"unknown key 'modle' in the top level", "did you mean 'model'",
                "allowed keys: model, weights, layers, runtime"});
  expect_error("[model]\nhidden_size = 8\nhiden_size = 8\n", 3, 1,
               {"unknown key 'hiden_size' in [model]", "did you mean 'hidden_size'",
                "allowed keys: name, hidden_size"});
  // Reported in document order, not alphabetical order.
  expect_error("[model]\nzzz = 1\naaa = 2\n", 2, 1, {"unknown key 'zzz'"});
  expect_error(kModel + "compression = \"zstd\"\n" + kFourDefaultLayers, 13, 1,
               {"unknown key 'compression' in [weights]", "allowed keys: format, path, seed"});
  expect_error(with_layers("[[layers]]\nrange = \"0-3\"\nattn = { kind = \"gqa\" }\n"), 16, 1,
               {"unknown key 'attn' in [[layers]]", "allowed keys: range, attention, ffn"});
  expect_error(with_layers(kFourDefaultLayers + "[runtime]\ndevices = \"cpu\"\n"), 17, 1,
               {"unknown key 'devices' in [runtime]", "did you mean 'device'",
                "allowed keys: device, dtype, weight_dtype, kv_dtype, threads, plugin_paths, "
                "decoder, parallel"});
  // Inside block and decoder tables extra keys are parameters, not errors.
  EXPECT_NO_THROW(
      parse(with_layers(kFourDefaultLayers + "[runtime.decoder]\nkind = \"x\"\nanything = 1\n")));
}

TEST(Manifest, WrongTypesSayWhatWasExpected) {
  expect_error("[model]\nhidden_size = \"32\"\n", 2, 15,
               {"'hidden_size' in [model] must be an integer, got a string"});
  expect_error("[model]\nhidden_size = 32.0\n", 2, 15, {"must be an integer, got a float"});
  expect_error("[model]\nname = 3\n", 2, 8, {"'name' in [model] must be a string, got an integer"});
  expect_error(
      "[model]\nhidden_size = 8\nnum_layers = 1\nnum_heads = 2\nvocab_size = 3\n"
      "tie_embeddings = \"yes\"\n",
      6, 18, {"'tie_embeddings' in [model] must be a boolean"});
  expect_error(
      "[model]\nhidden_size = 8\nnum_layers = 1\nnum_heads = 2\nvocab_size = 3\n"
      "rope_theta = \"big\"\n",
      6, 14, {"'rope_theta' in [model] must be a number, got a string"});
  expect_error(
      "[model]\nhidden_size = 8\nnum_layers = 1\nnum_heads = 2\nvocab_size = 3\n"
      "eos_token_id = [1, \"2\"]\n",
      6, 20, {"eos_token_id must be an integer or a list of integers, got a string"});
  expect_error("model = 3\n", 1, 9, {"'model' in the document must be a table"});
  expect_error(kModel + "seed2 = 1\n", 13, 1, {"unknown key 'seed2'"});
  expect_error(with_layers("[[layers]]\nrange = \"0-3\"\nattention = \"gqa\"\n"), 16, 13,
               {"must be a table like { kind = \"gqa\" }, got a string"});
  expect_error(with_layers("[[layers]]\nrange = [0, 3]\n"), 15, 9,
               {"'range' in [[layers]] entry #1 (line 14) must be a string like \"0-15\" or an "
                "integer, got an array"});
  expect_error(with_layers("[[layers]]\nrange = \"0-3\"\nffn = { kind = \"swiglu\", x = { a = 1 "
                           "} }\n"),
               16, 30,
               {"parameter 'x'",
                "must be an integer, float, boolean, string or list of "
                "integers; got a table"});
  expect_error(with_layers("[[layers]]\nrange = \"0-3\"\nffn = { kind = \"swiglu\", x = [1, "
                           "2.5] }\n"),
               16, 34, {"parameter 'x'", "elements must be integers; got a float"});
  expect_error(with_layers(kFourDefaultLayers + "[runtime]\nthreads = \"4\"\n"), 17, 11,
               {"'threads' in [runtime] must be an integer, got a string"});
  expect_error(with_layers(kFourDefaultLayers + "[runtime]\nplugin_paths = \"a\"\n"), 17, 16,
               {"'plugin_paths' in [runtime] must be a list of strings, got a string"});
  expect_error(with_layers(kFourDefaultLayers + "[runtime]\nplugin_paths = [\"a\", 3]\n"), 17, 22,
               {"each entry of 'plugin_paths'", "got an integer"});
  expect_error(with_layers(kFourDefaultLayers + "[runtime]\nplugin_paths = [\"a\\u0000b\"]\n"), 17,
               17, {"a string holds a NUL character"});
  expect_error(with_layers(kFourDefaultLayers + "[runtime]\ndecoder = \"greedy\"\n"), 17, 11,
               {"'decoder' in [runtime] must be a table like { kind = \"greedy\" }"});
  expect_error("layers = 3\n" + kModel, 1, 10,
               {"'layers' must be an array of tables written as [[layers]] entries, got an "
                "integer"});
}

TEST(Manifest, ValueChecks) {
  const std::string head =
      "[model]\nhidden_size = 8\nnum_layers = 1\nnum_heads = 2\nvocab_size = 3\n";
  expect_error("[model]\nhidden_size = 0\n", 2, 15,
               {"'hidden_size' in [model] is 0; expected a positive integer"});
  expect_error("[model]\nhidden_size = 8\nnum_layers = -2\n", 3, 14,
               {"is -2; expected a positive"});
  expect_error("[model]\nhidden_size = 8\nnum_layers = 3000000000\n", 3, 14,
               {"is 3000000000; expected a positive integer"});
  expect_error("[model]\nhidden_size = 10\nnum_layers = 1\nnum_heads = 4\nvocab_size = 3\n", 4, 13,
               {"hidden_size 10 is not divisible by num_heads 4", "give head_dim"});
  expect_error(head + "num_kv_heads = 3\n", 6, 16, {"num_kv_heads 3 does not divide num_heads 2"});
  expect_error(head + "rms_norm_eps = 0.0\n", 6, 16, {"expected a finite number > 0"});
  expect_error(head + "bos_token_id = 3\n", 6, 16,
               {"bos_token_id is 3; expected a token id in [0, vocab_size = 3)"});
  expect_error(head + "eos_token_id = [0, -1]\n", 6, 20, {"eos_token_id -1"});
  expect_error(head + "[weights]\nformat = \"onnx\"\n", 7, 10,
               {"'format' in [weights] is \"onnx\"; expected one of \"safetensors\", \"gguf\""});
  expect_error(head + "[weights]\nseed = 1\n", 6, 1, {"missing required key 'format'"});
  expect_error(head + "[weights]\nformat = \"safetensors\"\n", 6, 1,
               {"format = \"safetensors\" needs a non-empty 'path'"});
  expect_error(head + "[weights]\nformat = \"safetensors\"\npath = \"a\"\nseed = 2\n", 9, 8,
               {"'seed' in [weights] applies only to format = \"random\""});
  expect_error(head + "[weights]\nformat = \"random\"\npath = \"a\"\n", 8, 8,
               {"'path' in [weights] applies only to format = \"safetensors\""});
  expect_error(head + "[weights]\nformat = \"random\"\nseed = -1\n", 8, 8,
               {"expected an integer >= 0"});
  const std::string valid = head +
                            "intermediate_size = 4\n[weights]\nformat = \"random\"\n"
                            "[[layers]]\nrange = 0\n";
  expect_error(valid + "[runtime]\ndevice = \"tpu\"\n", 12, 10,
               {"'device' in [runtime] is \"tpu\"; expected one of \"cpu\", \"cuda\""});
  expect_error(valid + "[runtime]\ndtype = \"f64\"\n", 12, 9,
               {"expected one of \"f32\", \"f16\", \"bf16\""});
  expect_error(valid + "[runtime]\nthreads = -1\n", 12, 11,
               {"is -1; expected an integer in [0, 1024]"});
  expect_error(valid + "[runtime]\nthreads = 100000\n", 12, 11,
               {"'threads' in [runtime] is 100000; expected an integer in [0, 1024]"});
  expect_error(valid + "[runtime]\nkv_dtype = \"f8\"\n", 12, 12,
               {"'kv_dtype' in [runtime] is \"f8\"; expected one of \"f32\", \"f16\", \"bf16\""});
  expect_error(valid + "[runtime.decoder]\ntemperature = 1.0\n", 11, 1,
               {"missing 'kind' in [runtime.decoder]"});
  expect_error(valid + "[runtime.parallel]\nkind = \"mpi\"\nplugin = \"\"\n", 13, 10,
               {"'plugin' in [runtime.parallel] is empty"});
}

TEST(Manifest, LayerCoverageErrors) {
  // Overlap: both entries' lines are named; the error points at the second range.
  expect_error(with_layers("[[layers]]\nrange = \"0-2\"\n[[layers]]\nrange = \"2-3\"\n"), 17, 9,
               {"layer 2 is covered twice", "entry at line 15 (range \"0-2\")",
                "the one at line 17 (range \"2-3\")"});
  expect_error(with_layers("[[layers]]\nrange = 1\n[[layers]]\nrange = \"0-3\"\n"), 17, 9,
               {"layer 1 is covered twice", "line 15 (range \"1\")"});
  // Gaps name every missing layer and point at the first [[layers]] entry.
  expect_error(with_layers("[[layers]]\nrange = \"1\"\n[[layers]]\nrange = \"3\"\n"), 14, 1,
               {"layers 0, 2 of num_layers = 4 are not covered"});
  expect_error(with_layers("[[layers]]\nrange = \"0-2\"\n"), 14, 1,
               {"layer 3 of num_layers = 4 is not covered"});
  // Beyond num_layers, reversed, malformed.
  expect_error(with_layers("[[layers]]\nrange = \"0-4\"\n"), 15, 9,
               {"range \"0-4\"", "goes beyond num_layers = 4 (layers are 0-3)"});
  expect_error(with_layers("[[layers]]\nrange = 9\n"), 15, 9, {"goes beyond num_layers = 4"});
  expect_error(with_layers("[[layers]]\nrange = \"3-0\"\n"), 15, 9,
               {"range \"3-0\"", "is reversed; write \"0-3\""});
  for (const char* bad : {"x", "1-", "-3", "1-2-3", "", "0..3", "1 2", "0x1"}) {
    expect_error(with_layers(std::string("[[layers]]\nrange = \"") + bad + "\"\n"), 15, 9,
                 {"malformed range \"" + std::string(bad) + "\"", "expected \"FIRST-LAST\""});
  }
  expect_error(with_layers("[[layers]]\nrange = -1\n"), 15, 9, {"starts below layer 0"});
  expect_error(with_layers("[[layers]]\nattention = { kind = \"gqa\" }\n"), 14, 1,
               {"missing 'range' in [[layers]] entry #1 (line 14)"});
}

TEST(Manifest, BlockParametersAreTheProvidersToCheck) {
  // What a kind's parameters must be is its provider's to say (describe and supports, when
  // the model is planned: test_weight_plan.cpp checks those errors with their locations); the
  // manifest only records them, and where each block is.
  const Manifest m = parse(
      with_layers("[[layers]]\nrange = \"0-3\"\nattention = { kind = \"gqa\", kv_heads = 3 }\n"
                  "ffn = { kind = \"swiglu\", intermediate_size = 0 }\n"));
  EXPECT_EQ(param<int64_t>(m.layers[0].attention.params, "kv_heads"), 3);
  EXPECT_EQ(param<int64_t>(m.layers[0].ffn.params, "intermediate_size"), 0);
  EXPECT_EQ(m.layers[0].attention.where.file, "test.toml");
  EXPECT_EQ(m.layers[0].attention.where.line, 16);
  EXPECT_EQ(m.layers[0].attention.where.column, 13);
  EXPECT_EQ(m.layers[0].ffn.where.line, 17);
  // An omitted block is located at its [[layers]] entry.
  const Manifest d = parse(with_layers(kFourDefaultLayers));
  EXPECT_EQ(d.layers[2].ffn.where.line, 14);
  EXPECT_EQ(d.layers[2].ffn.where.column, 1);
  expect_error(with_layers("[[layers]]\nrange = \"0-3\"\nffn = { plugin = \"p\" }\n"), 16, 7,
               {"missing 'kind' in the ffn of [[layers]] entry #1"});
  // Kinds the core does not know pass with their parameters untouched.
  const Manifest third = parse(with_layers(
      "[[layers]]\nrange = \"0-3\"\nattention = { kind = \"mamba\", kv_heads = 3, d_state = 16 "
      "}\nffn = { kind = \"moe\", experts = 8, plugin = \"third-party\" }\n"));
  EXPECT_EQ(third.layers[0].attention.kind, "mamba");
  EXPECT_EQ(param<int64_t>(third.layers[0].attention.params, "kv_heads"), 3);
  EXPECT_EQ(third.layers[2].ffn.plugin, "third-party");
  EXPECT_EQ(param<int64_t>(third.layers[2].ffn.params, "experts"), 8);
}

TEST(Manifest, BlockPrefixIsReservedAndRoundTrips) {
  const Manifest m = parse(
      with_layers("[[layers]]\nrange = \"0-2\"\n[[layers]]\nrange = \"3\"\n"
                  "ffn = { kind = \"swiglu\", prefix = \"model.layers.3.variants.ffn_50pct.\", "
                  "intermediate_size = 32 }\n"));
  EXPECT_EQ(m.layers[3].ffn.prefix, "model.layers.3.variants.ffn_50pct.");
  EXPECT_EQ(m.layers[3].ffn.params.find("prefix"), nullptr);  // not a parameter
  EXPECT_EQ(param<int64_t>(m.layers[3].ffn.params, "intermediate_size"), 32);
  EXPECT_TRUE(m.layers[2].ffn.prefix.empty());
  const std::string text = tessera::to_toml(m);
  EXPECT_NE(text.find("prefix = \"model.layers.3.variants.ffn_50pct.\""), std::string::npos)
      << text;
  EXPECT_EQ(parse(text).layers[3].ffn.prefix, m.layers[3].ffn.prefix);
  // Layers that differ only in their prefix are not merged into one range.
  Manifest two = parse(with_layers(kFourDefaultLayers));
  two.layers[1].ffn.prefix = "shared.";
  const Manifest again = parse(tessera::to_toml(two));
  EXPECT_EQ(again.layers[1].ffn.prefix, "shared.");
  EXPECT_TRUE(again.layers[0].ffn.prefix.empty());
  EXPECT_TRUE(again.layers[2].ffn.prefix.empty());

  expect_error(with_layers("[[layers]]\nrange = \"0-3\"\nffn = { kind = \"swiglu\", prefix = "
                           "\"\" }\n"),
               16, 35, {"'prefix' in the ffn of [[layers]] entry #1 (line 14) is empty"});
  expect_error(
      with_layers("[[layers]]\nrange = \"0-3\"\nffn = { kind = \"swiglu\", prefix = 3 }\n"), 16, 35,
      {"'prefix' in the ffn of [[layers]] entry #1 (line 14) must be a string"});
  // A decoder has no weights of its own: there, prefix is a parameter like any other.
  const Manifest decoder =
      parse(with_layers(kFourDefaultLayers + "[runtime.decoder]\nkind = \"greedy\"\nprefix = 1\n"));
  EXPECT_EQ(param<int64_t>(decoder.runtime.decoder.params, "prefix"), 1);
}

TEST(Manifest, ExampleManifestsParse) {
  const fs::path dir = fs::path(TESSERA_SOURCE_DIR) / "examples" / "manifests";
  const Manifest tiny = tessera::load_manifest(dir / "tiny-hetero.toml");
  EXPECT_EQ(tiny.weights.format, "random");
  EXPECT_GE(tiny.layers.size(), 4u);
  std::vector<std::string> kinds;
  for (const auto& layer : tiny.layers)
    kinds.push_back(layer.attention.kind + "/" + layer.ffn.kind);
  // Heterogeneous: not every layer is the same.
  bool differs = false;
  for (const std::string& k : kinds) differs |= k != kinds[0];
  EXPECT_TRUE(differs);
  expect_same_manifest(tiny, parse(tessera::to_toml(tiny)));

  const Manifest smol = tessera::load_manifest(dir / "smollm2-135m.toml");
  EXPECT_EQ(smol.model.hidden_size, 576);
  EXPECT_EQ(smol.model.num_layers, 30);
  EXPECT_EQ(smol.model.num_heads, 9);
  EXPECT_EQ(smol.model.num_kv_heads, 3);
  EXPECT_EQ(smol.model.head_dim, 64);
  EXPECT_EQ(smol.model.intermediate_size, 1536);
  EXPECT_EQ(smol.model.vocab_size, 49152);
  EXPECT_TRUE(smol.model.tie_embeddings);
  EXPECT_EQ(smol.weights.format, "safetensors");
  EXPECT_EQ(smol.weights.path,
            (fs::absolute(dir) / "smollm2-135m" / "model.safetensors").lexically_normal());
  ASSERT_EQ(smol.layers.size(), 30u);
  for (const auto& layer : smol.layers) {
    EXPECT_EQ(layer.attention.kind, "gqa");
    EXPECT_EQ(layer.ffn.kind, "swiglu");
  }
}
