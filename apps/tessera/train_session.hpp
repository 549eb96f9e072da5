// What `tessera train` runs: the models a config names (the one trained, and the parent of
// the distill objectives), the training core's Trainer with the config's objective, the hooks
// run_training calls, checkpoints a run resumes from, and the trained model written out.
//
// Checkpoints: <output>/checkpoints/step-N/ holds the trainer's weights.safetensors and
// optimizer.safetensors and the data cursor (cursor.txt); <output>/checkpoints/latest names
// the newest complete one and is replaced only after it is whole, so an interrupted save
// leaves the previous checkpoint in force. The two newest are kept.
#pragma once

#include <tessera/formats/model_source.hpp>
#include <tessera/train/train_config.hpp>
#include <tessera/train/train_run.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tessera::cli {

class TrainSession {
 public:
  // Builds the models (the trained one keeps f32 weights: its weights are converted on load)
  // and the trainer. `parent` is required for the distill objectives.
  TrainSession(const TrainConfig& config, LoadedModel& model, LoadedModel* parent,
               const std::vector<std::string>& plugin_paths);
  ~TrainSession();
  TrainSession(const TrainSession&) = delete;
  TrainSession& operator=(const TrainSession&) = delete;

  TrainerHooks hooks();
  // Where the run starts: step 0, or the checkpoint [run] resume asks for, restored (weights,
  // optimizer state, data cursor). `note` gets a line saying which.
  RunStart start(std::string* note);
  // What the trainer trains: "N tensors, P parameters (of Q)".
  std::string trainable_text() const;
  // The trainer's memory report of the last micro-batch (empty before any step).
  std::string memory_text() const;
  // Objective medusa: the heads' held-out accuracies (a line per head; empty before a
  // measurement), and the heads written for the decoder into `folder` (default
  // <output>/medusa).
  bool trains_medusa() const;
  std::string medusa_text() const;
  std::filesystem::path write_medusa_heads(std::filesystem::path folder = {}) const;
  // Writes the model as trained into `folder` (default: <output>/model) as a manifest folder,
  // with `extra_files` (name, contents) beside it; returns its path.
  std::filesystem::path write_model(
      const LoadedModel& source, std::filesystem::path folder = {},
      const std::vector<std::pair<std::string, std::string>>& extra_files = {}) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The newest complete checkpoint of a run's output folder; empty when there is none.
std::filesystem::path latest_checkpoint(const std::filesystem::path& output);

}  // namespace tessera::cli
