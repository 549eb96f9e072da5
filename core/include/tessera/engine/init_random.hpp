// Random weights for a model (tests, benchmarks, smoke runs without a model file) and
// the built-in model shapes.
#pragma once

#include <cstdint>
#include <string>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/engine/weights.hpp>
#include <vector>

namespace tessera {

// f32 weights for every tensor of the plan, each by the law its block declares
// (ts_init). Deterministic: each tensor is drawn from Rng(seed ^ fnv1a(full name)), so
// the same seed gives the same bytes and adding a tensor leaves the others unchanged.
// The laws keep activations O(1):
//   TS_INIT_LINEAR  N(0, 1) / sqrt(fan_in)   (fan_in = shape[ndim - 1])
//   TS_INIT_NORM    1 + 0.1 N(0, 1)          (the norms)
//   TS_INIT_NORMAL  init_scale N(0, 1)       (embedding and lm head: 1 / sqrt(hidden), so
//                                             that tied logits h.E stay O(1))
//   TS_INIT_ZEROS, TS_INIT_ONES
// Blocks whose provider has no describe get no tensors of their own (only their norm).
WeightStore init_random_weights(const WeightPlan& plan, uint64_t seed);
// init_random_weights(plan_weights(m, registry), seed).
WeightStore init_random_weights(const Manifest& m, const PluginRegistry& registry, uint64_t seed);

// Built-in model shapes ("smollm2-135m", "llama-3.1-8b"): gqa + swiglu in every
// layer, weights format "random" (seed 0), runtime defaults. Throws Error listing
// the known names for an unknown one.
Manifest builtin_shape(const std::string& name);
std::vector<std::string> builtin_shape_names();

}  // namespace tessera
