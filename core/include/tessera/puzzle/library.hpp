// Puzzle's block library: for every layer of a parent model, the cheaper sub-blocks the search
// may choose from, initialised from the parent's (block_init.hpp) and kept side by side in one
// weight store under variant prefixes, so that Model::swap_block switches between them without
// loading anything.
//
//   attention  gqa with each divisor of the parent's KV heads (K/V heads mean-pooled; the
//              parent's own count is the parent's block), linear (least squares), noop
//   FFN        swiglu at each width of a list (channel-contribution pruning; the full width is
//              the parent's block), linear (least squares), noop
//
// Variant names say what they are: "gqa_kv3", "linear", "noop", "swiglu_768". A variant that is
// the parent's own block has an empty prefix (its weights are the parent's); the others keep
// theirs under "model.layers.N.variants.<part>.<name>.". library.json (variant_index_json) is
// the stage's artefact: what each layer offers, how each entry was made, and its fit.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/puzzle/calibration.hpp>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

namespace tessera::puzzle {

inline constexpr int kLibraryFormatVersion = 1;

struct LibraryOptions {
  // FFN widths as fractions of the parent's intermediate size, each rounded to the nearest
  // multiple of ffn_width_multiple (at least one multiple); widths that coincide are one variant.
  std::vector<double> ffn_fractions = {1.0, 0.875, 0.75, 0.5, 0.25, 0.1};
  int64_t ffn_width_multiple = 32;
  // KV-head counts for gqa variants; empty: every divisor of the parent's.
  std::vector<int32_t> kv_heads;
  bool attention_linear = true, attention_noop = true;
  bool ffn_linear = true, ffn_noop = true;
  double ridge = 1e-4;  // least squares' regulariser, relative to the Gram matrix's mean diagonal
};

// How a variant's weights were made.
enum class VariantInit { kParent, kPruned, kMeanPooled, kLeastSquares, kNone };
std::string_view to_string(VariantInit init);  // "parent", "pruned", "mean-pooled", ...

struct Variant {
  std::string name;
  ts_kind part = TS_KIND_FFN;
  BlockSpec block;  // kind, params, prefix (empty: the parent's own weights)
  VariantInit init = VariantInit::kNone;
  int64_t parameters = 0;  // weights the block declares (norms excluded)
  int32_t kv_heads = 0;    // KV-cache heads (0: no cache)
  // Normalised MSE of the initial weights against the parent block on the calibration tokens,
  // when computed at build time (least squares); NaN otherwise.
  double fit_nmse = std::numeric_limits<double>::quiet_NaN();
};

// One entry per variant of a layer, attention and FFN apart: the library's variants, and every
// stage's figures for them, parallel to those.
template <typename T>
struct PerPart {
  std::vector<T> attention, ffn;
  std::vector<T>& of(ts_kind part) { return part == TS_KIND_ATTENTION ? attention : ffn; }
  const std::vector<T>& of(ts_kind part) const {
    return part == TS_KIND_ATTENTION ? attention : ffn;
  }
};

using LayerVariants = PerPart<Variant>;

// Per layer, one `fill` for each variant of the library.
template <typename T>
std::vector<PerPart<T>> shaped_like(const std::vector<PerPart<Variant>>& library,
                                    const T& fill = {}) {
  std::vector<PerPart<T>> out(library.size());
  for (size_t l = 0; l < library.size(); ++l) {
    out[l].attention.assign(library[l].attention.size(), fill);
    out[l].ffn.assign(library[l].ffn.size(), fill);
  }
  return out;
}

// The catalogue, before any weight exists. A parent layer that is gqa + swiglu gets the full
// list; for other kinds the parent's block is the only variant besides linear and noop, and a
// no-op parent block is its layer's only variant (nothing is cheaper). Throws
// Error for options that name no valid variant (a fraction outside (0, 1], a KV-head count that
// does not divide the parent's, a multiple < 1).
std::vector<LayerVariants> plan_variants(const Manifest& parent, const LibraryOptions& options);

// The FFN widths the options give for a parent intermediate size (ascending order of fraction
// list, duplicates removed, largest first).
std::vector<int64_t> ffn_widths(int64_t intermediate, const LibraryOptions& options);

// The prefix of a layer's variant: "model.layers.3.variants.ffn.swiglu_768.".
std::string variant_prefix(int32_t layer, ts_kind part, const std::string& name);

// Makes every variant's weights from the parent's (f32) and the calibration statistics, adds
// them to `weights` under their prefixes, and fills each variant's fit_nmse where the method
// gives one. The parent's weights must be in `weights` as f32 under their default names.
void build_variant_weights(const Manifest& parent, std::vector<LayerVariants>& library,
                           const Calibration& calibration, const LibraryOptions& options,
                           WeightStore& weights);

// A manifest that runs layer by layer the variants named: choice[layer] = {attention, ffn}.
Manifest child_manifest(const Manifest& parent, const std::vector<LayerVariants>& library,
                        const std::vector<std::pair<std::string, std::string>>& choice);

}  // namespace tessera::puzzle
