// The two block variants that the CUDA attention and FFN plugins share, as the CPU
// plugins share tessera/cpu/dense_blocks.hpp: a single linear map (Puzzle's "replace
// with linear") through one cuBLASLt GEMM, and the no-op.
#pragma once

#include <tessera/abi.h>
#include <tessera/cuda/block_support.hpp>
#include <tessera/cuda/cublaslt.hpp>
#include <tessera/cuda/runtime.hpp>

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

namespace tessera::cuda {

// y = x W^T with W [hidden, hidden].
class LinearBlock {
 public:
  LinearBlock(const ts_block_config& config, const char* kind_and_name, const char* weight_name)
      : label_(block_label(config, kind_and_name)),
        host_(config.host),
        device_(config.device_index) {
    check_block_config(config, label_);
    const DeviceScope scope(device_);
    hidden_ = config.hidden;
    w_ = fetch_weight(config.weights, label_, weight_name, hidden_, hidden_, device_, owned_);
    gemm_ = std::make_unique<Gemm>();  // after the checks: it needs the device
  }

  // What a block reading `weight_name` declares: one [hidden, hidden] matrix (the CUDA
  // blocks do not shard; the split is the kind's, as on the cpu) and no cache.
  static sdk::BlockLayout layout(const ts_block_config& config, const char* weight_name) {
    if (config.hidden <= 0)
      throw std::invalid_argument(std::string(weight_name) +
                                  ": hidden size must be positive, got " +
                                  std::to_string(config.hidden));
    sdk::BlockLayout out;
    out.kv_dtype = TS_BF16;
    out.weights = {{weight_name, {config.hidden, config.hidden}, TS_SPLIT_COLUMNS}};
    return out;
  }

  static void supports(const ts_block_config& config) {
    check_block_config(config, block_label(config, "linear block"));
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.kv_dtype = TS_BF16;
    i.parameters = hidden_ * hidden_;
    return i;
  }

  void forward(const ts_block_io& io) {
    const DeviceScope scope(device_);
    const int64_t n = checked_rows(io, label_, hidden_, device_);
    GemmArgs g;
    g.x = io.x->data;
    g.w = w_.data;
    g.y = io.y->data;
    g.m = n;
    g.n = hidden_;
    g.k = hidden_;
    g.ldx = hidden_;
    g.ldw = w_.ld;
    g.ldy = hidden_;
    gemm_->run(g, host_stream(host_));
  }

 private:
  std::string label_;
  const ts_host* host_ = nullptr;
  int32_t device_ = 0;
  int64_t hidden_ = 0;
  std::vector<DeviceBuffer> owned_;
  DeviceMatrix w_;
  std::unique_ptr<Gemm> gemm_;
};

// Adds nothing; TS_BLOCK_IDENTITY lets the host skip it. Called anyway, it writes zeros.
class NoopBlock {
 public:
  NoopBlock(const ts_block_config& config, const char* kind_and_name)
      : label_(block_label(config, kind_and_name)),
        host_(config.host),
        device_(config.device_index),
        hidden_(config.hidden) {
    check_block_config(config, label_);
  }

  // No weights, no cache: an identity.
  static sdk::BlockLayout describe(const ts_block_config&) {
    sdk::BlockLayout out;
    out.flags = TS_BLOCK_IDENTITY;
    out.kv_dtype = TS_BF16;
    return out;
  }

  static void supports(const ts_block_config& config) {
    check_block_config(config, block_label(config, "noop block"));
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.flags = TS_BLOCK_IDENTITY;
    i.kv_dtype = TS_BF16;
    return i;
  }

  void forward(const ts_block_io& io) {
    const DeviceScope scope(device_);
    if (io.y == nullptr) throw std::invalid_argument(label_ + ": tensor y is missing");
    const int64_t n = io.y->ndim >= 1 ? io.y->shape[0] : 0;
    check_activation(io.y, label_, "y", n, hidden_, device_);
    check(cudaMemsetAsync(io.y->data, 0, static_cast<size_t>(n * hidden_) * 2, host_stream(host_)),
          "cudaMemsetAsync");
  }

 private:
  std::string label_;
  const ts_host* host_ = nullptr;
  int32_t device_ = 0;
  int64_t hidden_ = 0;
};

}  // namespace tessera::cuda
