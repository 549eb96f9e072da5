// Training configs: every key parsed, the defaults, every error at its file:line:column, and
// the checks against the opened model.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/train/train_config.hpp>
#include <vector>

#include "hf_fixtures.hpp"
#include "train_data_fixtures.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;

TrainConfig parse(const std::string& text) {
  return parse_train_config(text, "train.toml", "/base");
}

const char* const kMinimal = R"([run]
output = "runs/a"
steps = 10

[model]
path = "model.gguf"

[data]
path = "corpus"
)";

TEST(TrainConfig, MinimalConfigGetsTheDefaults) {
  const TrainConfig c = parse(kMinimal);
  EXPECT_EQ(c.source, "train.toml");
  EXPECT_EQ(c.text, kMinimal);
  EXPECT_EQ(c.run.objective, TrainObjective::kLm);
  EXPECT_EQ(c.run.output, "/base/runs/a");
  EXPECT_EQ(c.run.steps, 10);
  EXPECT_EQ(c.run.seed, 0U);
  EXPECT_EQ(c.run.checkpoint_every, 0);
  EXPECT_FALSE(c.run.resume);
  EXPECT_EQ(c.model, "/base/model.gguf");
  EXPECT_TRUE(c.parent.empty());
  EXPECT_EQ(c.data.path, "/base/corpus");
  EXPECT_EQ(c.data.include, (std::vector<std::string>{"*"}));
  EXPECT_EQ(c.data.seq_len, 512);
  EXPECT_EQ(c.data.batch_size, 8);
  EXPECT_DOUBLE_EQ(c.data.held_out_fraction, 0.05);
  EXPECT_EQ(c.data.held_out_documents, 0);
  EXPECT_EQ(c.data.eval_every, 100);
  EXPECT_EQ(c.data.eval_batches, 8);
  EXPECT_EQ(c.data.separator, "eos");
  EXPECT_TRUE(c.data.cache);
  EXPECT_TRUE(c.data.cache_path.empty());
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-4);
  EXPECT_DOUBLE_EQ(c.optimizer.beta1, 0.9);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-8);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(c.optimizer.clip_norm, 1.0);
  EXPECT_EQ(c.optimizer.warmup_steps, 0);
  EXPECT_EQ(c.optimizer.schedule, LrSchedule::kCosine);
  EXPECT_DOUBLE_EQ(c.optimizer.min_lr_ratio, 0.1);
  EXPECT_EQ(c.optimizer.grad_accumulation, 1);
  EXPECT_EQ(c.recompute, RecomputePolicy::kNone);
  EXPECT_TRUE(c.freeze.empty());
  EXPECT_TRUE(c.blocks.empty());
  // Locations of keys, of a table for a key left out, and line 1 for a table left out.
  EXPECT_EQ(c.location("data.path").line, 9);
  EXPECT_EQ(c.location("data.seq_len").line, 8);
  EXPECT_EQ(c.location("optimizer.lr").line, 1);
}

