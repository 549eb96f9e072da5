// Backend: a device runtime plugin object behind ts_backend_vtable, with an Allocator
// over its memory.
#include <tessera/engine/backend.hpp>
#include <tessera/engine/error.hpp>

#include <string>
#include <utility>

namespace tessera {

// Device memory through the backend; Tensor and KvCache take it like the CPU allocator.
class Backend::DeviceAllocator : public Allocator {
 public:
  explicit DeviceAllocator(Backend& backend) : backend_(backend) {}
  void* allocate(size_t bytes) override {
    void* p = nullptr;
    backend_.object_->call("alloc", &ts_backend_vtable::alloc, bytes, &p);
    return p;
  }
  void deallocate(void* p, size_t /*bytes*/) override {
    backend_.object_->vtable().free(backend_.object_->self(), p);
  }
  ts_device device() const override { return backend_.device(); }
  void copy(void* dst, const void* src, size_t bytes) override {
    const int32_t d = backend_.device();
    backend_.object_->call("copy", &ts_backend_vtable::copy, dst, d, src, d, bytes);
  }

 private:
  Backend& backend_;
};

std::unique_ptr<PluginObject<ts_backend_vtable>> Backend::make(ProviderRef provider,
                                                               int32_t device_index,
                                                               const ts_host* host) {
  if (provider.provider == nullptr || provider.provider->kind != TS_KIND_BACKEND)
    throw Error("backend: the provider is not a backend");
  std::string label =
      std::string("backend '") + provider.provider->name + "' (" + provider.plugin_name() + ")";
  ts_backend_config config{};
  config.struct_size = sizeof(config);
  config.device_index = device_index;
  config.host = host;
  try {
    return std::make_unique<PluginObject<ts_backend_vtable>>(
        std::move(provider), std::move(label),
        [&config](const ts_backend_vtable& vt, void** self, ts_error* err) {
          return vt.create(&config, self, err);
        });
  } catch (const PluginUnsupported& e) {
    throw BackendUnavailable(e.what());  // the device is not there (no GPU, no driver)
  }
}

Backend::Backend(ProviderRef provider, int32_t device_index, const ts_host* host)
    : object_(make(std::move(provider), device_index, host)),
      device_index_(device_index),
      allocator_(std::make_unique<DeviceAllocator>(*this)) {}

Backend::~Backend() {
  allocator_.reset();
}

ts_backend_device_info Backend::device_info() const {
  ts_backend_device_info info{};
  info.struct_size = sizeof(info);
  object_->call("device_info", &ts_backend_vtable::device_info, &info);
  return info;
}

void* Backend::context() const {
  return object_->vtable().context(object_->self());
}

Allocator& Backend::allocator() {
  return *allocator_;
}

void Backend::copy_to_device(void* dst, const void* src, size_t bytes) {
  object_->call("copy to device", &ts_backend_vtable::copy, dst, static_cast<int32_t>(device()),
                src, static_cast<int32_t>(TS_DEVICE_CPU), bytes);
}

void Backend::copy_to_host(void* dst, const void* src, size_t bytes) {
  object_->call("copy to host", &ts_backend_vtable::copy, dst, static_cast<int32_t>(TS_DEVICE_CPU),
                src, static_cast<int32_t>(device()), bytes);
}

void Backend::synchronize() {
  object_->call("synchronize", &ts_backend_vtable::synchronize);
}

Tensor Backend::upload(const Tensor& host, ts_dtype dtype) {
  if (host.device() != TS_DEVICE_CPU) throw Error(object_->label() + ": upload takes a CPU tensor");
  const Tensor converted = host.dtype() == dtype ? host : host.to(dtype);
  Tensor out(host.shape(), dtype, allocator());
  copy_to_device(out.raw(), converted.raw(), converted.bytes());
  return out;
}

Tensor Backend::download(const Tensor& device_tensor) {
  if (device_tensor.device() != device())
    throw Error(object_->label() + ": download takes a tensor of this backend's device");
  Tensor out(device_tensor.shape(), device_tensor.dtype());
  copy_to_host(out.raw(), device_tensor.raw(), device_tensor.bytes());
  return out;
}

void Backend::convert(const ts_tensor& src, ts_tensor& dst) {
  object_->call("convert", &ts_backend_vtable::convert, &src, &dst);
}

void Backend::rmsnorm(const ts_tensor& x, const ts_tensor& weight, double eps, ts_tensor& y) {
  object_->call("rmsnorm", &ts_backend_vtable::rmsnorm, &x, &weight, eps, &y);
}

void Backend::add(ts_tensor& inout, const ts_tensor& addend) {
  object_->call("add", &ts_backend_vtable::add, &inout, &addend);
}

void Backend::embed(const ts_tensor& table, const int32_t* tokens, int32_t n_tokens,
                    ts_tensor& out) {
  object_->call("embed", &ts_backend_vtable::embed, &table, tokens, n_tokens, &out);
}

void Backend::matmul(const ts_tensor& x, const ts_tensor& w, ts_tensor& y) {
  object_->call("matmul", &ts_backend_vtable::matmul, &x, &w, &y);
}

void Backend::argmax(const ts_tensor& logits, int32_t* tokens) {
  object_->call("argmax", &ts_backend_vtable::argmax, &logits, tokens);
}

void Backend::sample(const ts_tensor& logits, float temperature, const float* uniforms,
                     int32_t* tokens) {
  object_->call("sample", &ts_backend_vtable::sample, &logits, temperature, uniforms, tokens);
}

}  // namespace tessera
