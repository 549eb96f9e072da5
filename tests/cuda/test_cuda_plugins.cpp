// The CUDA plugin libraries as the host sees them: loading (ABI 1.1, the backend kind),
// the no-device path (score 0, TS_UNSUPPORTED saying "no CUDA device"), and whole blocks on
// the device through the core's Backend against the CPU references. The conformance grid
// (tessera plugin-check, run by the cuda.plugin_check.* tests) covers more shapes; these
// cases add long prefills, forced decode splits and the fast-versus-naive kernel choice.
#include "cuda_test_util.hpp"

#include <tessera/engine/backend.hpp>
#include <tessera/engine/block.hpp>
#include <tessera/engine/kv_cache.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/tensor.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/reference/reference.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace tessera::cuda::test {
namespace {

const char* const kLibraries[] = {"libtessera-attention-cuda.so", "libtessera-ffn-cuda.so",
                                  "libtessera-backend-cuda.so"};

PluginRegistry& cuda_plugins() {
  static PluginRegistry* registry = [] {
    auto* r = new PluginRegistry();
    for (const char* lib : kLibraries) r->load(std::string(TESSERA_PLUGIN_DIR) + "/" + lib);
    return r;
  }();
  return *registry;
}

TEST(CudaPlugins, LoadAtTheHostAbiWithTheirProviders) {
  const PluginRegistry& r = cuda_plugins();
  std::map<std::string, std::vector<std::string>> seen;
  for (const PluginInfo& p : r.plugins()) {
    EXPECT_EQ(p.abi_major, TS_ABI_MAJOR);
    EXPECT_EQ(p.abi_minor, TS_ABI_MINOR);
    for (const ts_provider* prov : p.providers) {
      EXPECT_EQ(prov->device, TS_DEVICE_CUDA) << p.name;
      seen[p.name].push_back(std::string(kind_name(prov->kind)) + " " + prov->name);
    }
  }
  EXPECT_EQ(seen["tessera-attention-cuda"],
            (std::vector<std::string>{"attention gqa", "attention linear", "attention noop"}));
  EXPECT_EQ(seen["tessera-ffn-cuda"],
            (std::vector<std::string>{"ffn swiglu", "ffn linear", "ffn noop"}));
  EXPECT_EQ(seen["tessera-backend-cuda"], (std::vector<std::string>{"backend cuda"}));
}

// What CI machines (nvcc, no GPU) exercise: every provider declines clearly.
TEST(CudaPlugins, WithoutADeviceEveryProviderDeclines) {
  if (device_count() > 0)
    GTEST_SKIP() << "a CUDA device is present; this checks the no-device path";
  for (const PluginInfo& p : cuda_plugins().plugins())
    for (const ts_provider* prov : p.providers) {
      ASSERT_NE(prov->score, nullptr);
      EXPECT_EQ(prov->score(), 0) << prov->name;
      ts_error err{};
      void* self = nullptr;
      int status = TS_OK;
      if (prov->kind == TS_KIND_BACKEND) {
        ts_backend_config config{};
        config.struct_size = sizeof(config);
        status = static_cast<const ts_backend_vtable*>(prov->vtable)->create(&config, &self, &err);
      } else {
        ts_block_config config{};
        config.struct_size = sizeof(config);
        config.kind = prov->kind;
        config.hidden = 64;
        config.dtype = TS_BF16;
        config.device = TS_DEVICE_CUDA;
        status = static_cast<const ts_block_vtable*>(prov->vtable)->create(&config, &self, &err);
      }
      EXPECT_EQ(status, TS_UNSUPPORTED) << prov->name;
      EXPECT_EQ(self, nullptr);
      EXPECT_NE(std::string(err.message).find("no CUDA device"), std::string::npos)
          << prov->name << ": " << err.message;
    }
}

// ------------------------------------------------------------- on a device

// A backend, its stream lent to blocks, and weights held both ways.
class DeviceBlocks : public ::testing::Test {
 protected:
  void SetUp() override {
    TESSERA_REQUIRE_CUDA_DEVICE();
    backend_ = std::make_unique<Backend>(
        cuda_plugins().find(TS_KIND_BACKEND, "cuda", TS_DEVICE_CUDA), 0, pool_.host());
    host_ = *pool_.host();
    host_.device_context = backend_->context();
  }
  void TearDown() override {
    blocks_.clear();
    device_weights_.clear();
    backend_.reset();
  }

