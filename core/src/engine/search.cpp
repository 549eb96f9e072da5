#include <tessera/engine/error.hpp>
#include <tessera/engine/search.hpp>

#include <utility>

namespace tessera {

Search::Search(ProviderRef provider, const ParamList& params, const ts_host* host, std::string name)
    : object_(std::move(provider), std::move(name),
              [&params, host](const ts_search_vtable& vt, void** self, ts_error* err) {
                const ts_params c = params.c_params();
                return vt.create(&c, host, self, err);
              }) {}

std::string Search::solve(std::string_view problem_json) const {
  // The ABI passes a NUL-terminated string.
  const std::string problem(problem_json);
  char* solution = nullptr;
  object_.call("solve", &ts_search_vtable::solve, problem.c_str(), &solution);
  if (solution == nullptr) throw Error(label() + ": solve returned OK but no solution");
  std::string out(solution);
  object_.vtable().free_string(object_.self(), solution);
  return out;
}

std::unique_ptr<Search> make_search(const PluginRegistry& registry, const std::string& name,
                                    const std::string& plugin, const ParamList& params,
                                    const ts_host* host) {
  ProviderRef provider;
  try {
    provider = registry.find(TS_KIND_SEARCH, name, TS_DEVICE_CPU, plugin);
  } catch (const PluginError& e) {
    throw PluginError("search '" + name + "': " + e.what());
  }
  std::string label = "search " + name + " (" + provider.plugin_name() + ")";
  return std::make_unique<Search>(std::move(provider), params, host, std::move(label));
}

}  // namespace tessera
