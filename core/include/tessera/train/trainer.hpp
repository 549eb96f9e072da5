// The trainer: a model, an objective and AdamW, one optimiser step per call.
//
//   Model model(manifest, registry, weights, pool, {});
//   TrainerConfig config;                   // AdamW, schedule, clipping, recompute, frozen
//   config.frozen = {"model.embed_tokens."};
//   Trainer trainer(model, registry, config, std::make_unique<LmObjective>());
//   StepStats stats = trainer.step({micro_batch_1, micro_batch_2});   // accumulated
//   trainer.save("run/step-100");  ...  trainer.load("run/step-100");  // bit-identical resume
//   std::puts(format_memory_report(trainer.memory()).c_str());
//
// A step runs each micro-batch (whole packed sequences, causal, no KV cache) forward through
// the model: embedding, per layer [RMSNorm, attention (forward_train), residual; RMSNorm, FFN,
// residual], final RMSNorm, lm head (tied or untied), keeping what backward needs under the
// recompute policy (ALL: only each layer's input; the layer is run again in backward). The
// objective gives the loss and d loss / d outputs; backward runs the lm head, the final norm,
// each layer in reverse (FFN then attention, each through its norm and the residual) and the
// embedding, adding into one f32 gradient buffer per trainable tensor. Gradients are summed
// over the micro-batches and normalised by the step's total count (Objective::count), then
// clipped by their global norm, and AdamW updates the f32 masters at the scheduled learning
// rate. Updates reach the blocks: they read the model's tensors, which are the masters when
// the model keeps f32 weights and are converted from them after each step otherwise.
//
// Trainable tensors are those the weight plan declares (blocks' declared weights, norms,
// embedding, lm head), except the frozen ones: no gradient buffer, no optimiser state, never
// written. Every non-identity block must have the ABI 2.1 training entries. Results are
// deterministic for a given model, thread count and sequence of batches; gradients do not
// depend on the recompute policy (blocks must honour that).
//
// Distill-blocks (BLD) trains one sub-block on its own: step_block feeds it the parent's input
// (record_block_io) and compares its output with the parent block's (normalised MSE).
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/model.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/tensor.hpp>
#include <tessera/train/memory.hpp>
#include <tessera/train/objective.hpp>
#include <tessera/train/optimizer.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tessera::train {

struct TrainerConfig {
  AdamWConfig adamw;
  ScheduleConfig schedule;
  double clip_norm = 1.0;  // max global gradient norm; 0: no clipping
  ts_recompute recompute = TS_RECOMPUTE_NONE;
  // Tensors that do not train, by full name: glob patterns ('*' any run of characters, '?'
  // one), and a pattern without either is a prefix ("model.layers.0." freezes layer 0).
  std::vector<std::string> frozen;
  // When not empty, only the tensors matching one of these train (then `frozen` applies).
  std::vector<std::string> train_only;
  // When not empty, only these sub-blocks' tensors (their declared weights and their norm)
  // train, with the patterns above applied after: BLD's way of naming what it trains.
  std::vector<BlockRef> train_blocks;
};

struct StepStats {
  int64_t step = 0;          // optimiser steps done, this one included
  double loss = 0;           // the objective, sum over the micro-batches / count
  int64_t count = 0;         // what the loss is normalised by (tokens with a target)
  int64_t tokens = 0;        // tokens run in this step
  double grad_norm = 0;      // global norm of the gradients, before clipping
  double clip_factor = 1.0;  // applied to the gradients (1: not clipped)
  double lr = 0;             // the learning rate of this step
};

// One micro-batch for a block trained on its own (BLD): the parent's input to the sub-block
// and its output, as record_block_io gives them.
struct BlockBatch {
  std::vector<int32_t> offsets;    // n_seqs + 1, as TrainBatch
  std::vector<int32_t> positions;  // empty: 0, 1, ... within each sequence
  std::vector<float> input;        // [n_tokens, hidden], the residual stream entering it
  std::vector<float> target;       // [n_tokens, hidden], the parent block's contribution
};

// One sub-block's micro-batches, for BLD over several blocks at once.
struct BlockStep {
  int32_t layer = 0;
  ts_kind kind = TS_KIND_FFN;
  std::vector<BlockBatch> micro_batches;
};

