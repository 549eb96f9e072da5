// Links Tessera::engine and Tessera::reference only: a swiglu block from the CPU plugin
// against the naive reference, with no file format in the binary.
#include <tessera/engine/block.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/tensor.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/reference/reference.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

namespace {

using Weights = std::map<std::string, tessera::Tensor>;

int lookup(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
  const auto* weights = static_cast<const Weights*>(ctx);
  const auto it = weights->find(name);
  if (it == weights->end()) {
    std::snprintf(err->message, sizeof(err->message), "no weight '%s'", name);
    return TS_ERROR;
  }
  *out = it->second.view();
  return TS_OK;
}

tessera::Tensor random_matrix(tessera::Rng& rng, int64_t rows, int64_t cols) {
  tessera::Tensor t({rows, cols}, TS_F32);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<float>()[i] = rng.normal() / std::sqrt(static_cast<float>(cols));
  return t;
}

}  // namespace

int main() {
  using namespace tessera;
  try {
    constexpr int64_t hidden = 48, inter = 80, tokens = 5;
    PluginRegistry registry;
    registry.add_search_path(TESSERA_PLUGIN_DIR);
    registry.load_all();
    Rng rng(11);
    Weights weights;
    weights["gate_proj.weight"] = random_matrix(rng, inter, hidden);
    weights["up_proj.weight"] = random_matrix(rng, inter, hidden);
    weights["down_proj.weight"] = random_matrix(rng, hidden, inter);
    const ts_weights view{&weights, lookup};
    ParamList params;
    params.set("intermediate_size", int64_t{inter});
    ThreadPool pool(1);
    ts_block_config config{};
    config.struct_size = sizeof(config);
    config.kind = TS_KIND_FFN;
    config.hidden = static_cast<int32_t>(hidden);
    config.dtype = TS_F32;
    config.device = TS_DEVICE_CPU;
    config.params = params.c_params();
    config.weights = &view;
    config.host = pool.host();
    Block block(registry.find(TS_KIND_FFN, "swiglu", TS_DEVICE_CPU), config, "swiglu");

    Tensor x({tokens, hidden}, TS_F32), y({tokens, hidden}, TS_F32);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = rng.normal();
    const std::vector<int32_t> slots{0}, offsets{0, tokens}, positions{0, 1, 2, 3, 4};
    ts_batch batch{sizeof(ts_batch), 1,       tokens, slots.data(), offsets.data(),
                   positions.data(), nullptr, 0u};
    const ts_tensor xv = x.view();
    ts_tensor yv = y.view();
    const ts_block_io io{sizeof(ts_block_io), &xv, &yv, &batch, nullptr};
    block.forward(io);

    std::vector<float> want(static_cast<size_t>(tokens * hidden));
    reference::swiglu(x.data<float>(), weights["gate_proj.weight"].data<float>(),
                      weights["up_proj.weight"].data<float>(),
                      weights["down_proj.weight"].data<float>(), tokens, hidden, inter,
                      want.data());
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(double(y.data<float>()[i]) - double(want[i])));
      max_ref = std::max(max_ref, std::fabs(double(want[i])));
    }
    const bool ok = max_diff <= 1e-4 * max_ref;
    std::printf("reference alone: swiglu max |diff| %.2e (largest |reference| %.2e): %s\n",
                max_diff, max_ref, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reference alone: %s\n", e.what());
    return 1;
  }
}
