// A parallel provider's object (ts_parallel_vtable) and the communicator it gives:
// the group of ranks this process belongs to. The model takes its communicator from
// the provider [runtime.parallel] names ("local" by default: one process).
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_object.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <memory>
#include <string>

namespace tessera {

class Parallel {
 public:
  // Calls the provider's create with `params`, then its communicator, which is
  // checked (rank within world, every collective present).
  Parallel(ProviderRef provider, const ParamList& params, const ts_host* host, std::string label);

  const ProviderRef& provider() const { return object_.provider(); }
  const std::string& label() const { return object_.label(); }
  // Valid while this object lives.
  const ts_comm& comm() const { return comm_; }
  int32_t rank() const { return comm_.rank; }
  int32_t world() const { return comm_.world; }

  // The collectives, with failures thrown as Error "<label>: <collective>: ...".
  void all_reduce_sum(ts_tensor& inout, void* device_context = nullptr) const;
  void all_gather(const ts_tensor& in, ts_tensor& out, int32_t dim,
                  void* device_context = nullptr) const;
  void reduce_scatter_sum(const ts_tensor& in, ts_tensor& out, int32_t dim,
                          void* device_context = nullptr) const;
  void broadcast(ts_tensor& inout, int32_t root, void* device_context = nullptr) const;

 private:
  PluginObject<ts_parallel_vtable> object_;
  ts_comm comm_{};
};

// The provider `spec` names (kind "local" when empty), made with spec's parameters.
std::unique_ptr<Parallel> make_parallel(const PluginRegistry& registry, const BlockSpec& spec,
                                        const ts_host* host);

}  // namespace tessera
