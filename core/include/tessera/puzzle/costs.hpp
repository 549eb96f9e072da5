// Puzzle's costs (reference: puzzle.md, "Costs"): every library variant's runtime measured on
// the kernels that will serve the child, for a scenario (prefill length, decode length, batch
// sizes), plus its weight and KV-cache bytes. Measured, not estimated from FLOPs.
//
// Blocks are timed inside the whole model, as generation runs it (Model::forward), so that
// what a block costs includes how the rest of the model treats the caches: alone, a block's
// weights stay in the last-level cache from one run to the next, and a decode step (bound by
// reading the weights) looks several times cheaper than it is. Per batch size b:
//
//   prefill  b sequences of prefill_len tokens from an empty cache (the last tokens' logits)
//   decode   one step of b sequences, one token each, at context prefill_len + decode_len / 2
//            (the mean context of the decode phase)
//
// A variant name's cost is measured once for all the layers that offer it: the model with the
// variant in all those layers against the model with no-ops there, the difference divided by
// the number of layers. The parent is timed whole; its fixed part (embedding, final norm, head,
// what layers spend outside their blocks) is the whole minus its blocks, so the parent's parts
// add up to its whole. Every figure is the median of `repeats` runs after a warm-up, with its
// noise: (max - min) / (2 median), for a difference the two spreads over the result.
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

// `sequences` sequences in slots 0..sequences-1 of `tokens` fixed tokens each, logits of the
// last only: what the cost and evaluation stages time generation with.
ForwardBatch generation_batch(int32_t sequences, int32_t tokens, int32_t vocab);

// The median and noise of a set of timings (at least one).
Timing summarise(std::vector<double> seconds);

struct VariantCost {
  std::vector<Timing> prefill, decode;  // per batch size, in the scenario's order
  int64_t weight_bytes = 0;             // the variant's declared weights at the model's dtype
  int64_t kv_bytes_per_token = 0;       // per sequence and token of context (K and V)
  int32_t measured_in = -1;             // the first layer of the group it was timed with
};

using LayerCosts = PerPart<VariantCost>;  // parallel to LayerVariants

struct Costs {
  Scenario scenario;
  int32_t threads = 0;
  std::string weight_dtype;
  std::vector<Timing> fixed_prefill, fixed_decode;  // the whole parent minus its blocks
  std::vector<Timing> whole_prefill, whole_decode;  // the parent through Model::forward
  int64_t measurements = 0;                         // variant groups timed
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
