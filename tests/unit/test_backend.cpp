// The backend kind (ABI 1.1) without a GPU: the registry loads a backend provider, and the
// core's Backend wrapper allocates tensors through it, copies both ways, forwards an
// operation and turns TS_UNSUPPORTED into an error naming the backend.
#include <tessera/engine/backend.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/kv_cache.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/tensor.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace tessera {
namespace {

const std::filesystem::path kFixture =
    std::filesystem::path(TESSERA_FIXTURE_PLUGIN_DIR) / "libtessera-fixture-backend.so";

TEST(Backend, RegistryLoadsTheBackendKind) {
  PluginRegistry registry;
  const PluginInfo& info = registry.load(kFixture);
  EXPECT_EQ(info.abi_minor, TS_ABI_MINOR);
  ASSERT_EQ(info.providers.size(), 1u);
  EXPECT_EQ(info.providers[0]->kind, TS_KIND_BACKEND);
  EXPECT_STREQ(kind_name(TS_KIND_BACKEND), "backend");
  const ProviderRef ref = registry.find(TS_KIND_BACKEND, "host", TS_DEVICE_CPU);
  EXPECT_EQ(ref.plugin_name(), "fixture-backend");
}

TEST(Backend, AllocatesCopiesAndRuns) {
  PluginRegistry registry;
  registry.load(kFixture);
  Backend backend(registry.find(TS_KIND_BACKEND, "host", TS_DEVICE_CPU), 0, nullptr);
  EXPECT_STREQ(backend.device_info().name, "fixture host memory");

  Tensor host({2, 3}, TS_F32);
  for (int i = 0; i < 6; ++i) host.data<float>()[i] = static_cast<float>(i);
  Tensor on_backend = backend.upload(host, TS_F32);
  ts_tensor view = on_backend.view();
  backend.add(view, host.view());
  const Tensor back = backend.download(on_backend);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back.data<float>()[i], 2.0f * static_cast<float>(i));

  // A KV cache in the backend's memory.
  KvCache cache({KvLayerShape{2, 8, TS_BF16}}, 1, 4, backend.allocator());
  EXPECT_EQ(cache.layer_view(0).k.shape[3], 8);

  try {
    backend.argmax(view, nullptr);
    FAIL() << "argmax should be unsupported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backend 'host' (fixture-backend): argmax: unsupported"),
              std::string::npos)
        << e.what();
  }
}

TEST(Backend, AnAbsentDeviceIsBackendUnavailable) {
  PluginRegistry registry;
  registry.load(kFixture);
  EXPECT_THROW(Backend(registry.find(TS_KIND_BACKEND, "host", TS_DEVICE_CPU), 3, nullptr),
               BackendUnavailable);
}

}  // namespace
}  // namespace tessera
