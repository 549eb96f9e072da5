// Training Medusa heads on a frozen base model (Medusa-1, self-distilled): head k learns the
// base model's own distribution k + 1 positions later, from the hidden state the base model
// has now (decoding/medusa_heads.hpp has the heads).
//
//   MedusaTrainer trainer(base, config);       // base: slots >= sequences per micro-batch
//   StepStats s = trainer.step({batch});        // one AdamW step over the micro-batches
//   MedusaEval e = trainer.evaluate(held_out);  // loss and each head's top-k accuracy
//   trainer.write_heads("run/medusa", e);       // config.json + medusa_lm_head.safetensors
//
// Loss: sum over heads k of decay^k * mean over the positions t with a target of
// KL(p_base(t + k + 1) || q_k(t)), p and q the softmax of the base logits and of the head's.
// Position t + k + 1 must lie in the same sequence. The heads' vocab projection is the base
// model's lm head, shared and frozen: only the ResBlocks train (so a step reads the lm head
// once per head, and the heads cost next to nothing to store). Deterministic for a given thread
// count and sequence of batches.
#pragma once

#include <tessera/engine/model.hpp>
#include <tessera/train/objective.hpp>
#include <tessera/train/optimizer.hpp>
#include <tessera/train/trainer.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tessera::train {

struct MedusaTrainConfig {
  int32_t heads = 4;
  int32_t layers = 1;  // ResBlocks per head
  double decay = 0.8;  // head k's loss weight is decay^k
  AdamWConfig adamw;
  ScheduleConfig schedule;
  double clip_norm = 1.0;
};

// Held-out measurements. rank_counts[k][r]: positions where the base model's argmax after
// t + k + 1 was head k's candidate of rank r (r < kRanks); top(k, n) is the share within the
// top n: the acceptance a tree's node of rank r at depth k + 1 can expect.
struct MedusaEval {
  static constexpr int32_t kRanks = 10;
  double loss = 0;                 // as the training loss
  std::vector<double> head_loss;   // per head: mean KL
  std::vector<int64_t> positions;  // per head: positions scored
  std::vector<std::vector<int64_t>> rank_counts;
  double top(int32_t head, int32_t n) const;
};

class MedusaTrainer {
 public:
  // The base model is only run forward; its slots must hold a micro-batch's sequences and its
  // capacity the longest. The heads start as the paper's: W = 0 (each head predicts what the
  // base lm head does), b = 0.
  MedusaTrainer(Model& base, const MedusaTrainConfig& config);
  ~MedusaTrainer();
  MedusaTrainer(const MedusaTrainer&) = delete;
  MedusaTrainer& operator=(const MedusaTrainer&) = delete;

  StepStats step(const std::vector<TrainBatch>& micro_batches);
  // The loss and the gradients (normalised over the micro-batches, not clipped), no update.
  double compute_gradients(const std::vector<TrainBatch>& micro_batches);
  MedusaEval evaluate(const std::vector<TrainBatch>& batches);

  const MedusaTrainConfig& config() const;
  int64_t steps() const;
  int64_t parameters() const;
  // The trainable tensors by name (medusa_head.{k}.{j}.linear.weight / .bias): value and
  // gradient, f32.
  std::vector<std::string> names() const;
  float* value(const std::string& name);
  const float* gradient(const std::string& name) const;
  int64_t size(const std::string& name) const;

  // A checkpoint: heads.safetensors (values), optimizer.safetensors (moments, step in its
  // metadata), written whole or not at all. load() checks everything before changing anything.
  void save(const std::filesystem::path& folder) const;
  void load(const std::filesystem::path& folder);
  // The heads as the decoder reads them: medusa_lm_head.safetensors (no projection: they share
  // the base lm head) and config.json (medusa_num_heads, medusa_num_layers, hidden_size,
  // vocab_size, and the held-out accuracies medusa_top_k_accuracy[k][n - 1] when `eval` holds
  // them). `extra` is merged into config.json (a JSON object's text, may be empty).
  void write_heads(const std::filesystem::path& folder, const MedusaEval* eval,
                   const std::string& extra = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::train
