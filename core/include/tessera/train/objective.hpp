// What a training step minimises, per objective:
//   lm               cross-entropy on the next tokens (LmObjective)
//   distill (GKD)    the child's hidden states and logits against a parent model's on the same
//                    tokens: sum over layers of mean(1 - cos) plus KL(parent || child) on the
//                    logits (DistillObjective; Puzzle's global knowledge distillation)
//   distill-blocks   (BLD) one sub-block against the parent's sub-block fed the parent's input,
//                    normalised MSE: Trainer::step_block, with record_block_io for the parent's
//                    side
// The trainer normalises by the step's total count (Objective::count summed over its
// micro-batches), so that micro-batches of one step weigh every token alike.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/model.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::train {

// Whole sequences, packed: sequence s is tokens offsets[s] .. offsets[s+1]-1, causal, no cache.
struct TrainBatch {
  std::vector<int32_t> offsets;    // n_seqs + 1, offsets[0] = 0, increasing
  std::vector<int32_t> tokens;     // offsets.back()
  std::vector<int32_t> positions;  // empty: 0, 1, ... within each sequence
  // Empty: each token's target is the next token of its sequence (the last has none). Else one
  // per token, kIgnoreIndex (-1) for none.
  std::vector<int32_t> targets;
};

// The targets of a batch as LmObjective reads them (the explicit ones, or the next tokens).
std::vector<int32_t> batch_targets(const TrainBatch& batch);
// Throws Error naming what is wrong: offsets (from 0, increasing, one past each sequence),
// tokens outside [0, vocab), positions or targets of the wrong count, targets outside
// [0, vocab) other than kIgnoreIndex.
void check_batch(const TrainBatch& batch, int32_t vocab);

// What the model computed for one micro-batch, all f32 row-major.
struct ModelOutputs {
  const TrainBatch* batch = nullptr;
  const ts_host* host = nullptr;  // the model's threads, for the losses
  int64_t n_tokens = 0, hidden = 0, vocab = 0;
  const float* logits = nullptr;        // [n_tokens, vocab]
  const float* final_hidden = nullptr;  // [n_tokens, hidden], the final norm's output
  // [num_layers] the residual stream after each layer, [n_tokens, hidden]; empty unless the
  // objective uses_layer_outputs().
  std::vector<const float*> layer_outputs;
};

// Where an objective puts scale * d(its sum) / d(outputs).
struct OutputGrads {
  // [n_tokens, vocab]; may be the logits' own buffer: the objective writes every element
  // (zeros where it has no gradient), reading each logit before writing its gradient.
  float* logits = nullptr;
  float* final_hidden = nullptr;      // added to (zeroed by the trainer)
  std::vector<float*> layer_outputs;  // added to (zeroed); as ModelOutputs::layer_outputs
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string name() const = 0;
  // What one micro-batch adds to the step's normaliser (tokens with a target).
  virtual int64_t count(const TrainBatch& batch) const = 0;
  // Whether evaluate reads (and gives gradients of) the residual stream after each layer.
  virtual bool uses_layer_outputs() const { return false; }
  // Called before a micro-batch's forward (a distillation objective runs its parent here).
  virtual void prepare(const TrainBatch& batch) { (void)batch; }
  // The micro-batch's loss SUM; when grads is not NULL, scale * its gradient into *grads.
  virtual double evaluate(const ModelOutputs& out, OutputGrads* grads, double scale) = 0;
};

// Cross-entropy of the next token, mean over the tokens that have a target.
class LmObjective : public Objective {
 public:
  std::string name() const override { return "lm"; }
  int64_t count(const TrainBatch& batch) const override;
  double evaluate(const ModelOutputs& out, OutputGrads* grads, double scale) override;
};

// The parent's outputs on a batch: its logits and the residual stream after each layer.
struct RecordedOutputs {
  std::vector<float> logits;                      // [n_tokens, vocab]
  std::vector<std::vector<float>> layer_outputs;  // [num_layers][n_tokens, hidden]
};
// Runs `model` (inference, through its KV cache: each sequence in slot s from an empty slot,
// slots 0..n_seqs-1 are reset) over a batch. Throws Error when the batch has more sequences
// than the model's slots or a sequence longer than its capacity.
RecordedOutputs record_outputs(Model& model, const TrainBatch& batch);

// Runs layers [first, last) of `model` over x, the residual stream entering layer `first`
// (f32 [n_tokens, hidden], updated in place), as record_outputs does: Puzzle's scoring runs
// the layers after a replaced block on the parent's recorded stream.
void run_layers(Model& model, const TrainBatch& batch, int32_t first, int32_t last, float* x);

struct DistillConfig {
  double cosine_weight = 1.0;  // on each layer's mean (1 - cos(child, parent))
  double kl_weight = 1.0;      // on the mean KL(parent || child), times T^2
  double temperature = 1.0;
};

// Puzzle's GKD: sum over layers of cosine_weight * (1 - cos(h_child, h_parent)) plus
// kl_weight * T^2 KL(p_parent || p_child) on the logits, each a mean over the tokens. The
// parent runs in prepare(); it must have the child's hidden size, vocabulary and number of
// layers (checked at the first batch), and slots and capacity for the batches.
class DistillObjective : public Objective {
 public:
  DistillObjective(Model& parent, DistillConfig config);
  std::string name() const override { return "distill"; }
  int64_t count(const TrainBatch& batch) const override;
  bool uses_layer_outputs() const override { return config_.cosine_weight != 0.0; }
  void prepare(const TrainBatch& batch) override;
  double evaluate(const ModelOutputs& out, OutputGrads* grads, double scale) override;

 private:
  Model& parent_;
  DistillConfig config_;
  RecordedOutputs recorded_;
};

// One sub-block's input and output in a model (BLD's teacher side): the residual stream
// entering the sub-block and the sub-block's contribution (before the residual add), both
// [n_tokens, hidden]. The model runs as record_outputs does; an identity block gives zeros.
struct BlockRecord {
  std::vector<float> input;
  std::vector<float> output;
};
BlockRecord record_block_io(Model& model, const TrainBatch& batch, int32_t layer, ts_kind kind);

// A sub-block of a model: a layer's attention or FFN.
struct BlockRef {
  int32_t layer = 0;
  ts_kind kind = TS_KIND_FFN;
};
// record_block_io for several sub-blocks in one pass of the model (up to the last of them):
// one record per entry, in the order given. A block listed twice is an Error.
std::vector<BlockRecord> record_blocks_io(Model& model, const TrainBatch& batch,
                                          const std::vector<BlockRef>& blocks);

}  // namespace tessera::train
