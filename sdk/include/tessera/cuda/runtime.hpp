// CUDA runtime helpers for device plugins: device presence (for provider scores and clear
// "no CUDA device" errors), the stream the host lends, and owning device / pinned host
// buffers. Error checks are in check.hpp, which kernel files include on its own.
//
// Host code; needs the CUDA toolkit's include folder and the CUDA runtime library (CMake:
// CUDA::cudart_static).
#pragma once

#include <tessera/abi.h>
#include <tessera/cuda/context.h>
#include <tessera/cuda/check.hpp>
#include <tessera/plugin.hpp>

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace tessera::cuda {

// Usable CUDA devices: 0 without a GPU or without a driver. Never throws.
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error so later calls report their own
    return 0;
  }
  return n;
}

// Why device_count() is 0, for messages ("no CUDA device: ...").
inline std::string no_device_reason() {
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  (void)cudaGetLastError();
  if (status != cudaSuccess) return "no CUDA device: " + error_text(status);
  return n == 0 ? "no CUDA device: cudaGetDeviceCount reports 0 devices" : "";
}

// Provider score: 0 ("cannot run on this machine") without a device. Cached: the first
// call initialises the CUDA runtime, which takes a moment.
inline int32_t score_when_device_present() {
  static const int32_t score = device_count() > 0 ? 100 : 0;
  return score;
}

// Throws Unsupported (TS_UNSUPPORTED at the boundary) when `index` is not a usable device.
inline void require_device(int32_t index, const std::string& label) {
  const int n = device_count();
  if (n == 0) throw sdk::Unsupported(label + ": " + no_device_reason());
  if (index < 0 || index >= n)
    throw sdk::Unsupported(label + ": CUDA device " + std::to_string(index) +
                           " does not exist (this machine has " + std::to_string(n) + ")");
}

// The stream of the CUDA backend's context the host lends (ts_host.device_context, a
// ts_cuda_context), or the legacy default stream when there is none.
inline cudaStream_t host_stream(const ts_host* host) {
  if (host == nullptr || host->struct_size < offsetof(ts_host, device_context) + sizeof(void*) ||
      host->device_context == nullptr)
    return nullptr;
  const auto* context = static_cast<const ts_cuda_context*>(host->device_context);
  if (context->struct_size < offsetof(ts_cuda_context, stream) + sizeof(void*)) return nullptr;
  return static_cast<cudaStream_t>(context->stream);
}

// Makes `device` current for a scope and restores the previous one.
class DeviceScope {
 public:
  explicit DeviceScope(int32_t device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { (void)cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

// Device memory that grows on demand and never shrinks, so that steady-state calls
// allocate nothing. Growing synchronises the device (cudaFree), which is fine outside
// the hot loop.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { reserve(bytes); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void reserve(size_t bytes) {
    if (bytes <= bytes_) return;
    release();
    check(cudaMalloc(&data_, bytes), "cudaMalloc");
    bytes_ = bytes;
  }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void release() noexcept {
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory for asynchronous uploads of small per-call tables.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void reserve(size_t bytes) {
    if (bytes <= bytes_) return;
    release();
    check(cudaMallocHost(&data_, bytes), "cudaMallocHost");
    bytes_ = bytes;
  }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(data_);
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) (void)cudaFreeHost(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A CUDA event, for "the previous upload from this pinned buffer has finished".
class Event {
 public:
  Event() { check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate"); }
  ~Event() { (void)cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t stream) { check(cudaEventRecord(event_, stream), "cudaEventRecord"); }
  void wait_host() { check(cudaEventSynchronize(event_), "cudaEventSynchronize"); }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace tessera::cuda
