// A trivial FFN, y = scale * x, where scale is the block parameter "scale"
// (default 2). Enough for the tests to create a block through the registry and
// check that a forward call really reaches plugin code.
#include <stdexcept>
#include <tessera/plugin.hpp>

namespace {

class ScaleFfn {
 public:
  explicit ScaleFfn(const ts_block_config& config)
      : hidden_(config.hidden),
        scale_(static_cast<float>(tessera::sdk::Params(config.params).get_float("scale", 2.0))) {
    if (hidden_ <= 0) throw std::invalid_argument("fixture-ffn: hidden must be positive");
  }

  ts_block_info info() const {
    ts_block_info out{};
    out.kv_dtype = TS_F32;
    return out;
  }

  void forward(const ts_block_io& io) {
    const auto* x = static_cast<const float*>(io.x->data);
    auto* y = static_cast<float*>(io.y->data);
    const int64_t n = io.x->shape[0] * hidden_;
    for (int64_t i = 0; i < n; ++i) y[i] = scale_ * x[i];
  }

 private:
  int32_t hidden_;
  float scale_;
};

const ts_block_vtable kVtable = tessera::sdk::block_vtable<ScaleFfn>();

#ifdef FIXTURE_SCORED
int32_t high_score() {
  return 5;
}
int32_t cannot_run_here() {
  return 0;
}
const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CPU, &kVtable, high_score),
    tessera::sdk::provider(TS_KIND_FFN, "fixture-unrunnable", TS_DEVICE_CPU, &kVtable,
                           cannot_run_here)};
#else
const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CPU, &kVtable)};
#endif

}  // namespace

#ifdef FIXTURE_SCORED
TESSERA_PLUGIN("fixture-ffn-scored", "0.2.0", kProviders)
#else
TESSERA_PLUGIN("fixture-ffn", "0.1.0", kProviders)
#endif
