// A device runtime made by a backend provider (ts_backend_vtable): a plugin object
// (plugin_object.hpp) that gives the core an Allocator for tensors and KV caches on the
// device. The core stays free of device code: everything device-specific happens behind
// the vtable.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/error.hpp>
#include <tessera/engine/plugin_object.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/tensor.hpp>

#include <memory>
#include <string>

namespace tessera {

// The backend's create reported TS_UNSUPPORTED: the device is not there (no GPU, no
// driver). what() carries the plugin's reason, e.g. "no CUDA device: ...".
struct BackendUnavailable : PluginUnsupported {
  using PluginUnsupported::PluginUnsupported;
};

class Backend {
 public:
  // Calls the provider's create for GPU `device_index`; `host` must outlive the backend.
  Backend(ProviderRef provider, int32_t device_index, const ts_host* host);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  ts_device device() const { return static_cast<ts_device>(provider().provider->device); }
  int32_t device_index() const { return device_index_; }
  const ProviderRef& provider() const { return object_->provider(); }
  ts_backend_device_info device_info() const;
  // The device context to lend device blocks as ts_host.device_context (the CUDA
  // backend's is a ts_cuda_context).
  void* context() const;
  // Tensors and KV caches on the device: Tensor(shape, dtype, backend.allocator()).
  Allocator& allocator();

  void copy_to_device(void* dst, const void* src, size_t bytes);
  void copy_to_host(void* dst, const void* src, size_t bytes);
  void synchronize();
  // A device tensor holding `host` (a CPU tensor) converted to `dtype` on the host first.
  Tensor upload(const Tensor& host, ts_dtype dtype);
  // A CPU tensor holding `device` (a tensor of this backend), in its own dtype.
  Tensor download(const Tensor& device);

  void convert(const ts_tensor& src, ts_tensor& dst);
  void rmsnorm(const ts_tensor& x, const ts_tensor& weight, double eps, ts_tensor& y);
  void add(ts_tensor& inout, const ts_tensor& addend);
  void embed(const ts_tensor& table, const int32_t* tokens, int32_t n_tokens, ts_tensor& out);
  void matmul(const ts_tensor& x, const ts_tensor& w, ts_tensor& y);
  void argmax(const ts_tensor& logits, int32_t* tokens);
  void sample(const ts_tensor& logits, float temperature, const float* uniforms, int32_t* tokens);

 private:
  class DeviceAllocator;
  static std::unique_ptr<PluginObject<ts_backend_vtable>> make(ProviderRef provider,
                                                               int32_t device_index,
                                                               const ts_host* host);

  std::unique_ptr<PluginObject<ts_backend_vtable>> object_;
  int32_t device_index_ = 0;
  std::unique_ptr<DeviceAllocator> allocator_;
};

}  // namespace tessera
