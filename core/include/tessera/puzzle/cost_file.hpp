// costs.json: the cost stage's artefact (docs/puzzle.md has the format): the scenario, the
// fixed part and the whole parent, and every variant's timings and bytes.
//
//   {"format": "tessera.puzzle.costs", "version": 1,
//    "scenario": {"prefill_len": 128, "decode_len": 128, "batch_sizes": [1], "repeats": 5},
//    "device": {"threads": 2, "weight_dtype": "bf16"}, "measurements": 12, "seconds": 20.5,
//    "fixed": {"prefill_s": [T], "decode_s": [T]}, "whole": {"prefill_s": [T], "decode_s": [T]},
//    "layers": [{"attention": [{"name": "gqa_kv3", "prefill_s": [T], "decode_s": [T],
//                               "weight_bytes": 1769472, "kv_bytes_per_token": 1536,
//                               "measured_in": 0}, ...], "ffn": [...]}, ...]}
//   T = {"median": seconds, "noise": (max - min) / (2 median)}, one per batch size
#pragma once

#include <tessera/puzzle/costs.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::puzzle {

inline constexpr int kCostsFormatVersion = 1;

std::string costs_json(const Costs& costs, const std::vector<LayerVariants>& library);
// Throws Error naming the file and the JSON path of a fault, or when the layers and variant
// names are not the library's.
Costs parse_costs_json(const std::string& text, const std::string& source,
                       const std::vector<LayerVariants>& library);
Costs read_costs(const std::filesystem::path& path, const std::vector<LayerVariants>& library);

}  // namespace tessera::puzzle
