// Checks and plumbing shared by the CUDA block plugins: configuration, weights on the
// device, activations. Every error names the block (its label), the tensor and what was
// expected, like the CPU plugins' tessera/cpu/block_support.hpp.
//
// The CUDA blocks take bf16 activations (x and y) on a CUDA device and bf16 weights. A
// weight the host hands over on the device in bf16 is used in place; one in host memory
// (f32, f16 or bf16) is converted to bf16 and uploaded once, into memory the block owns.
#pragma once

#include <tessera/abi.h>
#include <tessera/cuda/runtime.hpp>
#include <tessera/dtype.hpp>
#include <tessera/plugin.hpp>

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::cuda {

inline std::string block_label(const ts_block_config& config, const char* kind_and_name) {
  return "layer " + std::to_string(config.layer) + " " + kind_and_name;
}

inline std::string dims_string(int64_t rows, int64_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

// Refuses what the CUDA blocks cannot run: another device, another activation dtype,
// sharding (the device communicator does not exist yet), an absent GPU.
inline void check_block_config(const ts_block_config& config, const std::string& label) {
  if (config.device != TS_DEVICE_CUDA)
    throw sdk::Unsupported(label + ": this plugin runs on cuda, not on device " +
                           device_name(config.device));
  if (config.dtype != TS_BF16)
    throw sdk::Unsupported(label + ": activation dtype " + std::string(dtype_name(config.dtype)) +
                           " is not supported (expected bf16)");
  if (config.hidden <= 0)
    throw std::invalid_argument(label + ": hidden size must be positive, got " +
                                std::to_string(config.hidden));
  if (config.comm != nullptr && config.comm->world > 1)
    throw sdk::Unsupported(label + ": sharded CUDA blocks (world " +
                           std::to_string(config.comm->world) +
                           ") need a device communicator, which does not exist yet");
  require_device(config.device_index, label);
}

// A bf16 matrix on the device: [rows, cols] with row stride ld (elements).
struct DeviceMatrix {
  const void* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
};

// Fetches a 2-D weight by its block-local name, checks its shape, and returns a bf16
// device view: in place when it is already bf16 on this device, else a converted copy
// appended to `owned` (which must outlive the view).
inline DeviceMatrix fetch_weight(const ts_weights* weights, const std::string& label,
                                 const std::string& name, int64_t rows, int64_t cols,
                                 int32_t device_index, std::vector<DeviceBuffer>& owned) {
  if (weights == nullptr || weights->get == nullptr)
    throw std::invalid_argument(label + ": no weights were given (needed '" + name + "')");
  ts_tensor t{};
  ts_error err{};
  if (weights->get(weights->ctx, name.c_str(), &t, &err) != TS_OK)
    throw std::invalid_argument(label + ": cannot get weight '" + name + "': " + err.message);
  if (t.ndim != 2 || t.shape[0] != rows || t.shape[1] != cols)
    throw std::invalid_argument(label + ": weight '" + name + "' has shape " +
                                sdk::shape_string(t) + ", expected " + dims_string(rows, cols));
  if (t.data == nullptr) throw std::invalid_argument(label + ": weight '" + name + "' has no data");
  if ((cols > 1 && t.stride[1] != 1) || t.stride[0] < cols)
    throw std::invalid_argument(label + ": weight '" + name + "' must have contiguous rows");
  if (t.device == TS_DEVICE_CUDA) {
    if (t.device_index != device_index)
      throw sdk::Unsupported(label + ": weight '" + name + "' is on CUDA device " +
                             std::to_string(t.device_index) + ", the block on device " +
                             std::to_string(device_index));
    if (t.dtype != TS_BF16)
      throw sdk::Unsupported(label + ": weight '" + name + "' is " + dtype_name(t.dtype) +
                             " on the device; the CUDA blocks take bf16 device weights");
    return DeviceMatrix{t.data, rows, cols, t.stride[0]};
  }
  if (t.device != TS_DEVICE_CPU)
    throw sdk::Unsupported(label + ": weight '" + name + "' is on unknown device " +
                           std::to_string(t.device));
  // Host weight: convert row by row to bf16 and upload once.
  std::vector<uint16_t> rounded(static_cast<size_t>(rows * cols));
  const auto* bytes = static_cast<const unsigned char*>(t.data);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const size_t at = static_cast<size_t>(r * t.stride[0] + c);
      float v = 0;
      switch (t.dtype) {
        case TS_F32:
          v = reinterpret_cast<const float*>(bytes)[at];
          break;
        case TS_BF16:
          v = bf16_to_f32(reinterpret_cast<const uint16_t*>(bytes)[at]);
          break;
        case TS_F16:
          v = f16_to_f32(reinterpret_cast<const uint16_t*>(bytes)[at]);
          break;
        default:
          throw sdk::Unsupported(label + ": weight '" + name + "' has dtype " +
                                 dtype_name(t.dtype) + ", expected f32, bf16 or f16");
      }
      rounded[static_cast<size_t>(r * cols + c)] = f32_to_bf16(v);
    }
  DeviceBuffer& copy = owned.emplace_back(rounded.size() * sizeof(uint16_t));
  check(cudaMemcpy(copy.get(), rounded.data(), rounded.size() * sizeof(uint16_t),
                   cudaMemcpyHostToDevice),
        "cudaMemcpy (weight upload)");
  return DeviceMatrix{copy.get(), rows, cols, cols};
}

// Checks an activation: bf16 on this CUDA device, [rows, cols], contiguous.
inline void check_activation(const ts_tensor* t, const std::string& label, const char* what,
                             int64_t rows, int64_t cols, int32_t device_index) {
  if (t == nullptr || (t->data == nullptr && rows * cols > 0))
    throw std::invalid_argument(label + ": tensor " + what + " is missing");
  if (t->dtype != TS_BF16)
    throw sdk::Unsupported(label + ": tensor " + what + " has dtype " + dtype_name(t->dtype) +
                           ", expected bf16");
  if (t->device != TS_DEVICE_CUDA || t->device_index != device_index)
    throw sdk::Unsupported(label + ": tensor " + what + " is on " + device_name(t->device) + " " +
                           std::to_string(t->device_index) + ", expected cuda " +
                           std::to_string(device_index));
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    throw std::invalid_argument(label + ": tensor " + what + " has shape " + sdk::shape_string(*t) +
                                ", expected " + dims_string(rows, cols));
  if (!sdk::is_contiguous(*t))
    throw std::invalid_argument(label + ": tensor " + what + " must be contiguous");
}

// Checks the batch's own consistency (host memory) against the n_tokens rows of x.
inline void check_batch(const ts_batch* batch, const std::string& label, int64_t n_tokens) {
  if (batch == nullptr) throw std::invalid_argument(label + ": no batch was given");
  if (batch->n_seqs < 0 || batch->n_tokens != n_tokens)
    throw std::invalid_argument(label + ": batch has " + std::to_string(batch->n_seqs) +
                                " sequences and " + std::to_string(batch->n_tokens) +
                                " tokens; x has " + std::to_string(n_tokens) + " rows");
  if (batch->n_seqs == 0) {
    if (n_tokens != 0) throw std::invalid_argument(label + ": batch has tokens but no sequences");
    return;
  }
  if (batch->offsets == nullptr || batch->slots == nullptr || batch->positions == nullptr)
    throw std::invalid_argument(label + ": batch has no offsets, slots or positions");
  if (batch->offsets[0] != 0 || batch->offsets[batch->n_seqs] != n_tokens)
    throw std::invalid_argument(label + ": batch offsets must run from 0 to " +
                                std::to_string(n_tokens));
  for (int32_t s = 0; s < batch->n_seqs; ++s)
    if (batch->offsets[s + 1] < batch->offsets[s])
      throw std::invalid_argument(label + ": batch offsets are not monotone at sequence " +
                                  std::to_string(s));
}

// Checks x and y ([n, hidden] bf16 on the device); returns n.
inline int64_t checked_rows(const ts_block_io& io, const std::string& label, int64_t hidden,
                            int32_t device_index) {
  if (io.x == nullptr) throw std::invalid_argument(label + ": tensor x is missing");
  const int64_t n = io.x->ndim >= 1 ? io.x->shape[0] : 0;
  check_activation(io.x, label, "x", n, hidden, device_index);
  check_activation(io.y, label, "y", n, hidden, device_index);
  if (io.batch != nullptr && io.batch->n_tokens != n)
    throw std::invalid_argument(label + ": batch has " + std::to_string(io.batch->n_tokens) +
                                " tokens but x has " + std::to_string(n) + " rows");
  return n;
}

}  // namespace tessera::cuda
