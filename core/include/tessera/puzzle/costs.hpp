// Puzzle's costs (reference: puzzle.md, "Costs"): every library variant's runtime measured on
// the kernels that will serve the child, for a scenario (prefill length, decode length, batch
// sizes), plus its weight and KV-cache bytes. Measured, not estimated from FLOPs.
//
// A sub-block is timed inside the library model: the variant is swapped into its layer, the
// layer's other sub-block becomes a no-op for the measurement, and Model::run_layer runs the
// norm, the block and the residual add, as generation does. Per batch size b:
//
//   prefill  b sequences of prefill_len tokens from an empty cache
//   decode   one step of b sequences, one token each, at context prefill_len + decode_len / 2
//            (the mean context of the decode phase)
//
// Every figure is the median of `repeats` timed runs after one warm-up, with its noise
// (max - min) / (2 median). Variants of the same block (kind, parameters) in several layers
// have the same shapes: each is measured once, in the first layer that has it, and shared.
// The fixed part (the final norm and LM head on the last token of each sequence) and the whole
// parent (Model::forward) are measured in the same run, so the sum of the parts can be checked
// against the whole.
#pragma once

#include <tessera/engine/model.hpp>
#include <tessera/puzzle/library.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tessera::puzzle {

struct Scenario {
  int32_t prefill_len = 128;
  int32_t decode_len = 128;
  std::vector<int32_t> batch_sizes = {1};
  int32_t repeats = 5;
  int32_t decode_context() const { return prefill_len + decode_len / 2; }
};

struct Timing {
  double seconds = 0;  // median
  double noise = 0;    // (max - min) / (2 median)
};

// The median and noise of a set of timings (at least one).
Timing summarise(std::vector<double> seconds);

struct VariantCost {
  std::vector<Timing> prefill, decode;  // per batch size, in the scenario's order
  int64_t weight_bytes = 0;             // the variant's declared weights at the model's dtype
  int64_t kv_bytes_per_token = 0;       // per sequence and token of context (K and V)
  int32_t measured_in = -1;             // the layer it was timed in (shared by equal blocks)
};

struct LayerCosts {
  std::vector<VariantCost> attention, ffn;  // parallel to LayerVariants
  std::vector<VariantCost>& of(ts_kind part) { return part == TS_KIND_ATTENTION ? attention : ffn; }
  const std::vector<VariantCost>& of(ts_kind part) const {
    return part == TS_KIND_ATTENTION ? attention : ffn;
  }
};

struct Costs {
  Scenario scenario;
  int32_t threads = 0;
  std::string weight_dtype;
  std::vector<Timing> fixed_prefill, fixed_decode;  // final norm + LM head, per batch size
  std::vector<Timing> whole_prefill, whole_decode;  // the parent through Model::forward
  int64_t measurements = 0;                         // distinct blocks timed
  double seconds = 0;
  std::vector<LayerCosts> layers;
};

// Measures every variant of the library in `model` (the parent's manifest over the library's
// weights, at the weight dtype the child will run; slots >= the largest batch size, capacity >=
// prefill_len + decode_len). The model is the parent again afterwards. `progress` (may be
// empty) gets the distinct blocks timed so far and their number.
Costs measure_costs(Model& model, const std::vector<LayerVariants>& library,
                    const Scenario& scenario,
                    const std::function<void(int64_t done, int64_t total)>& progress = {});

// The parent's cost per batch size as the parts add up: the parent variant of every layer plus
// the fixed part (for the check against whole_prefill / whole_decode).
double parts_prefill(const Costs& costs, const std::vector<LayerVariants>& library, size_t b);
double parts_decode(const Costs& costs, const std::vector<LayerVariants>& library, size_t b);

}  // namespace tessera::puzzle
