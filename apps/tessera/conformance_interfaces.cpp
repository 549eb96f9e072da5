// Dispatch of the non-block interfaces to their suites.
#include <tessera/dtype.hpp>

#include <string>

#include "conformance.hpp"

namespace tessera::cli {

bool check_interface(const PluginRegistry& registry, const PluginInfo& plugin,
                     const ts_provider& provider, const ConformanceOptions& options,
                     ConformanceReport& report) {
  const int32_t kind = provider.kind;
  if (kind != TS_KIND_DECODER && kind != TS_KIND_PARALLEL && kind != TS_KIND_SEARCH) return false;
  if (provider.device != TS_DEVICE_CPU) {
    report.skipped.push_back(std::string(kind_name(kind)) + " '" + provider.name + "' on " +
                             device_name(provider.device) +
                             ": the suite drives CPU providers only");
    ++report.unchecked_providers;
    return true;
  }
  const ProviderRef ref = registry.find(static_cast<ts_kind>(kind), provider.name,
                                        static_cast<ts_device>(provider.device), plugin.name);
  if (kind == TS_KIND_DECODER) {
    if (takes_medusa_heads(ref))
      check_medusa_decoder(registry, ref, options, report);
    else
      check_decoder(ref, options, report);
  }
  if (kind == TS_KIND_PARALLEL) check_parallel(ref, options, report);
  if (kind == TS_KIND_SEARCH) check_search(ref, options, report);
  return true;
}

}  // namespace tessera::cli
