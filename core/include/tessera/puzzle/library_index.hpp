// library.json: the block library stage's index (docs/puzzle.md has the format). It names what
// every layer of the parent offers and how each variant was made; the weights sit beside it in
// the library's manifest folder, under the variants' prefixes.
//
//   {"format": "tessera.puzzle.library", "version": 1,
//    "parent": {"path": ..., "name": ..., "layers": 30, "hidden_size": 576},
//    "calibration": {"tokens": 8192, "seconds": 12.5},
//    "options": {"ffn_fractions": [...], "ffn_width_multiple": 32, ...},
//    "layers": [{"attention": [VARIANT, ...], "ffn": [VARIANT, ...]}, ...]}
//   VARIANT = {"name": "swiglu_768", "kind": "swiglu", "prefix": "model.layers.0.variants.ffn.
//              swiglu_768.", "params": {"intermediate_size": 768}, "init": "pruned",
//              "parameters": 1327104, "kv_heads": 0, "fit_nmse": null}
#pragma once

#include <tessera/puzzle/library.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::puzzle {

struct LibraryIndex {
  std::string parent_path;
  std::string parent_name;
  int64_t hidden_size = 0;
  int64_t calibration_tokens = 0;
  double calibration_seconds = 0;
  LibraryOptions options;
  std::vector<LayerVariants> layers;
};

std::string library_json(const LibraryIndex& index);
// Throws Error naming the file, the JSON path of the fault and what was expected.
LibraryIndex parse_library_json(const std::string& text, const std::string& source);
LibraryIndex read_library_index(const std::filesystem::path& path);

}  // namespace tessera::puzzle
