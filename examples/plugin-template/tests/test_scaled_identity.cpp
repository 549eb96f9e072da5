// Loads the built plugin through its exported C function, tessera_plugin, then
// checks the block against a naive reference and checks that bad input comes back
// as an error status with a message, never an exception. Needs only the SDK and
// the C library's dlopen.
#include <dlfcn.h>
#include <tessera/abi.h>
#include <tessera/dtype.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int g_failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++g_failures;
}

ts_tensor matrix(std::vector<float>& data, int64_t rows, int64_t cols) {
  ts_tensor t{};
  t.data = data.data();
  t.dtype = TS_F32;
  t.device = TS_DEVICE_CPU;
  t.ndim = 2;
  t.shape[0] = rows;
  t.shape[1] = cols;
  t.stride[0] = cols;
  t.stride[1] = 1;
  return t;
}

struct Config {
  std::vector<ts_param> items;
  ts_block_config config{};

  Config(int32_t hidden, const double* scale) {
    ts_param hidden_param{};
    hidden_param.key = "hidden_size";
    hidden_param.type = TS_PARAM_INT;
    hidden_param.i = hidden;
    items.push_back(hidden_param);
    if (scale != nullptr) {
      ts_param scale_param{};
      scale_param.key = "scale";
      scale_param.type = TS_PARAM_FLOAT;
      scale_param.f = *scale;
      items.push_back(scale_param);
    }
    config.struct_size = sizeof(ts_block_config);
    config.kind = TS_KIND_FFN;
    config.hidden = hidden;
    config.dtype = TS_F32;
    config.device = TS_DEVICE_CPU;
    config.params = ts_params{items.data(), static_cast<int32_t>(items.size())};
  }
};

}  // namespace

int main() {
  void* library = dlopen(TEMPLATE_PLUGIN_FILE, RTLD_LAZY | RTLD_LOCAL);
  check(library != nullptr, "the plugin library loads");
  if (library == nullptr) return 1;
  const auto entry = reinterpret_cast<ts_plugin_entry_fn>(dlsym(library, TS_PLUGIN_ENTRY));
  check(entry != nullptr, "the plugin exports tessera_plugin");
  if (entry == nullptr) return 1;
  const ts_plugin_descriptor* plugin = entry();
  check(plugin != nullptr && plugin->struct_size >= sizeof(ts_plugin_descriptor),
        "descriptor present and complete");
  check(plugin->abi_major == TS_ABI_MAJOR, "ABI major matches the SDK");
  check(std::strcmp(plugin->name, "template-scaled-identity") == 0, "plugin name");
  check(plugin->n_providers == 1, "one provider");
  const ts_provider& provider = plugin->providers[0];
  check(provider.kind == TS_KIND_FFN && std::strcmp(provider.name, "scaled-identity") == 0 &&
            provider.device == TS_DEVICE_CPU,
        "provider is FFN 'scaled-identity' on the CPU");
  const auto* vtable = static_cast<const ts_block_vtable*>(provider.vtable);
  check(vtable->struct_size >= sizeof(ts_block_vtable) && vtable->create && vtable->destroy &&
            vtable->info && vtable->forward,
        "vtable complete");

  // Forward against the naive reference y = scale * x.
  const int32_t hidden = 8;
  const int64_t tokens = 37;  // more than one parallel chunk would hold
  const double scale = -0.75;
  Config config(hidden, &scale);
  ts_error err{};
  void* block = nullptr;
  check(vtable->create(&config.config, &block, &err) == TS_OK,
        "create: " + std::string(err.message));
  ts_block_info info{};
  check(vtable->info(block, &info, &err) == TS_OK && info.kv_heads == 0 && info.flags == 0 &&
            info.struct_size == sizeof(ts_block_info),
        "info: no cache, not identity");
  std::vector<float> x(static_cast<size_t>(tokens * hidden));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i)) * 3.0f;
  std::vector<float> y(x.size(), 123.0f);
  ts_tensor xt = matrix(x, tokens, hidden);
  ts_tensor yt = matrix(y, tokens, hidden);
  ts_block_io io{sizeof(ts_block_io), &xt, &yt, nullptr, nullptr};
  check(vtable->forward(block, &io, &err) == TS_OK, "forward");
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i)
    worst = std::fmax(worst, std::fabs(static_cast<double>(y[i]) - scale * x[i]));
  check(worst < 1e-6, "forward matches scale * x (max error " + std::to_string(worst) + ")");

  // Wrong shape: an error status naming the expected shape.
  std::vector<float> narrow(static_cast<size_t>(tokens * (hidden - 1)));
  ts_tensor bad = matrix(narrow, tokens, hidden - 1);
  ts_block_io bad_io{sizeof(ts_block_io), &bad, &yt, nullptr, nullptr};
  err = ts_error{};
  check(vtable->forward(block, &bad_io, &err) == TS_ERROR &&
            std::strstr(err.message, "expected [n_tokens, 8]") != nullptr,
        "wrong shape refused: " + std::string(err.message));

  // Wrong dtype: unsupported rather than an error.
  ts_tensor half = xt;
  half.dtype = TS_F16;
  ts_block_io half_io{sizeof(ts_block_io), &half, &yt, nullptr, nullptr};
  err = ts_error{};
  check(vtable->forward(block, &half_io, &err) == TS_UNSUPPORTED &&
            std::strstr(err.message, "f16") != nullptr,
        "f16 activations unsupported: " + std::string(err.message));
  vtable->destroy(block);

  // scale = 0 makes the block an identity the host may skip; no scale means 1.
  const double zero = 0.0;
  Config zero_config(hidden, &zero);
  block = nullptr;
  check(vtable->create(&zero_config.config, &block, &err) == TS_OK &&
            vtable->info(block, &info, &err) == TS_OK && (info.flags & TS_BLOCK_IDENTITY) != 0,
        "scale 0 reports TS_BLOCK_IDENTITY");
  vtable->destroy(block);
  Config default_config(hidden, nullptr);
  block = nullptr;
  check(vtable->create(&default_config.config, &block, &err) == TS_OK &&
            vtable->forward(block, &io, &err) == TS_OK && y[5] == x[5],
        "default scale is 1");
  vtable->destroy(block);

  // A non-finite scale is refused at create time.
  const double infinite = HUGE_VAL;
  Config bad_config(hidden, &infinite);
  block = nullptr;
  err = ts_error{};
  check(vtable->create(&bad_config.config, &block, &err) == TS_ERROR && block == nullptr &&
            std::strstr(err.message, "scale") != nullptr,
        "infinite scale refused: " + std::string(err.message));

  std::printf("%d failure(s)\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
