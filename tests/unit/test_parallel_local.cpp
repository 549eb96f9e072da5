// The parallel-local plugin: a world-1 communicator whose collectives are identities, and
// groups of ranks in one process (one thread per rank).
#include <gtest/gtest.h>
#include <tessera/abi.h>
#include <tessera/dtype.hpp>

#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS
#endif
#include <boost/dll/import.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

const ts_parallel_vtable& local_vtable() {
  static auto entry = boost::dll::import <const ts_plugin_descriptor*()>(
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
  ASSERT_EQ(local.comm().all_gather(local.comm().ctx, &tin, &tout, 0, nullptr, &err), TS_OK)
      << err.message;
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
  EXPECT_EQ(local.comm().reduce_scatter_sum(local.comm().ctx, &ta, &ta, 2, nullptr, &err),
            TS_ERROR);
  EXPECT_NE(std::string(err.message).find("dim 2"), std::string::npos) << err.message;
}

TEST(ParallelLocal, RefusesBadParameters) {
  std::string error = create_error({int_param("world", 2), int_param("rank", 2)});
  EXPECT_NE(error.find("'rank' is 2"), std::string::npos) << error;
  EXPECT_NE(error.find("expected 0..1"), std::string::npos) << error;
  error = create_error({int_param("rank", 1)});
  EXPECT_NE(error.find("'rank' is 1"), std::string::npos) << error;
  error = create_error({int_param("world", 0)});
  EXPECT_NE(error.find("'world' is 0"), std::string::npos) << error;
  error = create_error({int_param("wrold", 1)});
  EXPECT_NE(error.find("unknown parameter 'wrold'"), std::string::npos) << error;
  EXPECT_NE(error.find("world, rank, group, timeout_s"), std::string::npos) << error;
  ts_param timeout{};
  timeout.key = "timeout_s";
  timeout.type = TS_PARAM_FLOAT;
  timeout.f = -1;
  error = create_error({timeout});
  EXPECT_NE(error.find("'timeout_s' is -1"), std::string::npos) << error;
  ts_param group{};
  group.key = "group";
  group.type = TS_PARAM_STRING;
  group.s = "";
  error = create_error({int_param("world", 2), group});
  EXPECT_NE(error.find("'group' is empty"), std::string::npos) << error;
  EXPECT_EQ(create_error({int_param("world", 1)}), "");
}

// ------------------------------------------------------------ several ranks

// The parameters of `rank` of `world` in the group `group`.
struct RankParams {
  std::string group;
  std::vector<ts_param> list;
  RankParams(const std::string& name, int32_t world, int32_t rank, double timeout_s = 0)
      : group(name) {
    list = {int_param("world", world), int_param("rank", rank)};
    ts_param g{};
    g.key = "group";
    g.type = TS_PARAM_STRING;
    g.s = group.c_str();
    list.push_back(g);
    if (timeout_s > 0) {
      ts_param t{};
      t.key = "timeout_s";
      t.type = TS_PARAM_FLOAT;
      t.f = timeout_s;
      list.push_back(t);
    }
  }
};

// `world` ranks of one group, each its own provider object.
class Ranks {
 public:
  Ranks(const std::string& group, int32_t world, double timeout_s = 0) {
    for (int32_t r = 0; r < world; ++r) {
      const RankParams params(group, world, r, timeout_s);
      ranks_.push_back(std::make_unique<Local>(params.list));
    }
  }
  int32_t world() const { return static_cast<int32_t>(ranks_.size()); }
  const ts_comm& comm(int32_t rank) const { return ranks_[static_cast<size_t>(rank)]->comm(); }
  void drop(int32_t rank) { ranks_[static_cast<size_t>(rank)].reset(); }

  // Runs fn(rank) on one thread per rank; returns each rank's status and message.
  template <class F>
  std::vector<std::pair<int, std::string>> run(F&& fn) const {
    std::vector<std::pair<int, std::string>> results(ranks_.size());
    std::vector<std::thread> threads;
    for (int32_t r = 0; r < world(); ++r)
      threads.emplace_back([&, r] {
        ts_error err{};
        const int status = fn(r, comm(r), &err);
        results[static_cast<size_t>(r)] = {status, status == TS_OK ? "" : err.message};
      });
    for (std::thread& t : threads) t.join();
    return results;
  }

 private:
  std::vector<std::unique_ptr<Local>> ranks_;
};

// Values every dtype holds exactly: small integers and halves.
float value_of(int32_t rank, int64_t i) {
  return static_cast<float>((rank + 1) * 3 - static_cast<int>(i % 7)) * 0.5f;
}

void store(void* data, ts_dtype dtype, int64_t i, float v) {
  switch (dtype) {
    case TS_F32:
      static_cast<float*>(data)[i] = v;
      break;
    case TS_F16:
      static_cast<uint16_t*>(data)[i] = tessera::f32_to_f16(v);
      break;
    case TS_BF16:
      static_cast<uint16_t*>(data)[i] = tessera::f32_to_bf16(v);
      break;
    default:
      static_cast<int32_t*>(data)[i] = static_cast<int32_t>(v * 2);
      break;
  }
}

float load(const void* data, ts_dtype dtype, int64_t i) {
  switch (dtype) {
    case TS_F32:
      return static_cast<const float*>(data)[i];
    case TS_F16:
      return tessera::f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case TS_BF16:
      return tessera::bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    default:
      return static_cast<float>(static_cast<const int32_t*>(data)[i]) / 2;
  }
}

std::vector<std::pair<int, std::string>> all_ok(int32_t world) {
  return std::vector<std::pair<int, std::string>>(static_cast<size_t>(world), {TS_OK, ""});
}

TEST(ParallelLocal, AllReduceSumsEveryRankInEveryDtype) {
  for (int32_t world : {2, 3, 4})
    for (ts_dtype dtype : {TS_F32, TS_F16, TS_BF16, TS_I32}) {
      const Ranks ranks("all-reduce", world);
      constexpr int64_t n = 10;
      // Each rank's tensor is the even columns of a [2, 10] buffer: a strided view [2, 5].
      std::vector<std::vector<uint32_t>> storage(static_cast<size_t>(world),
                                                 std::vector<uint32_t>(2 * n, 0));
      for (int32_t r = 0; r < world; ++r)
        for (int64_t i = 0; i < n; ++i)
          store(storage[static_cast<size_t>(r)].data(), dtype, (i / 5) * n + (i % 5) * 2,
                value_of(r, i));
      const auto results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
        ts_tensor t = view(storage[static_cast<size_t>(r)].data(), dtype, {2, 5}, {n, 2});
        return comm.all_reduce_sum(comm.ctx, &t, nullptr, err);
      });
      ASSERT_EQ(results, all_ok(world)) << tessera::dtype_name(dtype) << " world " << world;
      for (int32_t r = 0; r < world; ++r)
        for (int64_t i = 0; i < n; ++i) {
          float want = 0;
          for (int32_t k = 0; k < world; ++k) want += value_of(k, i);
          const void* data = storage[static_cast<size_t>(r)].data();
          EXPECT_EQ(load(data, dtype, (i / 5) * n + (i % 5) * 2), want)
              << tessera::dtype_name(dtype) << " world " << world << " rank " << r << " i " << i;
          EXPECT_EQ(load(data, dtype, (i / 5) * n + (i % 5) * 2 + 1), 0.0f) << "a gap was written";
        }
    }
}

