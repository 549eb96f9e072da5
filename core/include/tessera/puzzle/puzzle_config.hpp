// The Puzzle pipeline's config: one TOML file every `tessera puzzle` stage reads
// (docs/puzzle.md has every key).
//
//   [puzzle]   parent (the model to rebuild), output (the run's folder)
//   [data]     the corpus, as in training configs: calibration reads the train part, scoring
//              and evaluation the held-out part
//   [library]  the variants (FFN widths, KV heads, linear, no-op) and the calibration budget
//   [distill]  blockwise distillation of the library: token budget, learning rate, checkpoints
//   [score]    the held-out tokens of the replace-1-block scores
//   [cost]     the scenario the costs are measured for (prefill and decode lengths, batch
//              sizes, repeats) and the weight dtype and threads the child will run with
//   [solve]    the search: provider, budgets (speedups, memory), the frontier, diversity
//   [global_distill] the token budget and weights of the child's global distillation (GKD)
//   [evaluate] held-out tokens and timed repeats of the side-by-side evaluation, the other
//              solutions evaluated beside the main one, MMLU
//
// The conventions are the manifest's: errors are ManifestErrors at file:line:column, unknown
// keys are refused with a did-you-mean, paths are taken from the config's folder ("~/" from
// $HOME).
#pragma once

#include <tessera/puzzle/costs.hpp>
#include <tessera/puzzle/library.hpp>
#include <tessera/train/train_config.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

namespace tessera::puzzle {

struct LibrarySection {
  LibraryOptions options;
  int64_t calibration_tokens = 8192;  // parent tokens the initialisers read (train part)
};

// A distillation stage's training run (BLD's and GKD's): its budget and schedule.
struct DistillRun {
  int64_t tokens = 0;  // parent tokens (train part); 0: the stage does nothing
  double lr = 1e-3;    // AdamW's peak rate, cosine decay to 10 % after the warm-up
  int64_t warmup_steps = 0;
  int64_t checkpoint_every = 10;  // steps between checkpoints (resume); 0: only after the last
  int64_t eval_every = 0;         // steps between held-out measurements; 0: before and after
  int32_t eval_batches = 2;       // held-out batches per measurement
};

// BLD; tokens 0: the library stays as made.
struct DistillSection : DistillRun {};

struct ScoreSection {
  int64_t tokens = 2048;  // held-out tokens every variant is scored on (start of the part)
};

struct CostSection {
  Scenario scenario;
  ts_dtype weight_dtype = TS_BF16;  // the dtype the child will run at
  int32_t threads = 0;              // 0: the parent's [runtime] threads (0: every core)
};

struct SolveSection {
  std::string provider = "mip";                   // the search provider of the main solution
  std::string plugin;                             // pins the plugin that provides it (empty: any)
  std::vector<std::string> compare = {"greedy"};  // providers solved beside it, same budgets
  int32_t batch_size = 1;                         // one of [cost] batch_sizes: the budgets' batch
  double decode_speedup = 1.5;   // child decode step <= parent's / this (0: no budget)
  double prefill_speedup = 0;    // the same for prefill (0: no budget)
  double memory_fraction = 0;    // blocks' weights + KV <= this x the parent's (0: no budget)
  std::vector<double> frontier;  // further decode speedups solved for the frontier
  int32_t solutions = 1;         // diverse solutions at the main budget
  double diversity = 0.8;        // each at most this share of the 2 x layers choices in common
};

// GKD; tokens 0: the child stays as realised.
struct GlobalDistillSection : DistillRun {
  GlobalDistillSection() { lr = 1e-4; }
  double kl = 1.0;      // weight of KL(parent || child) over the logits
  double cosine = 1.0;  // weight of 1 - cos(child, parent) on every layer's hidden states
};

struct EvaluateSection {
  int64_t tokens = 2048;  // held-out tokens after those the scores read
  int32_t repeats = 3;    // generations timed per model and batch size (median kept)
  // Solutions realised (child-LABEL/) and evaluated beside the main child, in the same run.
  std::vector<std::string> children;
  // Children made elsewhere (another run's child/, say), evaluated beside these on the same text
  // ([evaluate.folders]: label = "folder"), in the order written.
  std::vector<std::pair<std::string, std::filesystem::path>> folders;
  int64_t skip_tokens = -1;       // held-out tokens before the evaluation's; -1: [score] tokens
  std::filesystem::path mmlu;     // MMLU's jsonl (scripts/fetch-mmlu.sh); empty: no MMLU
  int32_t mmlu_per_subject = 10;  // the first N questions of each subject (0: every question)
};

struct PuzzleConfig {
  std::filesystem::path source;
  std::filesystem::path parent;
  std::filesystem::path output;
  TrainConfig data;  // its [data] section (data, locations)
  LibrarySection library;
  DistillSection distill;
  ScoreSection score;
  CostSection cost;
  SolveSection solve;
  GlobalDistillSection global_distill;
  EvaluateSection evaluate;

  std::filesystem::path library_folder() const { return output / "library"; }
  std::filesystem::path distilled_folder() const { return output / "library-distilled"; }
  // The library the later stages read: the distilled one when [distill] has a token budget.
  std::filesystem::path stage_library() const {
    return distill.tokens > 0 ? distilled_folder() : library_folder();
  }
  std::filesystem::path scores_path() const { return output / "scores.json"; }
  std::filesystem::path costs_path() const { return output / "costs.json"; }
  std::filesystem::path solutions_path() const { return output / "solutions.json"; }
  std::filesystem::path child_folder() const { return output / "child"; }
  std::filesystem::path child_hf_folder() const { return output / "child-hf"; }
  // The main child after global distillation ([global_distill] tokens > 0).
  std::filesystem::path distilled_child_folder() const { return output / "child-gkd"; }
  std::filesystem::path evaluation_path() const { return output / "evaluation.json"; }
};

PuzzleConfig parse_puzzle_config(std::string_view text, const std::string& source_name,
                                 const std::filesystem::path& base_dir);
PuzzleConfig load_puzzle_config(const std::filesystem::path& path);

}  // namespace tessera::puzzle
