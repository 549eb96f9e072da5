// Random weights for a manifest (tests, benchmarks, smoke runs without a model
// file) and the built-in model shapes.
#pragma once

#include <cstdint>
#include <string>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/weights.hpp>
#include <utility>
#include <vector>

namespace tessera {

// Every tensor the manifest's layers need, with its Hugging Face Llama name and
// shape, sorted by name. Kinds the core does not know (third-party plugins) get
// their norm weight but no block weights.
std::vector<std::pair<std::string, std::vector<int64_t>>> planned_tensors(const Manifest& m);

// f32 weights for planned_tensors(m). Deterministic: each tensor is drawn from
// Rng(seed ^ fnv1a(name)), so the same seed gives the same bytes and adding a
// tensor leaves the others unchanged. Scales keep activations O(1):
//   linear weights  N(0, 1) / sqrt(fan_in)   (fan_in = shape[1])
//   embeddings      N(0, 1) / sqrt(hidden)   (tied logits h.E then stay O(1))
//   lm_head         N(0, 1) / sqrt(hidden)
//   norm weights    1 + 0.1 N(0, 1)
WeightStore init_random_weights(const Manifest& m, uint64_t seed);

// Built-in model shapes ("smollm2-135m", "llama-3.1-8b"): gqa + swiglu in every
// layer, weights format "random" (seed 0), runtime defaults. Throws Error listing
// the known names for an unknown one.
Manifest builtin_shape(const std::string& name);
std::vector<std::string> builtin_shape_names();

}  // namespace tessera