TEST(TrainConfig, EveryKeyOfAnLmRun) {
  const TrainConfig c = parse(R"([run]
objective = "lm"
output = "/abs/out/"
seed = 7
steps = 1000
checkpoint_every = 250
resume = "/abs/out/step-500"

[model]
path = "../models/m"

[data]
path = "corpus.txt"
include = ["*.rst.txt", "library/*.txt"]
seq_len = 256
batch_size = 4
held_out_documents = 12
split_seed = 3
eval_every = 50
eval_batches = 2
separator = "<|endoftext|>"
cache = "tokens.bin"

[optimizer]
lr = 1e-4
betas = [0.8, 0.99]
eps = 1e-6
weight_decay = 0
clip_norm = 0.5
warmup_steps = 100
schedule = "linear"
min_lr_ratio = 0
grad_accumulation = 4

[recompute]
policy = "core"

[freeze]
patterns = ["model.embed_tokens.weight", "model.layers.*.mlp.*"]
)");
  EXPECT_EQ(c.run.output, "/abs/out");
  EXPECT_EQ(c.run.seed, 7U);
  EXPECT_EQ(c.run.steps, 1000);
  EXPECT_EQ(c.run.checkpoint_every, 250);
  EXPECT_TRUE(c.run.resume);
  EXPECT_EQ(c.run.resume_from, "/abs/out/step-500");
  EXPECT_EQ(c.model, "/models/m");
  EXPECT_EQ(c.data.path, "/base/corpus.txt");
  EXPECT_EQ(c.data.include, (std::vector<std::string>{"*.rst.txt", "library/*.txt"}));
  EXPECT_EQ(c.data.seq_len, 256);
  EXPECT_EQ(c.data.batch_size, 4);
  EXPECT_EQ(c.data.held_out_fraction, 0.0);
  EXPECT_EQ(c.data.held_out_documents, 12);
  EXPECT_EQ(c.data.split_seed, 3U);
  EXPECT_EQ(c.data.eval_every, 50);
  EXPECT_EQ(c.data.eval_batches, 2);
  EXPECT_EQ(c.data.separator, "<|endoftext|>");
  EXPECT_TRUE(c.data.cache);
  EXPECT_EQ(c.data.cache_path, "/base/tokens.bin");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-4);
  EXPECT_DOUBLE_EQ(c.optimizer.beta1, 0.8);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.99);
  EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(c.optimizer.clip_norm, 0.5);
  EXPECT_EQ(c.optimizer.warmup_steps, 100);
  EXPECT_EQ(c.optimizer.schedule, LrSchedule::kLinear);
  EXPECT_DOUBLE_EQ(c.optimizer.min_lr_ratio, 0.0);
  EXPECT_EQ(c.optimizer.grad_accumulation, 4);
  EXPECT_EQ(c.recompute, RecomputePolicy::kCore);
  EXPECT_EQ(c.freeze,
            (std::vector<std::string>{"model.embed_tokens.weight", "model.layers.*.mlp.*"}));
  EXPECT_EQ(c.location("data.separator").line, 21);
  EXPECT_EQ(c.location("data.separator").column, 13);
}

TEST(TrainConfig, DistillObjectives) {
  const TrainConfig blocks = parse(R"([run]
objective = "distill-blocks"
output = "out"
steps = 5
[model]
path = "student.toml"
[parent]
path = "teacher.gguf"
[data]
path = "c"
held_out_fraction = 0
cache = false
[[blocks]]
layers = "0-2"
part = "ffn"
kind = "swiglu"
prefix = "model.layers.0.variants.ffn_50pct."
[[blocks]]
layers = 4
part = "attention"
)");
  EXPECT_EQ(blocks.run.objective, TrainObjective::kDistillBlocks);
  EXPECT_EQ(blocks.parent, "/base/teacher.gguf");
  EXPECT_FALSE(blocks.data.cache);
  EXPECT_EQ(blocks.data.eval_every, 0);  // no held-out part: nothing to measure
  ASSERT_EQ(blocks.blocks.size(), 2U);
  EXPECT_EQ(blocks.blocks[0].first_layer, 0);
  EXPECT_EQ(blocks.blocks[0].last_layer, 2);
  EXPECT_EQ(blocks.blocks[0].part, "ffn");
  EXPECT_EQ(blocks.blocks[0].kind, "swiglu");
  EXPECT_EQ(blocks.blocks[0].prefix, "model.layers.0.variants.ffn_50pct.");
  EXPECT_EQ(blocks.blocks[0].where.line, 13);
  EXPECT_EQ(blocks.blocks[1].first_layer, 4);
  EXPECT_EQ(blocks.blocks[1].last_layer, 4);
  EXPECT_EQ(blocks.blocks[1].part, "attention");

  const TrainConfig distill = parse(R"([run]
objective = "distill"
output = "out"
steps = 5
[model]
path = "student.toml"
[parent]
path = "teacher.gguf"
[data]
path = "c"
[distill]
cosine = 0.5
kl = 2
temperature = 2.0
[freeze]
patterns = "model.embed_tokens.*"
[recompute]
policy = "all"
)");
  EXPECT_EQ(distill.run.objective, TrainObjective::kDistill);
  EXPECT_DOUBLE_EQ(distill.distill.cosine, 0.5);
  EXPECT_DOUBLE_EQ(distill.distill.kl, 2.0);
  EXPECT_DOUBLE_EQ(distill.distill.temperature, 2.0);
  EXPECT_EQ(distill.freeze, (std::vector<std::string>{"model.embed_tokens.*"}));
  EXPECT_EQ(distill.recompute, RecomputePolicy::kAll);
  EXPECT_EQ(to_string(distill.run.objective), "distill");
  EXPECT_EQ(to_string(RecomputePolicy::kAll), "all");
  EXPECT_EQ(to_string(LrSchedule::kConstant), "constant");
}