TEST(ParallelLocal, AllGatherConcatenatesAlongAnyDimWithUnevenParts) {
  for (int32_t dim : {0, 1, 2}) {
    constexpr int32_t world = 3;
    const Ranks ranks("all-gather", world);
    // Rank r holds r + 1 entries along dim of a [2, 3, 4]-like shape.
    std::vector<std::vector<float>> in(world), out(world);
    std::vector<std::vector<int64_t>> in_shapes(world);
    std::vector<int64_t> out_shape{2, 3, 4};
    out_shape[static_cast<size_t>(dim)] = 1 + 2 + 3;
    for (int32_t r = 0; r < world; ++r) {
      std::vector<int64_t> shape{2, 3, 4};
      shape[static_cast<size_t>(dim)] = r + 1;
      in_shapes[static_cast<size_t>(r)] = shape;
      in[static_cast<size_t>(r)].resize(static_cast<size_t>(shape[0] * shape[1] * shape[2]));
      for (size_t i = 0; i < in[static_cast<size_t>(r)].size(); ++i)
        in[static_cast<size_t>(r)][i] = static_cast<float>(100 * r + static_cast<int>(i));
      out[static_cast<size_t>(r)].assign(
          static_cast<size_t>(out_shape[0] * out_shape[1] * out_shape[2]), -1.0f);
    }
    const auto results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
      const ts_tensor tin =
          view(in[static_cast<size_t>(r)].data(), TS_F32, in_shapes[static_cast<size_t>(r)]);
      ts_tensor tout = view(out[static_cast<size_t>(r)].data(), TS_F32, out_shape);
      return comm.all_gather(comm.ctx, &tin, &tout, dim, nullptr, err);
    });
    ASSERT_EQ(results, all_ok(world)) << "dim " << dim;
    // Expected: walk the output and find which rank and index each element came from.
    std::vector<float> want;
    for (int64_t a = 0; a < out_shape[0]; ++a)
      for (int64_t b = 0; b < out_shape[1]; ++b)
        for (int64_t c = 0; c < out_shape[2]; ++c) {
          int64_t idx[3] = {a, b, c};
          int32_t r = 0;
          while (idx[dim] >= r + 1) idx[dim] -= ++r;
          const auto& s = in_shapes[static_cast<size_t>(r)];
          want.push_back(static_cast<float>(100 * r + (idx[0] * s[1] + idx[1]) * s[2] + idx[2]));
        }
    for (int32_t r = 0; r < world; ++r) EXPECT_EQ(out[static_cast<size_t>(r)], want) << dim;
  }
}

