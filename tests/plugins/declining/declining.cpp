// An ffn "swiglu" provider that outbids the CPU plugin and then declines (see
// CMakeLists.txt for the two ways). Its reasons name the parameters it was shown, so a
// test can tell the capability query saw the block's own configuration.
#include <stdexcept>
#include <string>
#include <tessera/plugin.hpp>

namespace {

std::string shown(const ts_block_config& config) {
  const tessera::sdk::Params params(config.params);
  return "layer " + std::to_string(config.layer) + ", intermediate_size " +
         std::to_string(params.get_int("intermediate_size", -1));
}

struct Declining {
  explicit Declining(const ts_block_config& config) {
#if defined(FIXTURE_DECLINE_CREATE)
    throw tessera::sdk::Unsupported("create declines (fixture): " + shown(config));
#else
    throw std::logic_error("create must not be reached after supports declined: " + shown(config));
#endif
  }
  ts_block_info info() const {
    return ts_block_info{};
  }
  void forward(const ts_block_io&) {}
#if defined(FIXTURE_DECLINE_SUPPORTS)
  static void supports(const ts_block_config& config) {
    throw tessera::sdk::Unsupported("supports declines (fixture): " + shown(config));
  }
#endif
};

int32_t outbid() {
  return 1000;
}

const ts_block_vtable kVtable = tessera::sdk::block_vtable<Declining>();
const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_FFN, "swiglu", TS_DEVICE_CPU, &kVtable, &outbid)};

}  // namespace

#if defined(FIXTURE_DECLINE_SUPPORTS)
TESSERA_PLUGIN("fixture-declines-supports", "0.0.1", kProviders)
#else
TESSERA_PLUGIN("fixture-declines-create", "0.0.1", kProviders)
#endif
