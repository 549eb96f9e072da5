// What the block library's initialisers read from the parent on calibration text: per layer,
// the least-squares sums of each sub-block (its normalised input against its output) and the
// SwiGLU channels' mean activations. One pass of the parent per batch feeds every layer.
#pragma once

#include <tessera/engine/model.hpp>
#include <tessera/puzzle/block_init.hpp>
#include <tessera/train/objective.hpp>

#include <cstdint>
#include <functional>
#include <vector>

namespace tessera::puzzle {

struct LayerCalibration {
  LinearFitStats attention;  // input_layernorm(x) -> attention(x)
  LinearFitStats ffn;        // post_attention_layernorm(x) -> ffn(x)
  ChannelStats channels;     // |silu(gate) * up| of a swiglu parent FFN (empty otherwise)
};

struct Calibration {
  std::vector<LayerCalibration> layers;
  int64_t tokens = 0;
};

// Runs the parent over the batches (record_blocks_io: every sub-block's input and output in one
// pass per batch) and accumulates the statistics. Layers whose sub-block is an identity get
// none for it. `progress` (may be empty) is called after each batch with the tokens so far.
Calibration calibrate(Model& parent, const std::vector<train::TrainBatch>& batches,
                      const std::function<void(int64_t tokens)>& progress = {});

}  // namespace tessera::puzzle