TEST(ParallelLocal, ReduceScatterGivesEachRankItsPartOfTheSum) {
  for (int32_t dim : {0, 1}) {
    constexpr int32_t world = 3;
    const Ranks ranks("reduce-scatter", world);
    // in [5, 4] (or [4, 5] for dim 1); parts 1, 2, 2 along dim.
    const std::vector<int64_t> shape =
        dim == 0 ? std::vector<int64_t>{5, 4} : std::vector<int64_t>{4, 5};
    const int64_t parts[world] = {1, 2, 2};
    std::vector<std::vector<float>> in(world), out(world);
    for (int32_t r = 0; r < world; ++r) {
      in[static_cast<size_t>(r)].resize(20);
      for (int64_t i = 0; i < 20; ++i)
        in[static_cast<size_t>(r)][static_cast<size_t>(i)] =
            value_of(r, i) * static_cast<float>(i + 1);
      out[static_cast<size_t>(r)].assign(static_cast<size_t>(parts[r] * 4), -1.0f);
    }
    const auto results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
      const ts_tensor tin = view(in[static_cast<size_t>(r)].data(), TS_F32, shape);
      std::vector<int64_t> out_shape = shape;
      out_shape[static_cast<size_t>(dim)] = parts[r];
      ts_tensor tout = view(out[static_cast<size_t>(r)].data(), TS_F32, out_shape);
      return comm.reduce_scatter_sum(comm.ctx, &tin, &tout, dim, nullptr, err);
    });
    ASSERT_EQ(results, all_ok(world)) << "dim " << dim;
    int64_t first = 0;
    for (int32_t r = 0; r < world; ++r) {
      std::vector<float> want;
      for (int64_t a = 0; a < shape[0]; ++a)
        for (int64_t b = 0; b < shape[1]; ++b) {
          const int64_t along = dim == 0 ? a : b;
          if (along < first || along >= first + parts[r]) continue;
          float sum = 0;
          for (int32_t k = 0; k < world; ++k)
            sum += in[static_cast<size_t>(k)][static_cast<size_t>(a * shape[1] + b)];
          want.push_back(sum);
        }
      EXPECT_EQ(out[static_cast<size_t>(r)], want) << "dim " << dim << " rank " << r;
      first += parts[r];
    }
  }
}

TEST(ParallelLocal, BroadcastCopiesTheRootsTensorEverywhere) {
  constexpr int32_t world = 4;
  const Ranks ranks("broadcast", world);
  for (int32_t root = 0; root < world; ++root) {
    std::vector<std::vector<int32_t>> data(world);
    for (int32_t r = 0; r < world; ++r) data[static_cast<size_t>(r)] = {r, 10 * r, 100 * r};
    const auto results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
      ts_tensor t = view(data[static_cast<size_t>(r)].data(), TS_I32, {3});
      return comm.broadcast(comm.ctx, &t, root, nullptr, err);
    });
    ASSERT_EQ(results, all_ok(world)) << "root " << root;
    for (int32_t r = 0; r < world; ++r)
      EXPECT_EQ(data[static_cast<size_t>(r)], (std::vector<int32_t>{root, 10 * root, 100 * root}));
  }
}

