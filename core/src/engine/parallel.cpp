#include <tessera/engine/error.hpp>
#include <tessera/engine/parallel.hpp>

#include <cstddef>
#include <utility>

namespace tessera {

Parallel::Parallel(ProviderRef provider, const ParamList& params, const ts_host* host,
                   std::string name)
    : object_(std::move(provider), std::move(name),
              [&params, host](const ts_parallel_vtable& vt, void** self, ts_error* err) {
                const ts_params c = params.c_params();
                return vt.create(&c, host, self, err);
              }) {
  comm_.struct_size = sizeof(ts_comm);
  object_.call("communicator", &ts_parallel_vtable::communicator, &comm_);
  const size_t needed = offsetof(ts_comm, broadcast) + sizeof(comm_.broadcast);
  if (comm_.struct_size < needed || comm_.all_reduce_sum == nullptr ||
      comm_.all_gather == nullptr || comm_.reduce_scatter_sum == nullptr ||
      comm_.broadcast == nullptr)
    throw Error(label() + ": its communicator lacks a collective (struct_size " +
                std::to_string(comm_.struct_size) + ", expected at least " +
                std::to_string(needed) + " with every collective set)");
  if (comm_.world < 1 || comm_.rank < 0 || comm_.rank >= comm_.world)
    throw Error(label() + ": its communicator reports rank " + std::to_string(comm_.rank) +
                " of world " + std::to_string(comm_.world) +
                "; expected world >= 1 and 0 <= rank < world");
}

namespace {

void check(int status, const ts_error& err, const std::string& label, const char* what) {
  if (status == TS_OK) return;
  const std::string message = label + ": " + what + ": " + plugin_status_message(status, err);
  if (status == TS_UNSUPPORTED) throw PluginUnsupported(message);
  throw Error(message);
}

}  // namespace

void Parallel::all_reduce_sum(ts_tensor& inout, void* device_context) const {
  ts_error err{};
  check(comm_.all_reduce_sum(comm_.ctx, &inout, device_context, &err), err, label(),
        "all_reduce_sum");
}

void Parallel::all_gather(const ts_tensor& in, ts_tensor& out, int32_t dim,
                          void* device_context) const {
  ts_error err{};
  check(comm_.all_gather(comm_.ctx, &in, &out, dim, device_context, &err), err, label(),
        "all_gather");
}

void Parallel::reduce_scatter_sum(const ts_tensor& in, ts_tensor& out, int32_t dim,
                                  void* device_context) const {
  ts_error err{};
  check(comm_.reduce_scatter_sum(comm_.ctx, &in, &out, dim, device_context, &err), err, label(),
        "reduce_scatter_sum");
}

void Parallel::broadcast(ts_tensor& inout, int32_t root, void* device_context) const {
  ts_error err{};
  check(comm_.broadcast(comm_.ctx, &inout, root, device_context, &err), err, label(), "broadcast");
}

std::unique_ptr<Parallel> make_parallel(const PluginRegistry& registry, const BlockSpec& spec,
                                        const ts_host* host) {
  const std::string kind = spec.kind.empty() ? "local" : spec.kind;
  ProviderRef provider;
  try {
    provider = registry.find(TS_KIND_PARALLEL, kind, TS_DEVICE_CPU, spec.plugin);
  } catch (const PluginError& e) {
    std::string where;
    if (!spec.where.file.empty())
      where = " (" + spec.where.file + ":" + std::to_string(spec.where.line) + ":" +
              std::to_string(spec.where.column) + ")";
    throw PluginError("[runtime.parallel] '" + kind + "'" + where + ": " + e.what());
  }
  std::string label = "parallel " + kind + " (" + provider.plugin_name() + ")";
  return std::make_unique<Parallel>(std::move(provider), spec.params, host, std::move(label));
}

}  // namespace tessera
