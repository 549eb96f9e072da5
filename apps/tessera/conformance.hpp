// The conformance suite: runs each block a plugin provides against the naive
// reference over a grid of shapes, KV-head counts, batch sizes, decode steps
// and tree masks, and reports the error of every case.
#pragma once

#include <tessera/engine/params.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::cli {

struct CaseResult {
  std::string name;      // "attention gqa heads=9 kv=3 head_dim=64 batch=3 decode=4 tree"
  double max_abs = 0;    // largest |plugin - reference|
  double max_rel = 0;    // max_abs / largest |reference|
  double tolerance = 0;  // on max_rel
  bool passed = false;
  std::string error;  // set when the plugin failed outright
};

struct ConformanceReport {
  std::vector<CaseResult> cases;
  std::vector<std::string> skipped;        // providers with no reference, with the reason
  int32_t unchecked_device_providers = 0;  // device providers skipped: no device (or backend)
  std::string device;                      // the device the device providers ran on, if any
};

struct ConformanceOptions {
  double tolerance_f32 = 1e-4;
  // Device providers run bf16 activations, weights and KV cache with f32 accumulation.
  double tolerance_bf16 = 3e-2;
  // A CPU block with an f16 KV cache (kv_dtype = "f16"): keys and values rounded
  // to 11 significant bits.
  double tolerance_f16_kv = 2e-3;
  bool quick = false;  // a smaller grid
  // Parameters given to the property checks' blocks on top of a small model's fields
  // (plugin-check --param key=value), for kinds that need parameters of their own.
  ParamList params;
};

// Checks every provider of `plugin` (already loaded in `registry`).
ConformanceReport run_conformance(const PluginRegistry& registry, const PluginInfo& plugin,
                                  const ConformanceOptions& options);

}  // namespace tessera::cli
