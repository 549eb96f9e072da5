// A communicator of one rank that refuses larger worlds as unsupported (see CMakeLists.txt).
#include <tessera/plugin.hpp>

#include <cstring>
#include <stdexcept>
#include <string>

namespace {

// in to out element by element (same shape and dtype), any strides.
void copy(const ts_tensor& in, const ts_tensor& out) {
  if (in.dtype != out.dtype || in.ndim != out.ndim)
    throw std::invalid_argument("single-rank: in and out differ in dtype or rank");
  for (int32_t d = 0; d < in.ndim; ++d)
    if (in.shape[d] != out.shape[d])
      throw std::invalid_argument("single-rank: out has shape " + tessera::sdk::shape_string(out) +
                                  ", expected " + tessera::sdk::shape_string(in));
  const auto elem = static_cast<int64_t>(tessera::dtype_size(in.dtype));
  int64_t index[TS_MAX_DIMS] = {0, 0, 0, 0};
  for (int64_t n = 0; n < tessera::sdk::numel(in); ++n) {
    int64_t from = 0, to = 0;
    for (int32_t d = 0; d < in.ndim; ++d) {
      from += index[d] * in.stride[d];
      to += index[d] * out.stride[d];
    }
    std::memmove(static_cast<char*>(out.data) + to * elem,
                 static_cast<const char*>(in.data) + from * elem, static_cast<size_t>(elem));
    for (int32_t d = in.ndim - 1; d >= 0; --d) {
      if (++index[d] < in.shape[d]) break;
      index[d] = 0;
    }
  }
}

class SingleRank {
 public:
  SingleRank(const ts_params& params, const ts_host*) {
    const tessera::sdk::Params p(params);
    const int64_t world = p.get_int("world", 1);
    if (world != 1)
      throw tessera::sdk::Unsupported(
          "single-rank: one process is one rank of a job launched "
          "elsewhere; it cannot form a world of " +
          std::to_string(world) + " by itself");
  }

  ts_comm communicator() {
    ts_comm comm{};
    comm.ctx = this;
    comm.rank = 0;
    comm.world = 1;
    comm.all_reduce_sum = [](void*, ts_tensor*, void*, ts_error*) { return int{TS_OK}; };
    comm.all_gather = [](void*, const ts_tensor* in, ts_tensor* out, int32_t, void*,
                         ts_error* err) {
      return tessera::sdk::guard(err, [&] { copy(*in, *out); });
    };
    comm.reduce_scatter_sum = [](void*, const ts_tensor* in, ts_tensor* out, int32_t, void*,
                                 ts_error* err) {
      return tessera::sdk::guard(err, [&] { copy(*in, *out); });
    };
    comm.broadcast = [](void*, ts_tensor*, int32_t root, void*, ts_error* err) {
      return tessera::sdk::guard(err, [&] {
        if (root != 0) throw std::invalid_argument("single-rank: root must be 0");
      });
    };
    return comm;
  }
};

const ts_parallel_vtable kVtable = tessera::sdk::parallel_vtable<SingleRank>();
const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_PARALLEL, "single-rank", TS_DEVICE_CPU, &kVtable)};

}  // namespace

TESSERA_PLUGIN("tessera-fixture-single-rank", "0.0.1", kProviders)