  // Adds a weight: rounded to bf16 values on the host, uploaded as bf16.
  const float* weight(const std::string& name, int64_t rows, int64_t cols, uint32_t seed) {
    const std::vector<float> v =
        random_bf16_values(size_t(rows * cols), seed, 1.0f / std::sqrt(float(cols)));
    Tensor t({rows, cols}, TS_F32);
    std::copy(v.begin(), v.end(), t.data<float>());
    host_weights_[name] = t;
    device_weights_[name] = backend_->upload(t, TS_BF16);
    return host_weights_[name].data<float>();
  }

  Block& make(ts_kind kind, const std::string& name, int32_t hidden, const ParamList& params) {
    weights_abi_ =
        ts_weights{&device_weights_, [](void* ctx, const char* n, ts_tensor* out, ts_error* err) {
                     auto* w = static_cast<std::map<std::string, Tensor>*>(ctx);
                     const auto it = w->find(n);
                     if (it == w->end()) {
                       std::snprintf(err->message, sizeof(err->message), "no %s", n);
                       return int(TS_ERROR);
                     }
                     *out = it->second.view();
                     return int(TS_OK);
                   }};
    const ts_params cp = params.c_params();
    ts_block_config cfg{};
    cfg.struct_size = sizeof(cfg);
    cfg.kind = kind;
    cfg.hidden = hidden;
    cfg.dtype = TS_BF16;
    cfg.device = TS_DEVICE_CUDA;
    cfg.params = cp;
    cfg.weights = &weights_abi_;
    cfg.comm = nullptr;  // unsharded
    cfg.host = &host_;
    blocks_.push_back(std::make_unique<Block>(cuda_plugins().find(kind, name, TS_DEVICE_CUDA), cfg,
                                              "test " + name));
    return *blocks_.back();
  }

  // y for x (bf16 values) through `block`.
  std::vector<float> forward(Block& block, const std::vector<float>& x, int32_t hidden,
                             const ts_batch& batch, ts_kv_layer* kv) {
    Tensor xt({batch.n_tokens, hidden}, TS_F32);
    std::copy(x.begin(), x.end(), xt.data<float>());
    const Tensor xd = backend_->upload(xt, TS_BF16);
    Tensor poison({batch.n_tokens, hidden}, TS_F32);
    std::fill(poison.data<float>(), poison.data<float>() + poison.numel(), NAN);
    Tensor yd = backend_->upload(poison, TS_BF16);
    const ts_tensor xv = xd.view();
    ts_tensor yv = yd.view();
    const ts_block_io io{sizeof(io), &xv, &yv, &batch, kv};
    block.forward(io);
    const Tensor y = backend_->download(yd).to(TS_F32);
    return {y.data<float>(), y.data<float>() + y.numel()};
  }

