// tessera plugin-check: the conformance suite for one plugin library.
#include <tessera/engine/error.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "conformance.hpp"
#include "numeric_flags.hpp"

namespace tessera::cli {
namespace {

struct PluginCheckArgs {
  std::string library;
  std::vector<std::string> params;  // key=value
  ConformanceOptions options;
};

// "window=3" -> window: 3 (an integer, else a number, true/false, or the text as a string).
void add_param(ParamList& params, const std::string& item) {
  const size_t eq = item.find('=');
  if (eq == std::string::npos || eq == 0) throw Error("--param '" + item + "' is not key=value");
  const std::string key = item.substr(0, eq), text = item.substr(eq + 1);
  char* end = nullptr;
  const long long i = std::strtoll(text.c_str(), &end, 10);
  if (!text.empty() && *end == '\0') {
    params.set(key, int64_t{i});
    return;
  }
  const double d = std::strtod(text.c_str(), &end);
  if (!text.empty() && *end == '\0') {
    params.set(key, d);
  } else if (text == "true" || text == "false") {
    params.set(key, text == "true");
  } else {
    params.set(key, text);
  }
}

int run_plugin_check(PluginCheckArgs args) {
  for (const std::string& item : args.params) add_param(args.options.params, item);
  PluginRegistry registry;
  const PluginInfo& plugin = registry.load(args.library);
  std::cout << "checking " << plugin.name << " " << plugin.version << " (ABI " << plugin.abi_major
            << "." << plugin.abi_minor << ") from " << plugin.path.string() << "\n";
  const ConformanceReport report = run_conformance(registry, plugin, args.options);

  int failed = 0;
  for (const CaseResult& c : report.cases) {
    std::cout << (c.passed ? "PASS  " : "FAIL  ") << c.name;
    if (c.measured) {
      char line[160];
      std::snprintf(line, sizeof(line), "max_abs %.3e  max_rel %.3e  (tolerance %.1e)", c.max_abs,
                    c.max_rel, c.tolerance);
      std::cout << "  " << line;
    }
    if (!c.error.empty()) std::cout << "  error: " << c.error;
    std::cout << "\n";
    failed += c.passed ? 0 : 1;
  }
  for (const std::string& s : report.skipped) std::cout << "SKIP  " << s << "\n";
  for (const std::string& s : report.notes) std::cout << "NOTE  " << s << "\n";
  std::cout << report.cases.size() - failed << " passed, " << failed << " failed, "
            << report.skipped.size() << " skipped\n";
  if (!report.device.empty()) std::cout << "device providers ran on " << report.device << "\n";
  // A device plugin on a machine without the device, or a provider whose every case was
  // skipped (a communicator that cannot form ranks in one process): nothing to check here,
  // and not an error.
  if (report.cases.empty() &&
      (report.unchecked_device_providers > 0 || report.unchecked_providers > 0))
    return 0;
  if (report.cases.empty())
    throw Error("no provider of " + plugin.name + " has a reference to check against");
  if (failed > 0) {
    for (const CaseResult& c : report.cases)
      if (!c.passed) throw Error(std::to_string(failed) + " case(s) failed, first: " + c.name);
  }
  return 0;
}

}  // namespace

Runner add_plugin_check_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("plugin-check", "Run the conformance suite on a plugin library");
  auto a = std::make_shared<PluginCheckArgs>();
  cmd->add_option("library", a->library, "Plugin library (libtessera-*.so)")->required();
  cmd->add_option("--tolerance", a->options.tolerance_f32,
                  "Largest error allowed, relative to the reference's largest magnitude (f32)")
      ->check(number_in(0, HUGE_VAL, true));
  cmd->add_option("--tolerance-bf16", a->options.tolerance_bf16,
                  "The same for device providers (bf16 activations, weights and KV cache)")
      ->check(number_in(0, HUGE_VAL, true));
  cmd->add_flag("--quick", a->options.quick, "A smaller grid");
  cmd->add_option("--param", a->params,
                  "key=value given to the blocks of the property checks (for kinds with "
                  "parameters of their own)");
  return [a] { return run_plugin_check(*a); };
}

}  // namespace tessera::cli
