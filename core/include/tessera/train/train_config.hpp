// Training configs: the TOML file `tessera train` reads (docs/training.md has every key).
//
//   [run]        objective ("lm" | "distill-blocks" | "distill" | "medusa"), output, seed, steps,
//                checkpoint_every, resume
//   [model]      path: the model to train (anything open_model takes)
//   [parent]     path: the teacher, for the distill objectives
//   [data]       corpus path and filter, seq_len, batch_size, held-out part, evaluation
//   [optimizer]  AdamW and the learning-rate schedule, clipping, gradient accumulation
//   [recompute]  policy: what forward keeps for backward ("none" | "core" | "all")
//   [freeze]     patterns: weights that stay fixed (lm and distill)
//   [[blocks]]   distill-blocks: the blocks to train (layers, part, kind, prefix)
//   [distill]    distill: the loss weights (cosine, kl) and temperature
//   [medusa]     medusa: heads, layers and the per-head loss decay (the [model] stays frozen)
//
// The conventions are the manifest's (docs/manifest.md): every error is a ManifestError at
// file:line:column, unknown keys are refused with a did-you-mean, types are strict, relative
// paths are taken from the config's folder.
#pragma once

#include <tessera/engine/error.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/text/tokenizer.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

enum class TrainObjective { kLm, kDistillBlocks, kDistill, kMedusa };
// Whether the objective learns from a [parent] model (distill-blocks, distill).
inline bool has_parent(TrainObjective o) {
  return o == TrainObjective::kDistillBlocks || o == TrainObjective::kDistill;
}
// The values of ts_recompute (abi.h).
enum class RecomputePolicy { kNone = 0, kCore = 1, kAll = 2 };
enum class LrSchedule { kCosine, kLinear, kConstant };

std::string_view to_string(
    TrainObjective objective);                       // "lm", "distill-blocks", "distill", "medusa"
std::string_view to_string(RecomputePolicy policy);  // "none", "core", "all"
std::string_view to_string(LrSchedule schedule);     // "cosine", "linear", "constant"

struct RunSection {
  TrainObjective objective = TrainObjective::kLm;
  std::filesystem::path output;       // required: checkpoints, the log, the report
  uint64_t seed = 0;                  // batch order (and what else the trainer draws)
  int64_t steps = 0;                  // required: optimizer steps
  int64_t checkpoint_every = 0;       // steps between checkpoints; 0: only after the last step
  bool resume = false;                // continue from the latest checkpoint in output
  std::filesystem::path resume_from;  // a checkpoint named explicitly (resume = "PATH")
};

struct DataSection {
  std::filesystem::path path;  // required: a folder of text files or one file
  std::vector<std::string> include = {"*"};
  int32_t seq_len = 512;
  int32_t batch_size = 8;  // sequences per micro-batch
  double held_out_fraction = 0.05;
  int64_t held_out_documents = 0;  // instead of the fraction
  uint64_t split_seed = 0;
  int64_t eval_every = 100;       // steps between held-out measurements; 0: only after the last
  int32_t eval_batches = 8;       // held-out batches per measurement (fewer when it has fewer)
  std::string separator = "eos";  // "eos", "bos" or a token's text
  bool cache = true;
  std::filesystem::path cache_path;  // empty: default_token_cache()

  bool has_held_out() const { return held_out_fraction > 0.0 || held_out_documents > 0; }
};

struct OptimizerSection {
  double lr = 3e-4;  // peak learning rate
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double clip_norm = 1.0;  // global gradient norm; 0: no clipping
  int64_t warmup_steps = 0;
  LrSchedule schedule = LrSchedule::kCosine;
  double min_lr_ratio = 0.1;  // the schedule ends at lr * min_lr_ratio
  int32_t grad_accumulation = 1;
};

// One [[blocks]] entry of distill-blocks: these layers' attention or FFN are trained.
struct TrainBlocks {
  int32_t first_layer = 0;
  int32_t last_layer = 0;
  std::string part;    // "attention" or "ffn"
  std::string kind;    // when given, the model's block there must be of this kind
  std::string prefix;  // when given, the model's block there must have this weight prefix
  SourceLocation where;
};

struct DistillSection {
  double cosine = 0.0;  // weight of 1 - cos(student hidden, teacher hidden)
  double kl = 1.0;      // weight of KL(teacher || student) over the logits
  double temperature = 1.0;
};

// [medusa]: heads trained on the frozen [model] (objective "medusa").
struct MedusaSection {
  int32_t heads = 4;
  int32_t layers = 1;  // ResBlocks per head
  double decay = 0.8;  // head k's loss weight is decay^k
};

struct TrainConfig {
  std::filesystem::path source;  // the file read (the source name when parsed from text)
  std::string text;              // the config as written, for the report
  RunSection run;
  std::filesystem::path model;
  std::filesystem::path parent;  // distill objectives only
  DataSection data;
  OptimizerSection optimizer;
  RecomputePolicy recompute = RecomputePolicy::kNone;
  std::vector<std::string> freeze;  // weight-name patterns (corpus.hpp's glob_match)
  std::vector<TrainBlocks> blocks;  // distill-blocks only
  DistillSection distill;           // distill only
  MedusaSection medusa;             // medusa only

  // Where a key was written ("data.seq_len"), for errors found later; the key's table, or
  // line 1, when the key was left out.
  SourceLocation location(const std::string& key) const;
  std::map<std::string, SourceLocation> locations;
};

// Throws ManifestError (file:line:column) for anything malformed.
TrainConfig load_train_config(const std::filesystem::path& path);
TrainConfig parse_train_config(std::string_view text, const std::string& source_name,
                               const std::filesystem::path& base_dir);

// The [data] table of another document, read with a training config's keys and rules (the puzzle
// pipeline's configs share it): the result's data, source and locations are filled; the
// document's other tables are not read. Throws ManifestError as parse_train_config does.
TrainConfig parse_data_table(std::string_view text, const std::string& source_name,
                             const std::filesystem::path& base_dir);

// A path written in a config: "~/..." from $HOME, a relative one from base_dir.
std::filesystem::path config_path(const std::filesystem::path& base_dir, const std::string& text);

// What the config asks of the models, checked once they are open; errors are ManifestErrors at
// the config's key: seq_len above the model's max_seq_len, a separator the tokenizer lacks, a
// [[blocks]] entry beyond the model's layers or disagreeing with its blocks, a freeze pattern
// no weight matches (checked when weight_names is not empty), a parent of another vocabulary
// or shape. Returns the separator token id.
int32_t check_train_config(const TrainConfig& config, const Manifest& model,
                           const Tokenizer& tokenizer, const std::vector<std::string>& weight_names,
                           const Manifest* parent);

}  // namespace tessera
