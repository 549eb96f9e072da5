// Backend: a device runtime plugin object behind ts_backend_vtable, with errors turned into
// exceptions and an Allocator over its memory.
#include <tessera/engine/backend.hpp>
#include <tessera/engine/error.hpp>

#include <cstddef>
#include <string>
#include <utility>

namespace tessera {

// Device memory through the backend; Tensor and KvCache take it like the CPU allocator.
class Backend::DeviceAllocator : public Allocator {
 public:
  explicit DeviceAllocator(Backend& backend) : backend_(backend) {}
  void* allocate(size_t bytes) override {
    ts_error err{};
    void* p = nullptr;
    backend_.check(backend_.vt_->alloc(backend_.self_, bytes, &p, &err), err, "alloc");
    return p;
  }
  void deallocate(void* p, size_t /*bytes*/) override { backend_.vt_->free(backend_.self_, p); }
  ts_device device() const override { return backend_.device(); }
  void copy(void* dst, const void* src, size_t bytes) override {
    ts_error err{};
    const int32_t d = backend_.device();
    backend_.check(backend_.vt_->copy(backend_.self_, dst, d, src, d, bytes, &err), err, "copy");
  }

 private:
  Backend& backend_;
};

Backend::Backend(ProviderRef provider, int32_t device_index, const ts_host* host)
    : provider_(std::move(provider)), device_index_(device_index) {
  if (provider_.provider == nullptr || provider_.provider->kind != TS_KIND_BACKEND)
    throw Error("backend: the provider is not a backend");
  label_ =
      std::string("backend '") + provider_.provider->name + "' (" + provider_.plugin_name() + ")";
  vt_ = static_cast<const ts_backend_vtable*>(provider_.provider->vtable);
  // The registry checked the size and the mandatory entries when it loaded the plugin.
  if (vt_ == nullptr ||
      vt_->struct_size < offsetof(ts_backend_vtable, sample) + sizeof(vt_->sample))
    throw Error(label_ + ": the backend vtable is incomplete");
  ts_backend_config config{};
  config.struct_size = sizeof(config);
  config.device_index = device_index;
  config.host = host;
  ts_error err{};
  const int status = vt_->create(&config, &self_, &err);
  if (status != TS_OK) {
    self_ = nullptr;
    const std::string why = err.message[0] != '\0' ? err.message : "no message";
    if (status == TS_UNSUPPORTED) throw BackendUnavailable(label_ + ": " + why);
    throw Error(label_ + ": " + why);
  }
  if (self_ == nullptr) throw Error(label_ + ": create returned OK but no object");
  allocator_ = std::make_unique<DeviceAllocator>(*this);
}

Backend::~Backend() {
  allocator_.reset();
  if (self_ != nullptr) vt_->destroy(self_);
}

void Backend::check(int status, const ts_error& err, const char* what) const {
  if (status == TS_OK) return;
  const std::string why = err.message[0] != '\0' ? err.message : "no message";
  throw Error(label_ + ": " + what + ": " + (status == TS_UNSUPPORTED ? "unsupported: " : "") +
              why);
}

ts_backend_device_info Backend::device_info() const {
  ts_backend_device_info info{};
  info.struct_size = sizeof(info);
  ts_error err{};
  check(vt_->device_info(self_, &info, &err), err, "device_info");
  return info;
}

void* Backend::stream() const {
  return vt_->stream(self_);
}

Allocator& Backend::allocator() {
  return *allocator_;
}

void Backend::copy_to_device(void* dst, const void* src, size_t bytes) {
  ts_error err{};
  check(vt_->copy(self_, dst, device(), src, TS_DEVICE_CPU, bytes, &err), err, "copy to device");
}

void Backend::copy_to_host(void* dst, const void* src, size_t bytes) {
  ts_error err{};
  check(vt_->copy(self_, dst, TS_DEVICE_CPU, src, device(), bytes, &err), err, "copy to host");
}

void Backend::synchronize() {
  ts_error err{};
  check(vt_->synchronize(self_, &err), err, "synchronize");
}

Tensor Backend::upload(const Tensor& host, ts_dtype dtype) {
  if (host.device() != TS_DEVICE_CPU) throw Error(label_ + ": upload takes a CPU tensor");
  const Tensor converted = host.dtype() == dtype ? host : host.to(dtype);
  Tensor out(host.shape(), dtype, allocator());
  copy_to_device(out.raw(), converted.raw(), converted.bytes());
  return out;
}

Tensor Backend::download(const Tensor& device_tensor) {
  if (device_tensor.device() != device())
    throw Error(label_ + ": download takes a tensor of this backend's device");
  Tensor out(device_tensor.shape(), device_tensor.dtype());
  copy_to_host(out.raw(), device_tensor.raw(), device_tensor.bytes());
  return out;
}

void Backend::convert(const ts_tensor& src, ts_tensor& dst) {
  ts_error err{};
  check(vt_->convert(self_, &src, &dst, &err), err, "convert");
}

void Backend::rmsnorm(const ts_tensor& x, const ts_tensor& weight, double eps, ts_tensor& y) {
  ts_error err{};
  check(vt_->rmsnorm(self_, &x, &weight, eps, &y, &err), err, "rmsnorm");
}

void Backend::add(ts_tensor& inout, const ts_tensor& addend) {
  ts_error err{};
  check(vt_->add(self_, &inout, &addend, &err), err, "add");
}

void Backend::embed(const ts_tensor& table, const int32_t* tokens, int32_t n_tokens,
                    ts_tensor& out) {
  ts_error err{};
  check(vt_->embed(self_, &table, tokens, n_tokens, &out, &err), err, "embed");
}

void Backend::matmul(const ts_tensor& x, const ts_tensor& w, ts_tensor& y) {
  ts_error err{};
  check(vt_->matmul(self_, &x, &w, &y, &err), err, "matmul");
}

void Backend::argmax(const ts_tensor& logits, int32_t* tokens) {
  ts_error err{};
  check(vt_->argmax(self_, &logits, tokens, &err), err, "argmax");
}

void Backend::sample(const ts_tensor& logits, float temperature, const float* uniforms,
                     int32_t* tokens) {
  ts_error err{};
  check(vt_->sample(self_, &logits, temperature, uniforms, tokens, &err), err, "sample");
}

}  // namespace tessera
