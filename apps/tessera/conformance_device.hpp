// The conformance suite for device (CUDA) providers. The app stays free of device code: it
// reaches the device through a backend provider (ts_backend_vtable) found in the checked
// plugin itself, beside its file or in the usual plugin folders.
#pragma once

#include <tessera/engine/plugin_registry.hpp>

#include <vector>

#include "conformance.hpp"

namespace tessera::cli {

// Checks `providers` (the device providers of `plugin`): inputs are drawn on the host and
// rounded to bf16, copied to the device, run, copied back and compared with the CPU
// references at options.tolerance_bf16. Without a usable device (or without a backend for
// it) it adds one line to report.skipped, "no CUDA device: N CUDA providers not checked
// (...)", and sets report.unchecked_device_providers.
void run_device_conformance(const PluginRegistry& registry, const PluginInfo& plugin,
                            const std::vector<const ts_provider*>& providers,
                            const ConformanceOptions& options, ConformanceReport& report);

}  // namespace tessera::cli
