// tessera plugins: every loaded plugin with its version, ABI, providers, devices and path.
#include <tessera/dtype.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <iostream>
#include <memory>

#include "commands.hpp"
#include "setup.hpp"

namespace tessera::cli {

Runner add_plugins_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("plugins", "List every plugin found, with its providers");
  auto paths = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--plugin-path", *paths, "Extra folder to search for plugins (repeatable)")
      ->check(CLI::ExistingDirectory);
  return [paths] {
    PluginRegistry registry;
    load_plugins(registry, *paths);
    if (registry.plugins().empty()) {
      for (const PluginRegistry::SkippedLibrary& bad : registry.skipped())
        std::cerr << "tessera: warning: skipped " << bad.path.string() << ": " << bad.error << "\n";
      std::cout << "no plugins found; searched:\n";
      for (const auto& p : registry.search_paths()) std::cout << "  " << p.string() << "\n";
      return 1;
    }
    for (const PluginInfo& info : registry.plugins()) {
      std::cout << info.name << " " << info.version << "  ABI " << info.abi_major << "."
                << info.abi_minor << "  " << info.path.string() << "\n";
      for (const ts_provider* p : info.providers) {
        const int32_t score = p->score != nullptr ? p->score() : 1;
        std::cout << "  " << kind_name(p->kind) << " " << p->name << "  device "
                  << device_name(p->device) << "  score " << score << "\n";
      }
    }
    for (const PluginRegistry::SkippedLibrary& bad : registry.skipped())
      std::cerr << "tessera: warning: skipped " << bad.path.string() << ": " << bad.error << "\n";
    return 0;
  };
}

}  // namespace tessera::cli
