// A backend over host memory (device "cpu"): allocation, copies and the residual add; every
// other operation reports TS_UNSUPPORTED. Lets CPU-only builds test the backend kind.
#include <tessera/abi.h>
#include <tessera/plugin.hpp>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace {

class HostBackend {
 public:
  explicit HostBackend(const ts_backend_config& config) {
    if (config.device_index != 0)
      throw tessera::sdk::Unsupported("fixture backend: no device " +
                                      std::to_string(config.device_index));
  }
  ts_backend_device_info device_info() {
    ts_backend_device_info info{};
    std::strcpy(info.name, "fixture host memory");
    info.device = TS_DEVICE_CPU;
    return info;
  }
  void* context() { return nullptr; }
  void* alloc(size_t bytes) { return std::malloc(bytes == 0 ? 1 : bytes); }
  void free(void* p) noexcept { std::free(p); }
  void copy(void* dst, int32_t, const void* src, int32_t, size_t bytes) {
    std::memmove(dst, src, bytes);
  }
  void synchronize() {}
  void add(ts_tensor& inout, const ts_tensor& addend) {
    if (inout.dtype != TS_F32 || addend.dtype != TS_F32)
      throw tessera::sdk::Unsupported("fixture backend: add takes f32 only");
    if (tessera::sdk::numel(inout) != tessera::sdk::numel(addend))
      throw std::invalid_argument("fixture backend: add of different sizes");
    for (int64_t i = 0; i < tessera::sdk::numel(inout); ++i)
      static_cast<float*>(inout.data)[i] += static_cast<const float*>(addend.data)[i];
  }
  [[noreturn]] static void unsupported(const char* op) {
    throw tessera::sdk::Unsupported(std::string("fixture backend: no ") + op);
  }
  void convert(const ts_tensor&, ts_tensor&) { unsupported("convert"); }
  void rmsnorm(const ts_tensor&, const ts_tensor&, double, ts_tensor&) { unsupported("rmsnorm"); }
  void embed(const ts_tensor&, const int32_t*, int32_t, ts_tensor&) { unsupported("embed"); }
  void matmul(const ts_tensor&, const ts_tensor&, ts_tensor&) { unsupported("matmul"); }
  void argmax(const ts_tensor&, int32_t*) { unsupported("argmax"); }
  void sample(const ts_tensor&, float, const float*, int32_t*) { unsupported("sample"); }
};

const ts_backend_vtable kVtable = tessera::sdk::backend_vtable<HostBackend>();
const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_BACKEND, "host", TS_DEVICE_CPU, &kVtable)};

}  // namespace

TESSERA_PLUGIN("fixture-backend", "0.1.0", kProviders)
