// What `tessera train` drives, and how: the trainer is three callables (one optimizer step,
// a held-out measurement, a checkpoint), and run_training is the loop around them that feeds
// batches, measures, logs, prints progress and writes the report. The training core provides
// the callables; this file knows nothing of models, losses or optimizers.
#pragma once

#include <tessera/train/batches.hpp>
#include <tessera/train/loss_plot.hpp>
#include <tessera/train/train_config.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <limits>
#include <optional>
#include <span>
#include <vector>

namespace tessera {

// What one optimizer step reports.
struct TrainStep {
  double loss = std::numeric_limits<double>::quiet_NaN();       // mean over the step's targets
  double learning_rate = 0.0;                                   // the rate the step used
  double grad_norm = std::numeric_limits<double>::quiet_NaN();  // before clipping; NaN: unknown
  int64_t tokens = 0;  // targets scored; 0: run_training counts the batches' targets
};

struct HeldOutLoss {
  double loss = std::numeric_limits<double>::quiet_NaN();  // mean over the targets
  int64_t tokens = 0;
};

struct TrainerHooks {
  // Optimizer step `step` (1-based) over [optimizer] grad_accumulation micro-batches of
  // [data] batch_size sequences each. Required.
  std::function<TrainStep(int64_t step, std::span<const Batch> micro_batches)> step;
  // The held-out loss over these batches. Required when the data has a held-out part.
  std::function<HeldOutLoss(std::span<const Batch> batches)> evaluate;
  // Saves a checkpoint after `step`; `cursor` is where the train data continues. Optional.
  std::function<void(int64_t step, const CursorState& cursor)> checkpoint;
};

// Where a run starts: step 0 with a fresh cursor, or a checkpoint's step and cursor.
struct RunStart {
  int64_t step = 0;
  std::optional<CursorState> cursor;
};

struct RunOutput {
  std::ostream* out = nullptr;  // the progress line; null: none
  bool terminal = false;        // rewrite the line in place
  // Seconds on a steady clock; empty: std::chrono::steady_clock.
  std::function<double()> clock;
};

struct RunOutcome {
  int64_t steps = 0;                                             // the last step done
  double train_loss = std::numeric_limits<double>::quiet_NaN();  // the last step's
  std::optional<double> held_out_loss;                           // the last measurement
  int64_t tokens = 0;                                            // trained in this process
  double seconds = 0.0;
  std::filesystem::path log;     // <output>/log.jsonl
  std::filesystem::path report;  // <output>/report.html
};

// The held-out batches a measurement uses: the part's first eval_batches * batch_size
// sequences in order (fewer when it has fewer), in batches of batch_size.
std::vector<Batch> held_out_batches(const PackedPart& part, int32_t batch_size,
                                    int32_t eval_batches);

// Runs steps start.step + 1 .. config.run.steps: each takes grad_accumulation batches from a
// BatchCursor seeded with [run] seed; the held-out loss is measured before the first step of a
// new run (logged as step 0), every eval_every steps and after the last; checkpoints every
// checkpoint_every steps and after the last. Appends to <output>/log.jsonl and ends with
// write_run_report. Exceptions from the hooks propagate, after the log has what was done.
RunOutcome run_training(const TrainConfig& config, const TokenDataset& data,
                        const TrainerHooks& hooks, const RunStart& start, const RunOutput& output);

// Draws <output>/loss.svg (linear), <output>/loss-log.svg (log scale) and <output>/report.html
// from the run log, with the config and `figures`. Returns the report's path.
std::filesystem::path write_run_report(const TrainConfig& config, const std::filesystem::path& log,
                                       const std::vector<ReportFigure>& figures);

}  // namespace tessera
