// A search provider's object (ts_search_vtable): a problem document (JSON) in, a
// solution document out (docs/search.md). `tessera search` and the Puzzle pipeline
// reach search plugins through it.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/params.hpp>
#include <tessera/engine/plugin_object.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace tessera {

class Search {
 public:
  Search(ProviderRef provider, const ParamList& params, const ts_host* host, std::string label);

  const ProviderRef& provider() const { return object_.provider(); }
  const std::string& label() const { return object_.label(); }  // "search exact (plugin)"

  // The solution document; the plugin's string is copied and released through its
  // free_string. Throws Error "<label>: solve: ..." when the plugin refuses the problem.
  std::string solve(std::string_view problem_json) const;

 private:
  PluginObject<ts_search_vtable> object_;
};

// The search provider named `name` (from `plugin` when not empty), made with `params`.
std::unique_ptr<Search> make_search(const PluginRegistry& registry, const std::string& name,
                                    const std::string& plugin, const ParamList& params,
                                    const ts_host* host);

}  // namespace tessera