// Every rank of a mismatched call gets the same error at once, and the group still works.
TEST(ParallelLocal, MismatchedCallsFailOnEveryRankWithoutHanging) {
  const Ranks ranks("mismatch", 2, 30.0);
  const auto start = std::chrono::steady_clock::now();
  std::vector<float> a(6, 1.0f), b(8, 1.0f);
  std::vector<uint16_t> h(6, 0);
  auto results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
    ts_tensor t = r == 0 ? view(a.data(), TS_F32, {2, 3}) : view(b.data(), TS_F32, {2, 4});
    return comm.all_reduce_sum(comm.ctx, &t, nullptr, err);
  });
  for (const auto& [status, message] : results) {
    EXPECT_EQ(status, TS_ERROR);
    EXPECT_NE(message.find("rank 1 passed shape [2, 4] but rank 0 passed [2, 3]"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("group 'mismatch' (world 2)"), std::string::npos) << message;
  }
  EXPECT_EQ(results[0].second, results[1].second);
  results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
    ts_tensor t = r == 0 ? view(a.data(), TS_F32, {2, 3}) : view(h.data(), TS_F16, {2, 3});
    return comm.all_reduce_sum(comm.ctx, &t, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("rank 1 passed dtype f16 but rank 0 passed f32"), std::string::npos)
        << message;
  results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
    ts_tensor t = view(a.data(), TS_F32, {2, 3});
    return r == 0 ? comm.all_reduce_sum(comm.ctx, &t, nullptr, err)
                  : comm.broadcast(comm.ctx, &t, 0, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("rank 1 called broadcast but rank 0 called all_reduce_sum"),
              std::string::npos)
        << message;
  results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
    ts_tensor t = view(a.data(), TS_F32, {2, 3});
    return comm.broadcast(comm.ctx, &t, r, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("rank 1 named root 1 but rank 0 named root 0"), std::string::npos)
        << message;
  // One rank's own mistake (a NULL tensor) fails both.
  results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
    ts_tensor t = view(a.data(), TS_F32, {2, 3});
    return comm.all_reduce_sum(comm.ctx, r == 1 ? nullptr : &t, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("rank 1's call is invalid: inout is NULL"), std::string::npos)
        << message;
  // Reduce-scatter parts that do not add up to in.
  results = ranks.run([&](int32_t, const ts_comm& comm, ts_error* err) {
    const ts_tensor tin = view(a.data(), TS_F32, {2, 3});
    std::vector<float> out(3);
    ts_tensor tout = view(out.data(), TS_F32, {2, 1});
    return comm.reduce_scatter_sum(comm.ctx, &tin, &tout, 1, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("add up to 1 + 1 = 2, expected in's 3"), std::string::npos) << message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  // The group is not broken by refused calls.
  results = ranks.run([&](int32_t, const ts_comm& comm, ts_error* err) {
    std::vector<float> mine(3, 1.0f);
    ts_tensor t = view(mine.data(), TS_F32, {3});
    return comm.all_reduce_sum(comm.ctx, &t, nullptr, err);
  });
  EXPECT_EQ(results, all_ok(2));
}

TEST(ParallelLocal, AGroupRefusesWhatItCannotMove) {
  const Ranks ranks("refusals", 2);
  // u8 cannot be summed (it can be gathered).
  std::vector<uint8_t> bytes(4, 1);
  auto results = ranks.run([&](int32_t, const ts_comm& comm, ts_error* err) {
    std::vector<uint8_t> mine = bytes;
    ts_tensor t = view(mine.data(), TS_U8, {4});
    return comm.all_reduce_sum(comm.ctx, &t, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("dtype u8 cannot be summed"), std::string::npos) << message;
  std::vector<std::vector<uint8_t>> outs(2, std::vector<uint8_t>(8, 0));
  results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
    std::vector<uint8_t> mine(4, static_cast<uint8_t>(r + 1));
    const ts_tensor in = view(mine.data(), TS_U8, {4});
    ts_tensor out = view(outs[static_cast<size_t>(r)].data(), TS_U8, {8});
    return comm.all_gather(comm.ctx, &in, &out, 0, nullptr, err);
  });
  EXPECT_EQ(results, all_ok(2));
  EXPECT_EQ(outs[1], (std::vector<uint8_t>{1, 1, 1, 1, 2, 2, 2, 2}));
  // A device tensor, in and out of different dtypes, an out of the wrong size.
  std::vector<float> data(4, 1.0f), out(8, 0.0f);
  results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
    ts_tensor t = view(data.data(), TS_F32, {4});
    if (r == 0) t.device = TS_DEVICE_CUDA;
    return comm.broadcast(comm.ctx, &t, 0, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("rank 0's call is invalid: a cuda tensor; a group of more than one "
                           "rank moves CPU tensors only"),
              std::string::npos)
        << message;
  results = ranks.run([&](int32_t, const ts_comm& comm, ts_error* err) {
    std::vector<float> in(4, 1.0f);
    std::vector<uint16_t> half(8);
    const ts_tensor tin = view(in.data(), TS_F32, {4});
    ts_tensor tout = view(half.data(), TS_BF16, {8});
    return comm.all_gather(comm.ctx, &tin, &tout, 0, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("in has dtype f32 but out has dtype bf16"), std::string::npos)
        << message;
  results = ranks.run([&](int32_t, const ts_comm& comm, ts_error* err) {
    std::vector<float> in(4, 1.0f), small(7);
    const ts_tensor tin = view(in.data(), TS_F32, {4});
    ts_tensor tout = view(small.data(), TS_F32, {7});
    return comm.all_gather(comm.ctx, &tin, &tout, 0, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("rank 0's out has shape [7], expected 8 along dim 0"), std::string::npos)
        << message;
  results = ranks.run([&](int32_t, const ts_comm& comm, ts_error* err) {
    std::vector<float> in(4, 1.0f), o(4);
    const ts_tensor tin = view(in.data(), TS_F32, {4});
    ts_tensor tout = view(o.data(), TS_F32, {2, 2});
    return comm.reduce_scatter_sum(comm.ctx, &tin, &tout, 0, nullptr, err);
  });
  for (const auto& [status, message] : results)
    EXPECT_NE(message.find("out has shape [2, 2] and in [4]"), std::string::npos) << message;
}

TEST(ParallelLocal, ARankThatNeverCallsTimesOutAndBreaksTheGroup) {
  const Ranks ranks("timeout", 3, 0.2);
  std::vector<float> data(4, 1.0f);
  const auto results = ranks.run([&](int32_t r, const ts_comm& comm, ts_error* err) {
    if (r == 2) return static_cast<int>(TS_OK);  // rank 2 never calls
    std::vector<float> mine(4, 1.0f);
    ts_tensor t = view(mine.data(), TS_F32, {4});
    return comm.all_reduce_sum(comm.ctx, &t, nullptr, err);
  });
  // The first rank to time out names rank 2; the other learns that the group broke.
  for (int32_t r = 0; r < 2; ++r) {
    EXPECT_EQ(results[static_cast<size_t>(r)].first, TS_ERROR);
    EXPECT_NE(results[static_cast<size_t>(r)].second.find("for rank(s) 2, which did not reach it"),
              std::string::npos)
        << results[static_cast<size_t>(r)].second;
  }
  // Later calls fail at once.
  ts_tensor t = view(data.data(), TS_F32, {4});
  ts_error err{};
  EXPECT_EQ(ranks.comm(2).all_reduce_sum(ranks.comm(2).ctx, &t, nullptr, &err), TS_ERROR);
  EXPECT_NE(std::string(err.message).find("the group is broken"), std::string::npos) << err.message;
}

TEST(ParallelLocal, RanksAreUniqueAndAgreeOnTheWorld) {
  const Ranks ranks("unique", 2);
  std::string error = create_error(RankParams("unique", 2, 1).list);
  EXPECT_NE(error.find("rank 1 of group 'unique' (world 2) is already taken"), std::string::npos)
      << error;
  error = create_error(RankParams("unique", 3, 2).list);
  EXPECT_NE(error.find("group 'unique' (world 2) already exists"), std::string::npos) << error;
  EXPECT_NE(error.find("asks for world 3"), std::string::npos) << error;
}

TEST(ParallelLocal, ALeavingRankEndsItsGroupAndFreesTheName) {
  Ranks ranks("leaving", 2);
  ranks.drop(1);
  std::vector<float> data(2, 1.0f);
  ts_tensor t = view(data.data(), TS_F32, {2});
  ts_error err{};
  EXPECT_EQ(ranks.comm(0).all_reduce_sum(ranks.comm(0).ctx, &t, nullptr, &err), TS_ERROR);
  EXPECT_NE(std::string(err.message).find("rank 1 left group 'leaving'"), std::string::npos)
      << err.message;
  // A new group of the same name forms.
  const Ranks again("leaving", 2);
  const auto results = again.run([&](int32_t, const ts_comm& comm, ts_error* e) {
    std::vector<float> mine(2, 1.0f);
    ts_tensor mt = view(mine.data(), TS_F32, {2});
    return comm.all_reduce_sum(comm.ctx, &mt, nullptr, e);
  });
  EXPECT_EQ(results, all_ok(2));
}

}  // namespace