// The state of one trainable tensor.
struct ParamState {
  std::string name;
  Tensor master;  // f32; the model's own tensor when the model keeps it in f32
  Tensor grad;    // f32, the last compute_gradients / step's (before clipping: AdamW scales it)
  Tensor m, v;    // AdamW's first and second moments, f32
  bool decay = false;
};

// Test seam for save(): called after each file of the checkpoint is written into the
// staging folder (a throw there is a save that fails midway).
struct SaveOptions {
  std::function<void(const std::filesystem::path& written)> after_file;
};

class Trainer {
 public:
  // Plans the model's weights with `registry` (the plan names the trainable tensors), checks
  // the configuration and that every non-identity block can be trained (Error naming the layer,
  // the kind and the plugin), and allocates gradients and optimiser state. The model must stay
  // alive and unswapped while the trainer lives; its weights are updated in place.
  Trainer(Model& model, const PluginRegistry& registry, TrainerConfig config,
          std::unique_ptr<Objective> objective);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One optimiser step over the micro-batches (gradients accumulated over them).
  StepStats step(const std::vector<TrainBatch>& micro_batches);
  // The loss and the gradients (accumulated, normalised, not clipped) without a step.
  double compute_gradients(const std::vector<TrainBatch>& micro_batches);
  // The objective's value, forward only.
  double evaluate(const std::vector<TrainBatch>& micro_batches);

  // BLD: one optimiser step of one sub-block (its declared weights and its norm, unless
  // frozen) against the parent's outputs: normalised MSE = sum (child - parent)^2 / sum
  // parent^2 over all the micro-batches.
  StepStats step_block(int32_t layer, ts_kind kind, const std::vector<BlockBatch>& micro_batches);
  double compute_block_gradients(int32_t layer, ts_kind kind,
                                 const std::vector<BlockBatch>& micro_batches);
  // BLD of several sub-blocks in one optimiser step: each block's gradients are those of its
  // own normalised MSE (as step_block), and the loss reported is the mean over the blocks. The
  // blocks share no tensors, so this is each block trained alone, except that clipping takes
  // the global norm over all of them. A block listed twice is an Error.
  StepStats step_blocks(const std::vector<BlockStep>& blocks);
  // The mean normalised MSE over the blocks: forwards only, no gradient buffer touched.
  double evaluate_blocks(const std::vector<BlockStep>& blocks);
  // Its building blocks: output = block(norm(input)) ([n_tokens, hidden], without the residual),
  // keeping what block_backward needs; then, given d loss / d output, the gradients of the
  // block's weights and norm added into their buffers and d loss / d input through the norm
  // (the residual path excluded) written into grad_input unless it is NULL.
  void block_forward(int32_t layer, ts_kind kind, const BlockBatch& batch, float* output);
  void block_backward(const float* grad_output, float* grad_input);
  // Sets every gradient buffer to zero (compute_gradients and step do it themselves).
  void zero_gradients();

  // Trainable tensors by full name, sorted; state() is nullptr for any other name.
  std::vector<std::string> trainable() const;
  const ParamState* state(const std::string& name) const;
  const TrainerConfig& config() const;
  int64_t steps() const;
  // Of the last micro-batch that ran forward and backward through the whole model.
  MemoryReport memory() const;

  // A checkpoint folder: weights.safetensors (every planned tensor: the trainable ones' f32
  // masters, the frozen ones as the model keeps them) and optimizer.safetensors (each trainable
  // tensor's moments "<name>.exp_avg" and "<name>.exp_avg_sq"; the step and the configuration
  // in its metadata). Written into a staging folder renamed over `folder` at the end: an
  // interrupted save leaves the previous checkpoint whole.
  void save(const std::filesystem::path& folder, const SaveOptions& options = {}) const;
  // Restores weights, moments and the step. Everything is checked (the same trainable tensors,
  // shapes, dtypes) before anything changes; Error naming the file and the tensor otherwise.
  void load(const std::filesystem::path& folder);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether `name` matches a frozen/train_only pattern (see TrainerConfig::frozen).
bool name_matches(const std::string& pattern, const std::string& name);

}  // namespace tessera::train