struct ErrorCase {
  const char* name;
  std::string text;
  int line;
  int column;
  const char* expected;
};

// The minimal config with `replace` substituted for `find` (or `extra` appended).
std::string edit(const std::string& find, const std::string& replace) {
  std::string text = kMinimal;
  const size_t at = text.find(find);
  EXPECT_NE(at, std::string::npos) << find;
  return text.replace(at, find.size(), replace);
}

std::string with(const std::string& extra) {
  return std::string(kMinimal) + extra;
}

const std::string kDistillHead = R"([run]
objective = "distill"
output = "o"
steps = 5
[model]
path = "m"
[parent]
path = "p"
[data]
path = "c"
)";

const std::string kBlocksHead = R"([run]
objective = "distill-blocks"
output = "o"
steps = 5
[model]
path = "m"
[parent]
path = "p"
[data]
path = "c"
)";

TEST(TrainConfig, EveryErrorIsLocated) {
  const std::vector<ErrorCase> cases = {
      {"syntax", "[run\n", 1, 5, "TOML syntax error"},
      {"unknown top", with("[runtime]\nthreads = 1\n"), 10, 2,
       "unknown key 'runtime' in the top level"},
      {"missing run", "[model]\npath = \"m\"\n", 1, 1, "missing [run] table"},
      {"run not table", "run = 3\n", 1, 7, "'run' in the document must be a table"},
      {"unknown run key", edit("steps = 10", "steps = 10\nstep = 3"), 4, 1,
       "unknown key 'step' in [run] (did you mean 'steps'?)"},
      {"objective", edit("steps = 10", "steps = 10\nobjective = \"sft\""), 4, 13,
       "'objective' in [run] is \"sft\"; expected one of \"lm\", \"distill-blocks\", \"distill\""},
      {"missing output", edit("output = \"runs/a\"\n", ""), 1, 1,
       "missing required key 'output' in [run]"},
      {"empty output", edit("\"runs/a\"", "\"\""), 2, 10, "'output' in [run] is empty"},
      {"output type", edit("\"runs/a\"", "3"), 2, 10,
       "'output' in [run] must be a string, got an integer"},
      {"missing steps", edit("steps = 10\n", ""), 1, 1, "missing required key 'steps' in [run]"},
      {"steps zero", edit("steps = 10", "steps = 0"), 3, 9,
       "'steps' in [run] is 0; expected an integer >= 1"},
      {"steps float", edit("steps = 10", "steps = 10.0"), 3, 9,
       "'steps' in [run] must be an integer, got a float"},
      {"seed negative", edit("steps = 10", "steps = 10\nseed = -1"), 4, 8,
       "'seed' in [run] is -1; expected an integer >= 0"},
      {"checkpoint_every", edit("steps = 10", "steps = 10\ncheckpoint_every = -5"), 4, 20,
       "'checkpoint_every' in [run] is -5"},
      {"resume type", edit("steps = 10", "steps = 10\nresume = 1"), 4, 10,
       "'resume' in [run] must be true, false or a checkpoint's path, got an integer"},
      {"resume empty", edit("steps = 10", "steps = 10\nresume = \"\""), 4, 10,
       "got an empty string"},
      {"missing model", edit("[model]\npath = \"model.gguf\"\n", ""), 1, 1,
       "missing [model] table"},
      {"model key", edit("path = \"model.gguf\"", "path = \"model.gguf\"\nformat = \"gguf\""), 7, 1,
       "unknown key 'format' in [model]; allowed keys: path"},
      {"model path missing", edit("path = \"model.gguf\"", "# none"), 5, 1,
       "missing required key 'path' in [model]: the model to train"},
      {"parent for lm", with("[parent]\npath = \"p\"\n"), 10, 1,
       "[parent] applies only to objective = \"distill-blocks\" or \"distill\""},
      {"distill without parent", edit("steps = 10", "steps = 10\nobjective = \"distill\""), 1, 1,
       "objective = \"distill\" needs a [parent] table"},
      {"missing data", edit("[data]\npath = \"corpus\"\n", ""), 1, 1, "missing [data] table"},
      {"data path missing", edit("path = \"corpus\"", "seq_len = 64"), 8, 1,
       "missing required key 'path' in [data]: the corpus"},
      {"data unknown", with("seqlen = 3\n"), 10, 1,
       "unknown key 'seqlen' in [data] (did you mean 'seq_len'?)"},
      {"include empty list", with("include = []\n"), 10, 11,
       "'include' in [data] is an empty list"},
      {"include bad item", with("include = [\"*.txt\", 3]\n"), 10, 21,
       "each pattern of 'include' in [data] must be a non-empty string like \"*.rst.txt\", got an "
       "integer"},
      {"include empty item", with("include = [\"\"]\n"), 10, 12, "got an empty string"},
      {"include type", with("include = 3\n"), 10, 11,
       "'include' in [data] must be a list of patterns"},
      {"seq_len", with("seq_len = 0\n"), 10, 11,
       "'seq_len' in [data] is 0; expected a positive integer"},
      {"seq_len string", with("seq_len = \"512\"\n"), 10, 11, "must be an integer, got a string"},
      {"batch_size", with("batch_size = -2\n"), 10, 14, "'batch_size' in [data] is -2"},
      {"fraction range", with("held_out_fraction = 1.0\n"), 10, 21,
       "'held_out_fraction' in [data] is 1; expected a fraction in [0, 1)"},
      {"fraction nan", with("held_out_fraction = nan\n"), 10, 21,
       "'held_out_fraction' in [data] is nan"},
      {"documents negative", with("held_out_documents = -1\n"), 10, 22,
       "'held_out_documents' in [data] is -1"},
      {"both held-out", with("held_out_documents = 3\nheld_out_fraction = 0.1\n"), 11, 21,
       "give held_out_fraction or held_out_documents in [data], not both"},
      {"eval without held-out", with("held_out_fraction = 0\neval_every = 10\n"), 11, 14,
       "'eval_every' in [data] is 10 but there is no held-out part"},
      {"eval_every negative", with("eval_every = -1\n"), 10, 14, "'eval_every' in [data] is -1"},
      {"eval_batches", with("eval_batches = 0\n"), 10, 16, "'eval_batches' in [data] is 0"},
      {"split_seed", with("split_seed = -3\n"), 10, 14, "'split_seed' in [data] is -3"},
      {"separator empty", with("separator = \"\"\n"), 10, 13, "'separator' in [data] is empty"},
      {"separator type", with("separator = 2\n"), 10, 13, "'separator' in [data] must be a string"},
      {"cache type", with("cache = 1\n"), 10, 9,
       "'cache' in [data] must be true, false or the token cache's path"},
      {"optimizer type", "optimizer = 1\n" + std::string(kMinimal), 1, 13,
       "must be a table ([optimizer])"},
      {"optimizer unknown", with("[optimizer]\nlearning_rate = 1e-3\n"), 11, 1,
       "unknown key 'learning_rate' in [optimizer]"},
      {"lr", with("[optimizer]\nlr = 0\n"), 11, 6,
       "'lr' in [optimizer] is 0; expected a finite number > 0"},
      {"lr inf", with("[optimizer]\nlr = inf\n"), 11, 6, "'lr' in [optimizer] is inf"},
      {"lr string", with("[optimizer]\nlr = \"1e-4\"\n"), 11, 6,
       "'lr' in [optimizer] must be a number, got a string"},
      {"betas count", with("[optimizer]\nbetas = [0.9]\n"), 11, 9,
       "'betas' in [optimizer] must be a list of two numbers like [0.9, 0.95], got a list of 1"},
      {"betas type", with("[optimizer]\nbetas = 0.9\n"), 11, 9, "got a float"},
      {"beta item", with("[optimizer]\nbetas = [0.9, \"x\"]\n"), 11, 15,
       "each of 'betas' in [optimizer] must be a number, got a string"},
      {"beta range", with("[optimizer]\nbetas = [0.9, 1.0]\n"), 11, 15,
       "beta2 in [optimizer] is 1; expected a number in [0, 1)"},
      {"eps", with("[optimizer]\neps = -1e-8\n"), 11, 7, "'eps' in [optimizer] is -1e-08"},
      {"weight_decay", with("[optimizer]\nweight_decay = -0.1\n"), 11, 16,
       "'weight_decay' in [optimizer] is -0.1; expected a finite number >= 0"},
      {"clip_norm", with("[optimizer]\nclip_norm = -1\n"), 11, 13,
       "'clip_norm' in [optimizer] is -1"},
      {"warmup negative", with("[optimizer]\nwarmup_steps = -1\n"), 11, 16,
       "'warmup_steps' in [optimizer] is -1"},
      {"warmup over steps", with("[optimizer]\nwarmup_steps = 11\n"), 11, 16,
       "'warmup_steps' in [optimizer] is 11, more than the run's 10 steps"},
      {"schedule", with("[optimizer]\nschedule = \"step\"\n"), 11, 12,
       "'schedule' in [optimizer] is \"step\"; expected one of \"cosine\", \"linear\", "
       "\"constant\""},
      {"min_lr_ratio", with("[optimizer]\nmin_lr_ratio = 1.5\n"), 11, 16,
       "'min_lr_ratio' in [optimizer] is 1.5; expected a ratio in [0, 1]"},
      {"grad_accumulation", with("[optimizer]\ngrad_accumulation = 0\n"), 11, 21,
       "'grad_accumulation' in [optimizer] is 0"},
      {"recompute policy", with("[recompute]\npolicy = \"some\"\n"), 11, 10,
       "'policy' in [recompute] is \"some\"; expected one of \"none\", \"core\", \"all\""},
      {"recompute key", with("[recompute]\nmode = \"all\"\n"), 11, 1,
       "unknown key 'mode' in [recompute]"},
      {"recompute type", "recompute = \"all\"\n" + std::string(kMinimal), 1, 13,
       "'recompute' in the document must be a table"},
      {"freeze key", with("[freeze]\npattern = [\"x\"]\n"), 11, 1,
       "unknown key 'pattern' in [freeze] (did you mean 'patterns'?)"},
      {"freeze item", with("[freeze]\npatterns = [1]\n"), 11, 13,
       "each pattern of 'patterns' in [freeze] must be a non-empty string"},
      {"freeze for blocks",
       kBlocksHead + "[freeze]\npatterns = [\"x\"]\n[[blocks]]\nlayers = 0\npart = \"ffn\"\n", 11,
       1, "[freeze] does not apply to objective = \"distill-blocks\""},
      {"blocks for lm", with("[[blocks]]\nlayers = 0\npart = \"ffn\"\n"), 10, 1,
       "[[blocks]] applies only to objective = \"distill-blocks\""},
      {"blocks missing", kBlocksHead, 1, 1,
       "objective \"distill-blocks\" needs [[blocks]] entries"},
      {"blocks not array", "blocks = 3\n" + kBlocksHead, 1, 10,
       "'blocks' must be [[blocks]] entries"},
      {"block key", kBlocksHead + "[[blocks]]\nlayers = 0\npart = \"ffn\"\nvariant = \"x\"\n", 14,
       1, "unknown key 'variant' in [[blocks]] entry #1 (line 11)"},
      {"block layers missing", kBlocksHead + "[[blocks]]\npart = \"ffn\"\n", 11, 1,
       "missing required key 'layers' in [[blocks]] entry #1 (line 11)"},
      {"block layers malformed", kBlocksHead + "[[blocks]]\nlayers = \"0-x\"\npart = \"ffn\"\n", 12,
       10, "malformed 'layers' in [[blocks]] entry #1"},
      {"block layers reversed", kBlocksHead + "[[blocks]]\nlayers = \"5-2\"\npart = \"ffn\"\n", 12,
       10, "'layers' \"5-2\" in [[blocks]] entry #1 (line 11) is reversed; write \"2-5\""},
      {"block layers negative", kBlocksHead + "[[blocks]]\nlayers = -1\npart = \"ffn\"\n", 12, 10,
       "'layers' in [[blocks]] entry #1 (line 11) is -1"},
      {"block layers type", kBlocksHead + "[[blocks]]\nlayers = 1.5\npart = \"ffn\"\n", 12, 10,
       "'layers' in [[blocks]] entry #1 (line 11) must be a string or an integer, got a float"},
      {"block part", kBlocksHead + "[[blocks]]\nlayers = 1\npart = \"mlp\"\n", 13, 8,
       "'part' in [[blocks]] entry #1 (line 11) is \"mlp\"; expected one of \"attention\", "
       "\"ffn\""},
      {"block part missing", kBlocksHead + "[[blocks]]\nlayers = 1\n", 11, 1,
       "missing required key 'part' in [[blocks]] entry #1 (line 11)"},
      {"block kind empty", kBlocksHead + "[[blocks]]\nlayers = 1\npart = \"ffn\"\nkind = \"\"\n",
       14, 8, "'kind' in [[blocks]] entry #1 (line 11) is empty"},
      {"block twice",
       kBlocksHead +
           "[[blocks]]\nlayers = \"0-3\"\npart = \"ffn\"\n[[blocks]]\nlayers = 3\npart = \"ffn\"\n",
       15, 10,
       "the ffn of layer 3 is named twice: by the [[blocks]] entry at line 11 and by [[blocks]] "
       "entry #2"},
      {"distill for lm", with("[distill]\nkl = 1\n"), 10, 1,
       "[distill] applies only to objective = \"distill\", not \"lm\""},
      {"distill key", kDistillHead + "[distill]\nmse = 1\n", 12, 1,
       "unknown key 'mse' in [distill]"},
      {"distill weight", kDistillHead + "[distill]\nkl = -1\n", 12, 6,
       "'kl' in [distill] is -1; expected a weight >= 0"},
      {"distill temperature", kDistillHead + "[distill]\ntemperature = 0\n", 12, 15,
       "'temperature' in [distill] is 0"},
      {"distill zero weights", kDistillHead + "[distill]\nkl = 0\ncosine = 0\n", 11, 1,
       "both loss weights in [distill] are 0"},
  };
  for (const ErrorCase& c : cases) {
    try {
      parse(c.text);
      ADD_FAILURE() << c.name << ": no error";
    } catch (const ManifestError& e) {
      EXPECT_EQ(e.file, "train.toml") << c.name;
      EXPECT_EQ(e.line, c.line) << c.name << ": " << e.what();
      EXPECT_EQ(e.column, c.column) << c.name << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos)
          << c.name << ": " << e.what();
    }
  }
}

