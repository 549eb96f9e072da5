// Finds, loads and checks plugin libraries, and picks providers for the model.
#pragma once

#include <tessera/abi.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tessera {

// One loaded library. A library that loaded and passed every check stays loaded
// until the process exits, whatever holds it: plugin code may leave thread-local
// destructors or atexit handlers behind, which would crash after an unload. So
// nothing a plugin made can outlive its code, even an object destroyed during
// static destruction. ProviderRef's reference only names where a provider came
// from (plugin name, file); it is not what keeps the code mapped.
class PluginLibrary;

struct ProviderRef {
  std::shared_ptr<PluginLibrary> library;
  const ts_provider* provider = nullptr;
  int32_t score = 0;

  const std::string& plugin_name() const;
  const std::filesystem::path& path() const;
};

struct PluginInfo {
  std::string name;
  std::string version;
  uint16_t abi_major = 0;
  uint16_t abi_minor = 0;
  std::filesystem::path path;
  std::vector<const ts_provider*> providers;
};

class PluginRegistry {
 public:
  PluginRegistry();
  ~PluginRegistry();

  // Search order: explicit paths added here, then $TESSERA_PLUGIN_PATH (colon
  // separated), then <executable dir>/../lib/tessera/plugins and
  // <executable dir>/plugins. Remembered for error messages.
  void add_search_path(const std::filesystem::path& dir);
  std::vector<std::filesystem::path> search_paths() const;

  // Loads every library named libtessera-*.so in the search paths. A library
  // that fails to load is an error unless `skip_broken`, which records it in skipped()
  // (and in the message of a failed find) and goes on with the rest.
  void load_all(bool skip_broken = false);

  struct SkippedLibrary {
    std::filesystem::path path;
    std::string error;  // load()'s message
  };
  const std::vector<SkippedLibrary>& skipped() const;

  // Loads one library. Throws PluginError naming the file, the symbol and both
  // ABI versions for: missing file, not a plugin (no entry symbol), ABI major
  // mismatch, a plugin name already loaded from another file, two providers
  // with the same (kind, name, device) inside one plugin. The same provider in
  // two different plugins is allowed: find() picks by score or by plugin name.
  const PluginInfo& load(const std::filesystem::path& library);

  const std::vector<PluginInfo>& plugins() const;

  // The provider of `kind` named `name` on `device`. When `plugin` is not empty
  // only that plugin is considered; otherwise the highest score wins. Throws
  // PluginError listing the loaded plugins and every path searched.
  ProviderRef find(ts_kind kind, const std::string& name, ts_device device,
                   const std::string& plugin = "") const;
  // Every provider find() considers that can run on this machine, best score first
  // (ties in load order): the order in which the host tries them when one declines
  // (supports) or its create returns TS_UNSUPPORTED. Throws as find() when empty.
  std::vector<ProviderRef> candidates(ts_kind kind, const std::string& name, ts_device device,
                                      const std::string& plugin = "") const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

const char* kind_name(int32_t kind);

// Empty when the provider's vtable is large enough for its kind and has every
// mandatory entry; otherwise what is wrong ("the block vtable leaves mandatory
// functions NULL: forward"). The registry refuses such a library when it loads it.
std::string vtable_problem(const ts_provider& provider);

}  // namespace tessera
