// The Puzzle report's picture of a child's architecture: one column per layer, its attention
// block above its FFN block, each box coloured by what the variant is (the parent's block, a
// pruned one, a linear map, a no-op) and as tall as its share of the parent block's
// parameters (for a pruned FFN, its width over the parent's), over a dashed outline of the
// parent's block. A self-contained SVG written by hand, with a legend.
//
// Its structure is meant to be read back by tools and tests: every block is one
// <rect class="block"> with data-layer, data-part ("attention" or "ffn"), data-variant (the
// variant's name), data-kind ("parent", "pruned", "linear", "noop") and data-fraction.
#pragma once

#include <tessera/puzzle/library.hpp>

#include <string>
#include <utility>
#include <vector>

namespace tessera::puzzle {

enum class BlockKind { kParent, kPruned, kLinear, kNoop };

// "parent", "pruned", "linear", "noop": data-kind's value.
const char* to_string(BlockKind kind);

struct ArchitectureBlock {
  std::string variant;  // "gqa_kv3", "swiglu_768", "linear", "noop"
  BlockKind kind = BlockKind::kParent;
  double fraction = 1;  // of the parent block's parameters, drawn as the box's height
  std::string caption;  // a few characters written in the box ("kv1", "768"); may be empty
};

struct ArchitectureLayer {
  ArchitectureBlock attention, ffn;
};

// A layer's blocks as the library describes the variants `choice` names (per layer: attention,
// FFN). Throws Error for a name the layer does not offer.
std::vector<ArchitectureLayer> architecture_of(
    const std::vector<LayerVariants>& library,
    const std::vector<std::pair<std::string, std::string>>& choice);

struct ArchitecturePlotOptions {
  std::string title = "The child's layers";
  int width = 900;
};

std::string architecture_plot_svg(const std::vector<ArchitectureLayer>& layers,
                                  const ArchitecturePlotOptions& options = {});

}  // namespace tessera::puzzle