TEST(TrainConfig, MissingFileIsLocatedAtItsName) {
  try {
    load_train_config("/nonexistent/train.toml");
    ADD_FAILURE() << "no error";
  } catch (const ManifestError& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/train.toml:1:1: training config does not exist");
  }
}

class TrainConfigFile : public test::TempFolderTest {};

TEST_F(TrainConfigFile, PathsAreTakenFromTheConfigsFolder) {
  write_file(dir_ / "train.toml", kMinimal);
  const TrainConfig c = load_train_config(dir_ / "train.toml");
  EXPECT_EQ(c.source, dir_ / "train.toml");
  EXPECT_EQ(c.model, dir_ / "model.gguf");
  EXPECT_EQ(c.data.path, dir_ / "corpus");
  EXPECT_EQ(c.run.output, dir_ / "runs" / "a");
  EXPECT_EQ(c.location("data.path").file, (dir_ / "train.toml").string());
}

TEST(TrainConfig, TildeIsTheHomeFolder) {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') GTEST_SKIP() << "HOME is not set";
  const TrainConfig c = parse(edit("path = \"corpus\"", "path = \"~/.cache/tessera/corpora/x\""));
  EXPECT_EQ(c.data.path, fs::path(home) / ".cache/tessera/corpora/x");
  EXPECT_EQ(parse(edit("\"model.gguf\"", "\"~user/m.gguf\"")).model, "/base/~user/m.gguf");
}

