// The parallel-local plugin: a world-1 communicator whose collectives are identities.
#include <gtest/gtest.h>
#include <tessera/abi.h>

#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS
#endif
#include <boost/dll/import.hpp>
#include <filesystem>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

namespace {

const ts_parallel_vtable& local_vtable() {
  static auto entry = boost::dll::import<const ts_plugin_descriptor*()>(
      std::filesystem::path(TESSERA_PLUGIN_DIR "/libtessera-parallel-local.so"), "tessera_plugin");
  const ts_plugin_descriptor* plugin = entry();
  for (int32_t i = 0; i < plugin->n_providers; ++i)
    if (plugin->providers[i].kind == TS_KIND_PARALLEL &&
        std::string_view(plugin->providers[i].name) == "local")
      return *static_cast<const ts_parallel_vtable*>(plugin->providers[i].vtable);
  throw std::runtime_error("parallel-local has no provider 'local'");
}

ts_param int_param(const char* key, int64_t value) {
  ts_param p{};
  p.key = key;
  p.type = TS_PARAM_INT;
  p.i = value;
  return p;
}

// A created provider and its communicator.
class Local {
 public:
  explicit Local(const std::vector<ts_param>& params = {}) {
    const ts_params list{params.data(), static_cast<int32_t>(params.size())};
    ts_error err{};
    if (local_vtable().create(&list, nullptr, &self_, &err) != TS_OK)
      throw std::runtime_error(err.message);
    if (local_vtable().communicator(self_, &comm_, &err) != TS_OK)
      throw std::runtime_error(err.message);
  }
  ~Local() { local_vtable().destroy(self_); }
  Local(const Local&) = delete;
  Local& operator=(const Local&) = delete;
  const ts_comm& comm() const { return comm_; }

