// Puzzle's blockwise local distillation of the library (reference: puzzle.md, "BLD"): every
// trainable variant (pruned SwiGLU, pooled GQA, least-squares linear) learns to reproduce the
// parent's sub-block from the parent's own input activations, with the normalised MSE.
// Decoupled: attention and FFN variants train separately, each beside the parent's other block.
//
// Variants of one name form a group (all layers' "swiglu_768"); each group is one model, the
// parent's manifest with that variant in every layer that has it, and one trainer over those
// blocks' weights (the norms stay the parent's). A step runs the parent once over the batch,
// recording every sub-block's input and output, and gives each group one optimiser step on
// those records: one parent pass feeds every variant of every layer.
#pragma once

#include <tessera/engine/model.hpp>
#include <tessera/puzzle/library.hpp>
#include <tessera/train/trainer.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tessera::puzzle {

struct DistillGroup {
  ts_kind part = TS_KIND_FFN;
  std::string name;
  std::vector<int32_t> layers;
};

// The variants that train: those made from the parent's weights (pruned, mean-pooled, least
// squares), grouped by part and name, in the library's order.
std::vector<DistillGroup> distill_groups(const std::vector<LayerVariants>& library);

// Held-out normalised MSE of every variant, per layer (NaN for variants that do not train).
using LayerLosses = PerPart<double>;  // parallel to LayerVariants

class LibraryDistiller {
 public:
  // `manifest` and `weights`: the library (the parent's manifest over every variant's f32
  // weights). Slots and capacity: the largest micro-batch.
  LibraryDistiller(const Manifest& manifest, const std::vector<LayerVariants>& library,
                   const WeightStore& weights, const PluginRegistry& registry, ThreadPool& pool,
                   const train::TrainerConfig& config, int32_t slots, int32_t capacity);
  ~LibraryDistiller();
  LibraryDistiller(const LibraryDistiller&) = delete;
  LibraryDistiller& operator=(const LibraryDistiller&) = delete;

  const std::vector<DistillGroup>& groups() const;
  int64_t parameters() const;  // trainable, over every group

  // One optimiser step of every group; loss: the mean over the groups of their mean NMSE.
  train::StepStats step(const std::vector<train::TrainBatch>& micro_batches);
  // The same mean, forward only.
  double evaluate(const std::vector<train::TrainBatch>& batches);
  // Every trained variant's own held-out NMSE.
  std::vector<LayerLosses> block_losses(const std::vector<train::TrainBatch>& batches);

  // Each group's trainer checkpoint in folder/group-<i>/ (written in place of the old one).
  void save(const std::filesystem::path& folder) const;
  void load(const std::filesystem::path& folder);
  int64_t steps() const;

  // The library's weights with every trained variant's tensors replaced by its masters.
  WeightStore trained_weights(const WeightStore& library_weights) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::puzzle
