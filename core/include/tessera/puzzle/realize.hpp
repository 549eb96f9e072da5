// Realising a child: the library holds every variant's weights under its variant prefix; the
// child keeps only what its blocks declare, renamed to the layer's usual names, so it is a
// plain model (a manifest folder, or DeciLM safetensors through the Hugging Face writer) with
// no trace of the library.
#pragma once

#include <tessera/engine/weight_plan.hpp>
#include <tessera/engine/weights.hpp>

namespace tessera::puzzle {

struct RealizedChild {
  Manifest manifest;    // the plan's, every block's prefix cleared
  WeightStore weights;  // exactly the planned tensors, under the usual names
};

// `plan` is plan_weights of the child's manifest over the library (child_manifest: blocks with
// variant prefixes). Throws Error naming the block when its provider declares no weights (its
// tensors are unknown) or a planned tensor is missing from `library_weights`.
RealizedChild realize_child(const WeightPlan& plan, const WeightStore& library_weights);

}  // namespace tessera::puzzle
