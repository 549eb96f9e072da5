// The "local" parallel provider: one process, world 1. Every collective over a single
// rank is the identity, so reductions leave their tensor alone and gathers copy in to out.
#include <cstring>
#include <stdexcept>
#include <string>
#include <tessera/plugin.hpp>

namespace tessera::parallel {
namespace {

constexpr const char* kAcceptedParams = "world, rank";

void check_tensor(const ts_tensor* t, const std::string& where, const char* what) {
  if (t == nullptr) throw std::invalid_argument(where + what + " is NULL");
  if (t->ndim < 0 || t->ndim > TS_MAX_DIMS)
    throw std::invalid_argument(where + what + " has ndim " + std::to_string(t->ndim) +
                                ", expected 0.." + std::to_string(TS_MAX_DIMS));
  if (dtype_size(t->dtype) == 0)
    throw std::invalid_argument(where + what + " has unknown dtype " + std::to_string(t->dtype));
  for (int32_t d = 0; d < t->ndim; ++d)
    if (t->shape[d] < 0)
      throw std::invalid_argument(where + what + " has negative shape " + sdk::shape_string(*t));
  if (t->data == nullptr && sdk::numel(*t) > 0)
    throw std::invalid_argument(where + what + " has no data");
}

bool same_layout(const ts_tensor& a, const ts_tensor& b) {
  if (a.ndim != b.ndim) return false;
  for (int32_t d = 0; d < a.ndim; ++d)
    if (a.shape[d] != b.shape[d] || (a.shape[d] > 1 && a.stride[d] != b.stride[d])) return false;
  return true;
}

// Copies `in` to `out` (same shape and dtype), any strides, on the CPU.
void copy_tensor(const ts_tensor& in, const ts_tensor& out) {
  const size_t elem = dtype_size(in.dtype);
  const int64_t count = sdk::numel(in);
  if (count == 0) return;
  if (in.data == out.data && same_layout(in, out)) return;  // in-place: nothing to move
  if (sdk::is_contiguous(in) && sdk::is_contiguous(out)) {
    std::memmove(out.data, in.data, static_cast<size_t>(count) * elem);
    return;
  }
  const auto* src = static_cast<const unsigned char*>(in.data);
  auto* dst = static_cast<unsigned char*>(out.data);
  int64_t index[TS_MAX_DIMS] = {0, 0, 0, 0};
  for (int64_t n = 0; n < count; ++n) {
    int64_t in_offset = 0, out_offset = 0;
    for (int32_t d = 0; d < in.ndim; ++d) {
      in_offset += index[d] * in.stride[d];
      out_offset += index[d] * out.stride[d];
    }
    std::memcpy(dst + out_offset * static_cast<int64_t>(elem),
                src + in_offset * static_cast<int64_t>(elem), elem);
    for (int32_t d = in.ndim - 1; d >= 0; --d) {
      if (++index[d] < in.shape[d]) break;
      index[d] = 0;
    }
  }
}

// all_gather and reduce_scatter over one rank: out must have the shape of in; a copy.
void copy_collective(const char* name, const ts_tensor* in, ts_tensor* out, int32_t dim) {
  const std::string where = std::string("parallel-local ") + name + ": ";
  check_tensor(in, where, "in");
  check_tensor(out, where, "out");
  if (dim < 0 || dim >= in->ndim)
    throw std::invalid_argument(where + "dim " + std::to_string(dim) + " is outside [0, " +
                                std::to_string(in->ndim) + ") for in of shape " +
                                sdk::shape_string(*in));
  if (in->dtype != out->dtype)
    throw std::invalid_argument(where + "in has dtype " + dtype_name(in->dtype) +
                                " but out has dtype " + dtype_name(out->dtype) +
                                "; they must match");
  bool same_shape = in->ndim == out->ndim;
  for (int32_t d = 0; same_shape && d < in->ndim; ++d) same_shape = in->shape[d] == out->shape[d];
  if (!same_shape)
    throw std::invalid_argument(where + "out has shape " + sdk::shape_string(*out) +
                                ", expected the shape of in " + sdk::shape_string(*in) +
                                " with a world of 1 rank");
  if (in->device != TS_DEVICE_CPU || out->device != TS_DEVICE_CPU) {
    if (in->data == out->data && same_layout(*in, *out)) return;
    throw sdk::Unsupported(where + "copying between distinct " + device_name(in->device) + " and " +
                           device_name(out->device) +
                           " tensors is not supported; pass out == in, or use a device "
                           "parallel plugin");
  }
  copy_tensor(*in, *out);
}

class LocalParallel {
 public:
  LocalParallel(const ts_params& params, const ts_host*) {
    const sdk::Params p(params);
    for (int32_t i = 0; i < params.count; ++i) {
      const char* key = params.items[i].key;
      const std::string name = key ? key : "";
      if (name != "world" && name != "rank")
        throw std::invalid_argument("parallel-local: unknown parameter '" + name +
                                    "'; accepted parameters: " + kAcceptedParams);
    }
    const int64_t world = p.get_int("world", 1);
    if (world != 1)
      throw std::invalid_argument(
          "parallel-local: parameter 'world' is " + std::to_string(world) +
          ", expected 1: the local provider runs a single process; use a multi-process "
          "parallel plugin (e.g. mpi or nccl) for more ranks");
    const int64_t rank = p.get_int("rank", 0);
    if (rank != 0)
      throw std::invalid_argument("parallel-local: parameter 'rank' is " + std::to_string(rank) +
                                  ", expected 0 (the only rank of a world of 1)");
  }

  ts_comm communicator() {
    ts_comm comm{};
    comm.ctx = this;
    comm.rank = 0;
    comm.world = 1;
    comm.all_reduce_sum = [](void*, ts_tensor* inout, void*, ts_error* err) {
      return sdk::guard(err,
                        [&] { check_tensor(inout, "parallel-local all_reduce_sum: ", "inout"); });
    };
    comm.all_gather = [](void*, const ts_tensor* in, ts_tensor* out, int32_t dim, void*,
                         ts_error* err) {
      return sdk::guard(err, [&] { copy_collective("all_gather", in, out, dim); });
    };
    comm.reduce_scatter_sum = [](void*, const ts_tensor* in, ts_tensor* out, int32_t dim, void*,
                                 ts_error* err) {
      return sdk::guard(err, [&] { copy_collective("reduce_scatter_sum", in, out, dim); });
    };
    comm.broadcast = [](void*, ts_tensor* inout, int32_t root, void*, ts_error* err) {
      return sdk::guard(err, [&] {
        check_tensor(inout, "parallel-local broadcast: ", "inout");
        if (root != 0)
          throw std::invalid_argument("parallel-local broadcast: root " + std::to_string(root) +
                                      " is outside the world of 1 rank (expected 0)");
      });
    };
    return comm;
  }
};

const ts_parallel_vtable kVtable = sdk::parallel_vtable<LocalParallel>();
const ts_provider kProviders[] = {
    sdk::provider(TS_KIND_PARALLEL, "local", TS_DEVICE_CPU, &kVtable)};

}  // namespace
}  // namespace tessera::parallel

TESSERA_PLUGIN("tessera-parallel-local", "0.1.0", tessera::parallel::kProviders)
