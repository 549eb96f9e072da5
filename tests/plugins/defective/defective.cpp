// Plugins that are wrong in exactly one way (chosen by FIXTURE_DEFECT_*), so the
// tests can check that the host refuses each with a message naming the defect.
// The descriptor is written by hand rather than with TESSERA_PLUGIN so that its
// version fields and sizes can be wrong.
#include <cstddef>
#include <tessera/plugin.hpp>

namespace {

struct Zero {
  explicit Zero(const ts_block_config&) {}
  ts_block_info info() const { return ts_block_info{}; }
  void forward(const ts_block_io&) {}
};

ts_block_vtable make_vtable() {
  ts_block_vtable v = tessera::sdk::block_vtable<Zero>();
#if defined(FIXTURE_DEFECT_SMALL_VTABLE)
  v.struct_size = static_cast<uint32_t>(offsetof(ts_block_vtable, info));  // ends before info
#elif defined(FIXTURE_DEFECT_MISSING_FORWARD)
  v.forward = nullptr;
#endif
  return v;
}

const ts_block_vtable kVtable = make_vtable();

#if defined(FIXTURE_DEFECT_NULL_VTABLE)
const void* const kProviderVtable = nullptr;
#else
const void* const kProviderVtable = &kVtable;
#endif

const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_FFN, "fixture-defective", TS_DEVICE_CPU, kProviderVtable),
#if defined(FIXTURE_DEFECT_DUP_PROVIDER)
    tessera::sdk::provider(TS_KIND_FFN, "fixture-other", TS_DEVICE_CPU, &kVtable),
    tessera::sdk::provider(TS_KIND_FFN, "fixture-defective", TS_DEVICE_CPU, &kVtable),
#endif
};

#if defined(FIXTURE_DEFECT_ABI_MAJOR_NEXT)
constexpr uint16_t kMajor = TS_ABI_MAJOR + 1;
#else
constexpr uint16_t kMajor = TS_ABI_MAJOR;
#endif
#if defined(FIXTURE_DEFECT_ABI_MINOR_NEXT)
constexpr uint16_t kMinor = TS_ABI_MINOR + 1;
#else
constexpr uint16_t kMinor = TS_ABI_MINOR;
#endif
#if defined(FIXTURE_DEFECT_SMALL_DESCRIPTOR)
constexpr uint32_t kDescriptorSize = offsetof(ts_plugin_descriptor, n_providers);
#else
constexpr uint32_t kDescriptorSize = sizeof(ts_plugin_descriptor);
#endif
#if defined(FIXTURE_DEFECT_DUP_NAME_A) || defined(FIXTURE_DEFECT_DUP_NAME_B)
constexpr const char* kName = "fixture-dup-name";
#else
constexpr const char* kName = "fixture-defective";
#endif

const ts_plugin_descriptor kDescriptor{
    kDescriptorSize, kMajor,  kMinor,
    kName,           "0.0.1", static_cast<int32_t>(sizeof(kProviders) / sizeof(kProviders[0])),
    kProviders};

}  // namespace

#if defined(FIXTURE_DEFECT_DATA_ENTRY)
// The entry as data, as an ABI 1.x plugin exported it (a Boost.DLL alias: a pointer to
// the function); a host that called it would jump into the pointer's bytes.
extern "C" TS_PLUGIN_EXPORT const void* const tessera_plugin_as_data __asm__("tessera_plugin");
const void* const tessera_plugin_as_data = &kDescriptor;
#else
extern "C" TS_PLUGIN_EXPORT const ts_plugin_descriptor* tessera_plugin(void) {
#if defined(FIXTURE_DEFECT_NULL_DESCRIPTOR)
  return nullptr;
#else
  return &kDescriptor;
#endif
}
#endif
