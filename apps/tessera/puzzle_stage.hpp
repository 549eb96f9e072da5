// What the `tessera puzzle` stages share (cmd_puzzle*.cpp): their arguments, the library and
// corpus a stage reads, held-out batches, and the stages that live in files of their own.
#pragma once

#include <tessera/formats/model_source.hpp>
#include <tessera/puzzle/library_index.hpp>
#include <tessera/puzzle/puzzle_config.hpp>
#include <tessera/train/batches.hpp>
#include <tessera/train/objective.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

#include "corpus_data.hpp"

namespace tessera::cli {

struct PuzzleArgs {
  std::string config;
  bool force = false;
  std::string solution;  // realize: the label of the solution (default: the main one)
  std::vector<std::string> plugin_paths;
};

std::string fixed(double value, int decimals);
double seconds_since(std::chrono::steady_clock::time_point start);

// Sequences [first, first + count) of a part (fewer when it has fewer), batch_size at a time.
std::vector<Batch> part_batches(const PackedPart& part, int32_t batch_size, int64_t first,
                                int64_t count);
// The sequences of seq_len tokens that cover `tokens`.
int64_t sequences_for(int64_t tokens, int32_t seq_len);
train::TrainBatch inputs_of(const Batch& batch);
std::vector<train::TrainBatch> inputs_of(std::span<const Batch> batches);

// The library a later stage reads: its index and the folder as a model (the parent's manifest
// over every variant's weights).
struct OpenedLibrary {
  puzzle::LibraryIndex index;
  LoadedModel model;
};

// The library a stage reads: `folder`, or by default the one the later stages read (the
// distilled library when [distill] has a budget).
puzzle::LibraryIndex library_index_of(const puzzle::PuzzleConfig& config,
                                      std::filesystem::path folder = {});
OpenedLibrary open_library(const puzzle::PuzzleConfig& config, puzzle::LibraryIndex index,
                           std::filesystem::path folder = {});

// The config's corpus read with the library's tokenizer.
CorpusData stage_corpus(const puzzle::PuzzleConfig& config, const LoadedModel& model);

std::string read_all(const std::filesystem::path& path);

// A distillation stage's run as `tessera train`'s loop sees it: [data] batches of the train
// part, run.tokens / (batch_size x seq_len) steps, the run's schedule, held-out measurements
// and checkpoints, AdamW without weight decay (the student starts near the parent); its log,
// checkpoints and report go to `output`.
TrainConfig distill_train_config(const puzzle::PuzzleConfig& config, const puzzle::DistillRun& run,
                                 TrainObjective objective, const std::filesystem::path& output);

// Realises solution `label` of solutions.json as a manifest folder (and, for the main
// solution, DeciLM safetensors in child-hf/) unless it is there and `force` is false; returns
// the folder: child/ for the main solution, child-LABEL/ for another.
std::filesystem::path realize_solution(const PuzzleArgs& args, const puzzle::PuzzleConfig& config,
                                       const std::string& label, bool force, std::ostream& out);

int run_global_distill(const PuzzleArgs& args);
int run_evaluate(const PuzzleArgs& args);

}  // namespace tessera::cli