// ------------------------------------------------------------ against the model

// hf_hetero: 6 layers, vocab 640, max_seq_len 64, bos 1, eos [2, 0].
const Tokenizer& toy_tokenizer() {
  static const Tokenizer t = Tokenizer::from_json_file(fs::path(TESSERA_SOURCE_DIR) / "tests" /
                                                       "data" / "tokenizer" / "toy_smollm.json");
  return t;
}

void expect_check_error(const std::string& text, int line, int column, const std::string& expected,
                        const std::vector<std::string>& weights = {},
                        const Manifest* parent = nullptr,
                        const Tokenizer& tokenizer = test::byte_tokenizer()) {
  const TrainConfig c = parse(text);
  const Manifest m = test::hf_hetero_manifest();
  try {
    check_train_config(c, m, tokenizer, weights, parent);
    ADD_FAILURE() << "no error for: " << expected;
  } catch (const ManifestError& e) {
    EXPECT_EQ(e.file, "train.toml");
    EXPECT_EQ(e.line, line) << e.what();
    EXPECT_EQ(e.column, column) << e.what();
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
}

TEST(TrainConfigCheck, ResolvesTheSeparator) {
  const Manifest m = test::hf_hetero_manifest();
  const Tokenizer& bytes = test::byte_tokenizer();
  EXPECT_EQ(check_train_config(parse(with("seq_len = 64\n")), m, bytes, {}, nullptr), 256);
  EXPECT_EQ(check_train_config(parse(with("seq_len = 64\nseparator = \"<|endoftext|>\"\n")), m,
                               bytes, {}, nullptr),
            256);
  EXPECT_EQ(
      check_train_config(parse(with("seq_len = 64\nseparator = \"a\"\n")), m, bytes, {}, nullptr),
      97);
}

TEST(TrainConfigCheck, ErrorsPointAtTheConfigsKey) {
  expect_check_error(
      with("seq_len = 65\n"), 10, 11,
      "seq_len 65 in [data] is above the model's max_seq_len 64; expected a sequence "
      "length in [1, 64]");
  // Left out, the default 512 is too long too: the error points at [data].
  expect_check_error(kMinimal, 8, 1, "seq_len 512 in [data] is above the model's max_seq_len 64");
  expect_check_error(with("seq_len = 8\nseparator = \"<|nope|>\"\n"), 11, 13,
                     "separator \"<|nope|>\" in [data] is not a token of the model's vocabulary");
  expect_check_error(
      with("seq_len = 8\n[freeze]\npatterns = [\"model.norm.weight\", \"lm_head.*\"]\n"), 12, 12,
      "freeze pattern \"lm_head.*\" matches none of the model's 2 weights",
      {"model.norm.weight", "model.embed_tokens.weight"});
  // Without weight names, freeze patterns are not checked.
  const Manifest m = test::hf_hetero_manifest();
  EXPECT_NO_THROW(
      check_train_config(parse(with("seq_len = 8\n[freeze]\npatterns = [\"lm_head.*\"]\n")), m,
                         test::byte_tokenizer(), {}, nullptr));
}

TEST(TrainConfigCheck, SpecialIdsComeFromTheTokenizerOrTheModel) {
  // The byte tokenizer has an eos (256) and no bos; hf_hetero's [model] has bos 1, eos [2, 0].
  const Tokenizer& bytes = test::byte_tokenizer();
  ASSERT_FALSE(bytes.bos_id().has_value());
  Manifest m = test::hf_hetero_manifest();
  const TrainConfig bos = parse(with("seq_len = 8\nseparator = \"bos\"\n"));
  EXPECT_EQ(check_train_config(bos, m, bytes, {}, nullptr), 1);
  m.model.bos_token_id = -1;
  try {
    check_train_config(bos, m, bytes, {}, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const ManifestError& e) {
    EXPECT_EQ(e.line, 11);
    EXPECT_EQ(e.column, 13);
    EXPECT_NE(std::string(e.what()).find(
                  "separator = \"bos\" in [data], but the model's tokenizer has no bos token"),
              std::string::npos)
        << e.what();
  }
}

TEST(TrainConfigCheck, TokenizerLargerThanTheModel) {
  // toy_smollm has 600 tokens; a model of vocab 500 could not embed them.
  Manifest small = test::hf_hetero_manifest();
  small.model.vocab_size = 500;
  const TrainConfig c = parse(with("seq_len = 8\n"));
  try {
    check_train_config(c, small, toy_tokenizer(), {}, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const ManifestError& e) {
    EXPECT_EQ(e.line, 6);
    EXPECT_NE(std::string(e.what()).find("has 600 tokens but the model only 500 embeddings"),
              std::string::npos)
        << e.what();
  }
}

TEST(TrainConfigCheck, BlocksAgreeWithTheModel) {
  const Manifest parent = test::hf_hetero_manifest();
  const std::string head = kBlocksHead + "seq_len = 8\n";
  expect_check_error(head + "[[blocks]]\nlayers = \"4-6\"\npart = \"ffn\"\n", 12, 1,
                     "[[blocks]] layers 4-6 goes beyond the model's 6 layers (0-5)", {}, &parent);
  expect_check_error(
      head + "[[blocks]]\nlayers = \"0-2\"\npart = \"attention\"\nkind = \"gqa\"\n", 12, 1,
      "[[blocks]] kind \"gqa\": the model's attention of layer 2 is \"linear\"", {}, &parent);
  expect_check_error(
      head + "[[blocks]]\nlayers = 1\npart = \"ffn\"\nprefix = \"model.layers.1.x.\"\n", 12, 1,
      "[[blocks]] prefix \"model.layers.1.x.\": the model's ffn of layer 1 has prefix "
      "\"\" (none: the default names)",
      {}, &parent);
  const Manifest m = test::hf_hetero_manifest();
  EXPECT_NO_THROW(check_train_config(
      parse(head + "[[blocks]]\nlayers = \"0-1\"\npart = \"attention\"\nkind = \"gqa\"\n"), m,
      test::byte_tokenizer(), {}, &parent));
}

TEST(TrainConfigCheck, ParentMustMatch) {
  Manifest other_vocab = test::hf_hetero_manifest();
  other_vocab.model.vocab_size = 700;
  expect_check_error(kDistillHead + "seq_len = 8\n", 8, 8,
                     "the parent's vocabulary has 700 tokens and the model's 640", {},
                     &other_vocab);
  Manifest narrower = test::hf_hetero_manifest();
  narrower.model.hidden_size = 32;
  expect_check_error(kBlocksHead + "seq_len = 8\n[[blocks]]\nlayers = 0\npart = \"ffn\"\n", 8, 8,
                     "distill-blocks needs the same layers and width", {}, &narrower);
  // distill (logits only) does not need the same width.
  const Manifest m = test::hf_hetero_manifest();
  EXPECT_NO_THROW(check_train_config(parse(kDistillHead + "seq_len = 8\n"), m,
                                     test::byte_tokenizer(), {}, &narrower));
}

}  // namespace
}  // namespace tessera
