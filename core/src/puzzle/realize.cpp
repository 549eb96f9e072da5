#include <tessera/engine/error.hpp>
#include <tessera/puzzle/realize.hpp>

namespace tessera::puzzle {

RealizedChild realize_child(const WeightPlan& plan, const WeightStore& library_weights) {
  RealizedChild child;
  child.manifest = plan.manifest;
  for (const std::vector<PlannedBlock>* blocks : {&plan.attention, &plan.ffn})
    for (const PlannedBlock& b : *blocks)
      if (!b.declared())
        throw Error("cannot realise the child: " + b.label +
                    " declares no weights (its provider has no describe), so which tensors it "
                    "reads is unknown");
  for (const PlannedTensor& t : plan.tensors) {
    std::string name = t.name;
    if (!t.local.empty() && t.layer >= 0)
      name = default_block_prefix(t.layer, static_cast<ts_kind>(t.kind)) + t.local;
    if (!library_weights.has(t.name))
      throw Error("cannot realise the child: the library has no tensor " + t.name + " (" + t.owner +
                  ")");
    child.weights.add(name, library_weights.get(t.name));  // shares the storage
  }
  for (LayerSpec& layer : child.manifest.layers) {
    layer.attention.prefix.clear();
    layer.ffn.prefix.clear();
  }
  return child;
}

}  // namespace tessera::puzzle
