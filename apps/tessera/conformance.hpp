// The conformance suite: runs each block a plugin provides against the naive
// reference over a grid of shapes, KV-head counts, batch sizes, decode steps
// and tree masks, and reports the error of every case. Decoders, communicators
// and search providers have suites of their own (conformance_decoder.cpp,
// conformance_parallel.cpp, conformance_search.cpp).
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
  std::string error;     // set when the plugin failed outright
  bool measured = true;  // false: a yes/no check; max_abs, max_rel and tolerance mean nothing
};

struct ConformanceReport {
  std::vector<CaseResult> cases;
  std::vector<std::string> skipped;  // providers with no reference, with the reason
  // Facts worth knowing that are neither a pass nor a failure ("... no backward (cannot be
  // trained)").
  std::vector<std::string> notes;
  int32_t unchecked_device_providers = 0;  // device providers skipped: no device (or backend)
  // Providers with a suite whose every case was skipped, e.g. a communicator that cannot
  // form several ranks in one process.
  int32_t unchecked_providers = 0;
  std::string device;  // the device the device providers ran on, if any
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

// Runs the suite of a decoder, parallel or search provider (conformance_interfaces.cpp)
// and returns true; false for other kinds, which run_conformance checks itself.
bool check_interface(const PluginRegistry& registry, const PluginInfo& plugin,
                     const ts_provider& provider, const ConformanceOptions& options,
                     ConformanceReport& report);

// The suites of the other interfaces, one provider each; they append cases and skips.
// A decoder over synthetic logits (conformance_decoder.cpp).
void check_decoder(const ProviderRef& provider, const ConformanceOptions& options,
                   ConformanceReport& report);
// Whether a decoder reads Medusa heads (it refuses to be made without weights and is made with
// them); such decoders run check_medusa_decoder, on a random model (conformance_speculative.cpp).
bool takes_medusa_heads(const ProviderRef& provider);
void check_medusa_decoder(const PluginRegistry& registry, const ProviderRef& provider,
                          const ConformanceOptions& options, ConformanceReport& report);
// A communicator against a single-process reference at 1 to 4 ranks, one thread per rank,
// made with the parameters world, rank and group (conformance_parallel.cpp).
void check_parallel(const ProviderRef& provider, const ConformanceOptions& options,
                    ConformanceReport& report);
// A search provider against brute force on small puzzle.block_selection problems
// (conformance_search.cpp).
void check_search(const ProviderRef& provider, const ConformanceOptions& options,
                  ConformanceReport& report);

}  // namespace tessera::cli
