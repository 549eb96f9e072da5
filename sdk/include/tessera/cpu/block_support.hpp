// Checks and plumbing shared by the CPU block plugins: configuration, weights,
// activations, batches, sharding and the all-reduce of partial outputs. Every
// error names the block (its label, e.g. "layer 3 attention gqa"), the tensor
// and what was expected.
#pragma once

#include <tessera/abi.h>
#include <tessera/cpu/matmul.hpp>
#include <tessera/dtype.hpp>
#include <tessera/plugin.hpp>

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>

namespace tessera::cpu {

inline std::string block_label(const ts_block_config& config, const char* kind_and_name) {
  return "layer " + std::to_string(config.layer) + " " + kind_and_name;
}

inline std::string dims_string(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  int i = 0;
  for (int64_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
  return s + "]";
}

// Refuses what the CPU blocks cannot run: another device, non-f32 activations.
inline void check_block_config(const ts_block_config& config, const std::string& label) {
  if (config.device != TS_DEVICE_CPU)
    throw sdk::Unsupported(label + ": this plugin runs on the cpu, not on device " +
                           device_name(config.device));
  if (config.dtype != TS_F32)
    throw sdk::Unsupported(label + ": activation dtype " + dtype_name(config.dtype) +
                           " is not supported (expected f32)");
  if (config.hidden <= 0)
    throw std::invalid_argument(label + ": hidden size must be positive, got " +
                                std::to_string(config.hidden));
}

// The dtypes a CPU block reads a matrix in (ts_weight_decl.dtypes): the floats, and on one
// rank the quantised dtypes (a shard's column range need not fall on a block boundary).
inline uint32_t matrix_dtypes(int32_t world) {
  return world == 1 ? kFloatDtypeMask | kQuantizedDtypeMask : kFloatDtypeMask;
}

// Fetches a 2-D weight by its block-local name and checks its shape
// ([rows, cols], the full unsharded tensor), dtype and layout.
inline MatrixView fetch_weight(const ts_weights* weights, const std::string& label,
                               const std::string& name, int64_t rows, int64_t cols) {
  if (weights == nullptr || weights->get == nullptr)
    throw std::invalid_argument(label + ": no weights were given (needed '" + name + "')");
  ts_tensor t{};
  ts_error err{};
  if (weights->get(weights->ctx, name.c_str(), &t, &err) != TS_OK)
    throw std::invalid_argument(label + ": cannot get weight '" + name + "': " + err.message);
  if (t.ndim != 2 || t.shape[0] != rows || t.shape[1] != cols)
    throw std::invalid_argument(label + ": weight '" + name + "' has shape " +
                                sdk::shape_string(t) + ", expected " + dims_string({rows, cols}));
  if (t.dtype != TS_F32 && t.dtype != TS_BF16 && t.dtype != TS_F16 && !is_quantized(t.dtype))
    throw sdk::Unsupported(label + ": weight '" + name + "' has dtype " + dtype_name(t.dtype) +
                           ", expected f32, bf16, f16 or a quantised dtype");
  if (is_quantized(t.dtype) && cols % dtype_block_elems(t.dtype) != 0)
    throw std::invalid_argument(label + ": weight '" + name + "' is " + dtype_name(t.dtype) +
                                " with " + std::to_string(cols) + " columns, not whole blocks of " +
                                std::to_string(dtype_block_elems(t.dtype)));
  if (t.device != TS_DEVICE_CPU)
    throw sdk::Unsupported(label + ": weight '" + name + "' is on device " + device_name(t.device) +
                           ", expected cpu");
  if (t.data == nullptr) throw std::invalid_argument(label + ": weight '" + name + "' has no data");
  if ((cols > 1 && t.stride[1] != 1) || t.stride[0] < cols)
    throw std::invalid_argument(
        label + ": weight '" + name + "' must have contiguous rows (strides " +
        std::to_string(t.stride[0]) + ", " + std::to_string(t.stride[1]) + ")");
  return MatrixView{t.data, t.dtype, rows, cols, t.stride[0]};
}

// Checks an activation tensor: f32 on the cpu, [rows, cols], contiguous.
inline void check_activation(const ts_tensor* t, const std::string& label, const char* what,
                             int64_t rows, int64_t cols) {
  if (t == nullptr || t->data == nullptr)
    throw std::invalid_argument(label + ": tensor " + what + " is missing");
  if (t->dtype != TS_F32)
    throw sdk::Unsupported(label + ": tensor " + what + " has dtype " + dtype_name(t->dtype) +
                           ", expected f32");
  if (t->device != TS_DEVICE_CPU)
    throw sdk::Unsupported(label + ": tensor " + what + " is on device " + device_name(t->device) +
                           ", expected cpu");
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    throw std::invalid_argument(label + ": tensor " + what + " has shape " + sdk::shape_string(*t) +
                                ", expected " + dims_string({rows, cols}));
  if (!sdk::is_contiguous(*t))
    throw std::invalid_argument(label + ": tensor " + what + " must be contiguous");
}

// Checks the batch's own consistency against the n_tokens rows of x.
inline void check_batch(const ts_batch* batch, const std::string& label, int64_t n_tokens) {
  if (batch == nullptr) throw std::invalid_argument(label + ": no batch was given");
  if (batch->n_seqs < 0)
    throw std::invalid_argument(label + ": batch has " + std::to_string(batch->n_seqs) +
                                " sequences");
  if (batch->n_tokens != n_tokens)
    throw std::invalid_argument(label + ": batch has " + std::to_string(batch->n_tokens) +
                                " tokens but x has " + std::to_string(n_tokens) + " rows");
  if (batch->n_seqs == 0) {
    if (n_tokens != 0)
      throw std::invalid_argument(label + ": batch has no sequences but " +
                                  std::to_string(n_tokens) + " tokens");
    return;
  }
  if (batch->offsets == nullptr) throw std::invalid_argument(label + ": batch has no offsets");
  if (batch->offsets[0] != 0)
    throw std::invalid_argument(label + ": batch offsets[0] is " +
                                std::to_string(batch->offsets[0]) + ", expected 0");
  for (int32_t s = 0; s < batch->n_seqs; ++s)
    if (batch->offsets[s + 1] < batch->offsets[s])
      throw std::invalid_argument(label + ": batch offsets are not monotone: offsets[" +
                                  std::to_string(s + 1) +
                                  "] = " + std::to_string(batch->offsets[s + 1]) + " < offsets[" +
                                  std::to_string(s) + "] = " + std::to_string(batch->offsets[s]));
  if (batch->offsets[batch->n_seqs] != n_tokens)
    throw std::invalid_argument(label + ": batch offsets end at " +
                                std::to_string(batch->offsets[batch->n_seqs]) + ", expected " +
                                std::to_string(n_tokens) + " tokens");
}

// ---------------------------------------------------------------- training

// Checks a backward call: x and grad_y [n, hidden], grad_x when given (NULL: nothing upstream
// trains), the batch and the recompute policy; returns n.
inline int64_t checked_backward_rows(const ts_backward_io& io, const std::string& label,
                                     int64_t hidden) {
  if (io.x == nullptr) throw std::invalid_argument(label + ": backward: tensor x is missing");
  const int64_t n = io.x->ndim >= 1 ? io.x->shape[0] : 0;
  check_activation(io.x, label, "x", n, hidden);
  check_activation(io.grad_y, label, "grad_y", n, hidden);
  if (io.grad_x != nullptr) check_activation(io.grad_x, label, "grad_x", n, hidden);
  check_batch(io.batch, label, n);
  sdk::recompute_policy(io.recompute);
  return n;
}

// A workspace of `bytes` must have been given when it is not empty.
inline void check_workspace(const void* workspace, uint64_t bytes, const std::string& label) {
  if (bytes > 0 && workspace == nullptr)
    throw std::invalid_argument(label + ": the workspace is NULL but this batch and policy need " +
                                std::to_string(bytes) + " bytes (train_workspace)");
}

// A weight's f32 gradient buffer from ts_grads: row-major, rows of `cols` contiguous floats
// at data + r * ld. data NULL: the weight is frozen.
struct GradMatrix {
  float* data = nullptr;
  int64_t ld = 0;
  explicit operator bool() const { return data != nullptr; }
};

// The gradient buffer of a declared [rows, cols] weight (the whole tensor, unsharded), checked.
inline GradMatrix fetch_grad(const ts_grads* grads, const std::string& label,
                             const std::string& name, int64_t rows, int64_t cols) {
  ts_tensor t{};
  try {
    t = sdk::get_grad(grads, name, {rows, cols});
  } catch (const std::exception& e) {
    throw std::invalid_argument(label + ": " + e.what());
  }
  if (t.data == nullptr) return {};
  if (t.device != TS_DEVICE_CPU)
    throw sdk::Unsupported(label + ": gradient of '" + name + "' is on device " +
                           device_name(t.device) + ", expected cpu");
  if ((cols > 1 && t.stride[1] != 1) || t.stride[0] < cols)
    throw std::invalid_argument(
        label + ": gradient of '" + name + "' must have contiguous rows (strides " +
        std::to_string(t.stride[0]) + ", " + std::to_string(t.stride[1]) + ")");
  return {static_cast<float*>(t.data), t.stride[0]};
}

// The part [begin, end) of `total` items held by `rank` of `world`.
struct ShardRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

inline ShardRange shard_range(int64_t total, int32_t rank, int32_t world) {
  return {total * rank / world, total * (rank + 1) / world};
}

// rank/world of the config's communicator (world 1 without one), checked.
inline void comm_rank_world(const ts_block_config& config, const std::string& label, int32_t& rank,
                            int32_t& world) {
  rank = 0;
  world = 1;
  if (config.comm != nullptr) {
    rank = config.comm->rank;
    world = config.comm->world;
  }
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument(label + ": invalid communicator rank " + std::to_string(rank) +
                                " of world " + std::to_string(world));
}

// Sums a partial output over the ranks (no-op for world 1). CPU tensors: no device context.
inline void all_reduce_partial(const ts_comm* comm, const std::string& label, ts_tensor& y) {
  if (comm == nullptr || comm->world <= 1) return;
  if (comm->all_reduce_sum == nullptr)
    throw std::invalid_argument(label + ": the communicator has no all_reduce_sum");
  ts_error err{};
  if (comm->all_reduce_sum(comm->ctx, &y, nullptr, &err) != TS_OK)
    throw std::runtime_error(label + ": all_reduce_sum failed: " + err.message);
}

}  // namespace tessera::cpu