 private:
  void* self_ = nullptr;
  ts_comm comm_{};
};

std::string create_error(const std::vector<ts_param>& params) {
  const ts_params list{params.data(), static_cast<int32_t>(params.size())};
  void* self = nullptr;
  ts_error err{};
  if (local_vtable().create(&list, nullptr, &self, &err) == TS_OK) {
    local_vtable().destroy(self);
    return "";
  }
  return err.message;
}

ts_tensor view(void* data, ts_dtype dtype, std::vector<int64_t> shape,
               std::vector<int64_t> stride = {}) {
  ts_tensor t{};
  t.data = data;
  t.dtype = dtype;
  t.device = TS_DEVICE_CPU;
  t.ndim = static_cast<int32_t>(shape.size());
  int64_t running = 1;
  for (int32_t d = t.ndim - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.stride[d] = stride.empty() ? running : stride[d];
    running *= shape[d];
  }
  return t;
}

TEST(ParallelLocal, IsWorldOneRankZero) {
  Local local;
  EXPECT_EQ(local.comm().rank, 0);
  EXPECT_EQ(local.comm().world, 1);
  EXPECT_EQ(local.comm().struct_size, sizeof(ts_comm));
  EXPECT_NE(local.comm().all_reduce_sum, nullptr);
  EXPECT_NE(local.comm().all_gather, nullptr);
  EXPECT_NE(local.comm().reduce_scatter_sum, nullptr);
  EXPECT_NE(local.comm().broadcast, nullptr);
  Local explicit_world({int_param("world", 1), int_param("rank", 0)});
  EXPECT_EQ(explicit_world.comm().world, 1);
}

TEST(ParallelLocal, AllReduceAndBroadcastLeaveTheTensorUnchanged) {
  Local local;
  std::vector<float> data{1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1.0f};
  const std::vector<float> before = data;
  ts_tensor t = view(data.data(), TS_F32, {2, 3});
  ts_error err{};
  ASSERT_EQ(local.comm().all_reduce_sum(local.comm().ctx, &t, nullptr, &err), TS_OK) << err.message;
  EXPECT_EQ(data, before);
  ASSERT_EQ(local.comm().broadcast(local.comm().ctx, &t, 0, nullptr, &err), TS_OK) << err.message;
  EXPECT_EQ(data, before);
  EXPECT_EQ(local.comm().broadcast(local.comm().ctx, &t, 1, nullptr, &err), TS_ERROR);
  EXPECT_NE(std::string(err.message).find("root 1"), std::string::npos) << err.message;
  EXPECT_EQ(local.comm().all_reduce_sum(local.comm().ctx, nullptr, nullptr, &err), TS_ERROR);
}

TEST(ParallelLocal, GatherAndReduceScatterCopyInToOut) {
  Local local;
  std::vector<int32_t> in(24);
  std::iota(in.begin(), in.end(), 100);
  for (auto* fn : {local.comm().all_gather, local.comm().reduce_scatter_sum}) {
    std::vector<int32_t> out(24, -1);
    ts_tensor tin = view(in.data(), TS_I32, {2, 3, 4});
    ts_tensor tout = view(out.data(), TS_I32, {2, 3, 4});
    ts_error err{};
    ASSERT_EQ(fn(local.comm().ctx, &tin, &tout, 1, nullptr, &err), TS_OK) << err.message;
    EXPECT_EQ(out, in);
  }
}

TEST(ParallelLocal, GatherFollowsStrides) {
  Local local;
  // in: the transpose of a row-major 3x2 matrix, seen as 2x3 through strides.
  std::vector<float> storage{1, 2, 3, 4, 5, 6};  // [[1,2],[3,4],[5,6]]
  std::vector<float> out(6, 0);
  ts_tensor tin = view(storage.data(), TS_F32, {2, 3}, {1, 2});
  ts_tensor tout = view(out.data(), TS_F32, {2, 3});
  ts_error err{};
  ASSERT_EQ(local.comm().all_gather(local.comm().ctx, &tin, &tout, 0, nullptr, &err), TS_OK) << err.message;
  EXPECT_EQ(out, (std::vector<float>{1, 3, 5, 2, 4, 6}));
}

TEST(ParallelLocal, GatherRejectsMismatchedTensors) {
  Local local;
  std::vector<float> a(6), b(8);
  std::vector<uint16_t> h(6);
  ts_tensor ta = view(a.data(), TS_F32, {2, 3});
  ts_tensor tb = view(b.data(), TS_F32, {2, 4});
  ts_tensor th = view(h.data(), TS_F16, {2, 3});
  ts_error err{};
  EXPECT_EQ(local.comm().all_gather(local.comm().ctx, &ta, &tb, 1, nullptr, &err), TS_ERROR);
  EXPECT_NE(std::string(err.message).find("[2, 4]"), std::string::npos) << err.message;
  EXPECT_NE(std::string(err.message).find("[2, 3]"), std::string::npos) << err.message;
  EXPECT_EQ(local.comm().all_gather(local.comm().ctx, &ta, &th, 1, nullptr, &err), TS_ERROR);
  EXPECT_NE(std::string(err.message).find("f16"), std::string::npos) << err.message;
  EXPECT_EQ(local.comm().reduce_scatter_sum(local.comm().ctx, &ta, &ta, 2, nullptr, &err), TS_ERROR);
  EXPECT_NE(std::string(err.message).find("dim 2"), std::string::npos) << err.message;
}

TEST(ParallelLocal, RefusesOtherWorldsAndUnknownParameters) {
  std::string error = create_error({int_param("world", 2)});
  EXPECT_NE(error.find("'world' is 2"), std::string::npos) << error;
  EXPECT_NE(error.find("expected 1"), std::string::npos) << error;
  error = create_error({int_param("rank", 1)});
  EXPECT_NE(error.find("'rank' is 1"), std::string::npos) << error;
  error = create_error({int_param("wrold", 1)});
  EXPECT_NE(error.find("unknown parameter 'wrold'"), std::string::npos) << error;
  EXPECT_EQ(create_error({int_param("world", 1)}), "");
}

}  // namespace