  ThreadPool pool_{0};
  ts_host host_{};
  std::unique_ptr<Backend> backend_;
  std::map<std::string, Tensor> host_weights_, device_weights_;
  ts_weights weights_abi_{};
  std::vector<std::unique_ptr<Block>> blocks_;
};

struct GqaShape {
  int32_t hidden, heads, kv, head_dim;
};

void PrintTo(const GqaShape& s, std::ostream* os) {
  *os << "hidden " << s.hidden << ", heads " << s.heads << ", kv_heads " << s.kv << ", head_dim "
      << s.head_dim;
}

class DeviceGqa : public DeviceBlocks, public ::testing::WithParamInterface<GqaShape> {};

// Two sequences (prefills of 300 and 67 tokens), then decode steps with forced splits,
// against reference::gqa_attention; the same block built with attention_kernels =
// "reference" (the naive kernel everywhere) must agree too.
TEST_P(DeviceGqa, LongPrefillThenDecodeMatchesCpuReference) {
  const auto [hidden, heads, kv, hd] = GetParam();
  const int64_t qdim = int64_t{heads} * hd, kvdim = int64_t{kv} * hd;
  const reference::GqaWeights w{
      weight("q_proj.weight", qdim, hidden, 1), weight("k_proj.weight", kvdim, hidden, 2),
      weight("v_proj.weight", kvdim, hidden, 3), weight("o_proj.weight", hidden, qdim, 4)};
  const int32_t capacity = 320;
  std::vector<Block*> blocks;
  for (const char* kernels : {"fast", "reference"}) {
    ParamList params;
    params.set("num_heads", int64_t{heads});
    params.set("head_dim", int64_t{hd});
    params.set("kv_heads", int64_t{kv});
    params.set("rope_theta", 500000.0);
    params.set("decode_splits", int64_t{5});
    params.set("attention_kernels", std::string(kernels));
    blocks.push_back(&make(TS_KIND_ATTENTION, "gqa", hidden, params));
  }
  std::vector<std::unique_ptr<KvCache>> caches;
  for (size_t b = 0; b < blocks.size(); ++b)
    caches.push_back(
        std::make_unique<KvCache>(std::vector<KvLayerShape>{KvLayerShape{kv, hd, TS_BF16}}, 2,
                                  capacity, backend_->allocator()));
  std::vector<reference::SequenceKv> ref_kv(2);
  const reference::GqaShape shape{hidden, heads, kv, hd, 500000.0};

  uint32_t seed = 100;
  for (const std::vector<int32_t>& n_new :
       {std::vector<int32_t>{300, 67}, {1, 1}, {1, 2}, {1, 1}}) {
    std::vector<int32_t> slots{0, 1}, offsets{0, n_new[0], n_new[0] + n_new[1]}, positions;
    for (int32_t s = 0; s < 2; ++s)
      for (int32_t i = 0; i < n_new[size_t(s)]; ++i) positions.push_back(caches[0]->length(s) + i);
    const int32_t total = offsets[2];
    const std::vector<float> x = random_bf16_values(size_t(total) * hidden, seed++);
    const ts_batch batch{sizeof(ts_batch), 2,       total, slots.data(), offsets.data(),
                         positions.data(), nullptr, 0u};
    std::vector<float> want(x.size());
    for (int32_t s = 0; s < 2; ++s)
      reference::gqa_attention(shape, w, x.data() + size_t(offsets[size_t(s)]) * hidden,
                               n_new[size_t(s)], positions.data() + offsets[size_t(s)], nullptr,
                               ref_kv[size_t(s)],
                               want.data() + size_t(offsets[size_t(s)]) * hidden);
    for (size_t b = 0; b < blocks.size(); ++b) {
      ts_kv_layer layer = caches[b]->layer_view(0);
      const std::vector<float> got = forward(*blocks[b], x, hidden, batch, &layer);
      EXPECT_LE(relative_error(got, want), kTolBlock)
          << (b == 0 ? "fast" : "reference") << " kernels, step of " << n_new[0] << "+" << n_new[1];
      for (int32_t s = 0; s < 2; ++s)
        caches[b]->set_length(s, caches[b]->length(s) + n_new[size_t(s)]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, DeviceGqa,
                         ::testing::Values(GqaShape{512, 8, 8, 64}, GqaShape{512, 8, 1, 64},
                                           GqaShape{1024, 8, 2, 128}, GqaShape{96, 6, 3, 16},
                                           GqaShape{240, 4, 2, 60}),
                         [](const ::testing::TestParamInfo<GqaShape>& p) {
                           return "hidden" + std::to_string(p.param.hidden) + "_h" +
                                  std::to_string(p.param.heads) + "_kv" +
                                  std::to_string(p.param.kv) + "_d" +
                                  std::to_string(p.param.head_dim);
                         });

TEST_F(DeviceBlocks, SwigluLinearAndNoopMatchCpuReference) {
  const int32_t hidden = 256, inter = 688, n = 37;
  const float* gate = weight("gate_proj.weight", inter, hidden, 11);
  const float* up = weight("up_proj.weight", inter, hidden, 12);
  const float* down = weight("down_proj.weight", hidden, inter, 13);
  const float* lin = weight("linear_mlp.weight", hidden, hidden, 14);
  ParamList params;
  params.set("intermediate_size", int64_t{inter});
  Block& swiglu = make(TS_KIND_FFN, "swiglu", hidden, params);
  Block& linear = make(TS_KIND_FFN, "linear", hidden, params);
  Block& noop = make(TS_KIND_FFN, "noop", hidden, params);
  EXPECT_TRUE(noop.identity());
  std::vector<int32_t> slots{0}, offsets{0, n}, positions(n, 0);
  const ts_batch batch{sizeof(ts_batch), 1,       n, slots.data(), offsets.data(),
                       positions.data(), nullptr, 0u};
  const std::vector<float> x = random_bf16_values(size_t(n) * hidden, 15);
  std::vector<float> want(x.size());
  reference::swiglu(x.data(), gate, up, down, n, hidden, inter, want.data());
  EXPECT_LE(relative_error(forward(swiglu, x, hidden, batch, nullptr), want), kTolBlock);
  reference::matmul_nt(x.data(), lin, n, hidden, hidden, want.data());
  EXPECT_LE(relative_error(forward(linear, x, hidden, batch, nullptr), want), kTolBf16);
  for (float v : forward(noop, x, hidden, batch, nullptr)) ASSERT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace tessera::cuda::test
