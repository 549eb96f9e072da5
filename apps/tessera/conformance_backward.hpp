// The backward cases of plugin-check, for CPU block providers that offer training (ABI 2.1:
// train_workspace, forward_train, backward):
//  - the built-in kinds (attention gqa, linear, noop; ffn swiglu, linear, noop): d loss / d x
//    and every weight gradient against the f64 reference backwards (reference.hpp), under
//    each recompute policy;
//  - any kind that declares its weights (describe), built-in or not: central finite
//    differences of the block's own f32 forward_train on a few random coordinates of each
//    weight and of x, gradients bit-identical under the three policies, two backward calls
//    adding twice one, and frozen weights or no grad_x changing nothing else.
// A provider without the training entries is noted ("no backward (cannot be trained)"), not
// failed.
#pragma once

#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/thread_pool.hpp>

#include <cstdint>

#include "conformance.hpp"

namespace tessera::cli {

// Relative tolerance of the finite-difference cases: |differences - backward| over the
// largest |gradient| of the tensor. The differences of an f32 forward (step 1e-3) are good to
// about 1e-3 of that.
constexpr double kFiniteDifferenceTolerance = 2e-2;

// Appends the backward cases of one provider (cpu attention and ffn blocks only) to
// report.cases, or a note when it cannot be trained.
void check_block_backward(const ProviderRef& provider, const ConformanceOptions& options,
                          ThreadPool& pool, uint64_t seed, ConformanceReport& report);

}  // namespace tessera::cli
