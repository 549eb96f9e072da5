// KvCache: per-layer shapes, views, lengths, compaction and its errors.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/kv_cache.hpp>
#include <vector>

namespace tessera {
namespace {

void expect_error_containing(const std::function<void()>& fn,
                             std::initializer_list<std::string> parts) {
  try {
    fn();
    FAIL() << "expected a tessera::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(msg.find(part), std::string::npos) << "missing '" << part << "' in: " << msg;
    }
  }
}

// Layer 0: gqa 2x4 f32; layer 1: no cache; layer 2: 1x8 f16.
std::vector<KvLayerShape> mixed_layers() {
  return {KvLayerShape{2, 4, TS_F32}, KvLayerShape{0, 0, TS_F32}, KvLayerShape{1, 8, TS_F16}};
}

TEST(KvCacheTest, ShapesPerLayerAndNoStorageWithoutKvHeads) {
  KvCache cache(mixed_layers(), 3, 5);
  EXPECT_EQ(cache.slots(), 3);
  EXPECT_EQ(cache.capacity(), 5);
  EXPECT_TRUE(cache.has_layer(0));
  EXPECT_FALSE(cache.has_layer(1));
  EXPECT_TRUE(cache.has_layer(2));
  EXPECT_FALSE(cache.has_layer(3));
  EXPECT_FALSE(cache.has_layer(-1));
  EXPECT_EQ(cache.layer_shape(2).head_dim, 8);

  ts_kv_layer l0 = cache.layer_view(0);
  ASSERT_EQ(l0.k.ndim, 4);
  const int64_t shape0[4] = {3, 5, 2, 4};
  const int64_t stride0[4] = {40, 8, 4, 1};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(l0.k.shape[i], shape0[i]);
    EXPECT_EQ(l0.v.shape[i], shape0[i]);
    EXPECT_EQ(l0.k.stride[i], stride0[i]);
    EXPECT_EQ(l0.v.stride[i], stride0[i]);
  }
  EXPECT_EQ(l0.k.dtype, TS_F32);
  EXPECT_NE(l0.k.data, l0.v.data);
  ts_kv_layer l2 = cache.layer_view(2);
  EXPECT_EQ(l2.k.dtype, TS_F16);
  EXPECT_EQ(l2.k.shape[2], 1);
  EXPECT_EQ(l2.k.stride[1], 8);

  expect_error_containing([&] { cache.layer_view(1); }, {"layer 1"});
  expect_error_containing([&] { cache.layer_view(7); }, {"layer 7", "3 layers"});

  // bytes: k and v of the two layers with storage.
  EXPECT_EQ(cache.bytes(), 2u * (3 * 5 * 2 * 4 * 4) + 2u * (3 * 5 * 1 * 8 * 2));
  EXPECT_EQ(cache.bytes_per_token(), 2u * (2 * 4 * 4) + 2u * (1 * 8 * 2));
}

TEST(KvCacheTest, LengthsAreSharedWithViews) {
  KvCache cache(mixed_layers(), 2, 6);
  EXPECT_EQ(cache.length(0), 0);
  EXPECT_EQ(cache.length(1), 0);
  ts_kv_layer view = cache.layer_view(0);
  cache.set_length(1, 6);
  EXPECT_EQ(cache.length(1), 6);
  EXPECT_EQ(view.lengths[1], 6);
  EXPECT_EQ(view.lengths[0], 0);
  expect_error_containing([&] { cache.set_length(2, 1); }, {"slot 2", "[0, 2)"});
  expect_error_containing([&] { cache.set_length(0, 7); }, {"length 7", "6"});
  expect_error_containing([&] { cache.set_length(0, -1); }, {"length -1"});
}

TEST(KvCacheTest, RefusesBadShapes) {
  expect_error_containing(
      [] {
        KvCache({KvLayerShape{2, 0, TS_F32}}, 1, 4);
      },
      {"layer 0", "head_dim 0"});
  expect_error_containing([] { KvCache({KvLayerShape{1, 4, TS_F32}}, -1, 4); }, {"slots -1"});
}

// Value stored at (layer, k/v, slot, row, element), so moved rows are recognisable.
float marker(size_t layer, int which, int64_t slot, int64_t row, int64_t e) {
  return static_cast<float>(layer * 100000 + static_cast<size_t>(which) * 10000 +
                            static_cast<size_t>(slot) * 1000 + static_cast<size_t>(row) * 10 +
                            static_cast<size_t>(e));
}

TEST(KvCacheTest, CompactMovesRowsInEveryLayer) {
  const std::vector<KvLayerShape> layers = {KvLayerShape{2, 2, TS_F32}, KvLayerShape{0, 0, TS_F32},
                                            KvLayerShape{1, 3, TS_F32}};
  const int32_t slots = 2, capacity = 8;
  KvCache cache(layers, slots, capacity);
  for (size_t l = 0; l < layers.size(); ++l) {
    if (!cache.has_layer(static_cast<int32_t>(l))) continue;
    ts_kv_layer view = cache.layer_view(static_cast<int32_t>(l));
    const int64_t row = view.k.stride[1];
    for (int which = 0; which < 2; ++which) {
      float* p = static_cast<float*>(which == 0 ? view.k.data : view.v.data);
      for (int64_t s = 0; s < slots; ++s)
        for (int64_t r = 0; r < capacity; ++r)
          for (int64_t e = 0; e < row; ++e)
            p[(s * capacity + r) * row + e] = marker(l, which, s, r, e);
    }
  }
  cache.set_length(1, 7);
  // Keep new rows 0, 2 and 3 after row 2: rows 2, 4, 5 -> rows 2, 3, 4.
  const int32_t keep[] = {0, 2, 3};
  cache.compact(1, 2, keep, 3);
  EXPECT_EQ(cache.length(1), 5);
  EXPECT_EQ(cache.length(0), 0);

  const int64_t expected_source[8] = {0, 1, 2, 4, 5, 5, 6, 7};  // rows past the kept ones stay
  for (size_t l = 0; l < layers.size(); ++l) {
    if (!cache.has_layer(static_cast<int32_t>(l))) continue;
    ts_kv_layer view = cache.layer_view(static_cast<int32_t>(l));
    const int64_t row = view.k.stride[1];
    for (int which = 0; which < 2; ++which) {
      const float* p = static_cast<const float*>(which == 0 ? view.k.data : view.v.data);
      for (int64_t r = 0; r < capacity; ++r) {
        for (int64_t e = 0; e < row; ++e) {
          ASSERT_EQ(p[(1 * capacity + r) * row + e], marker(l, which, 1, expected_source[r], e))
              << "layer " << l << " which " << which << " row " << r;
          ASSERT_EQ(p[(0 * capacity + r) * row + e], marker(l, which, 0, r, e)) << "slot 0 changed";
        }
      }
    }
  }
}

TEST(KvCacheTest, CompactKeepingNothingOrEverything) {
  KvCache cache({KvLayerShape{1, 1, TS_F32}}, 1, 4);
  float* k = static_cast<float*>(cache.layer_view(0).k.data);
  for (int i = 0; i < 4; ++i) k[i] = static_cast<float>(i);
  const int32_t all[] = {0, 1, 2};
  cache.compact(0, 1, all, 3);
  EXPECT_EQ(cache.length(0), 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(k[i], static_cast<float>(i));
  cache.compact(0, 2, nullptr, 0);
  EXPECT_EQ(cache.length(0), 2);
}

TEST(KvCacheTest, CompactErrors) {
  KvCache cache({KvLayerShape{1, 2, TS_BF16}}, 2, 6);
  const int32_t unordered[] = {0, 2, 2};
  expect_error_containing([&] { cache.compact(0, 0, unordered, 3); },
                          {"ascending", "keep[1] = 2", "keep[2] = 2"});
  const int32_t beyond[] = {1, 4};
  expect_error_containing([&] { cache.compact(0, 2, beyond, 2); },
                          {"keep[1] = 4", "first_row 2", "capacity 6"});
  const int32_t negative[] = {-1};
  expect_error_containing([&] { cache.compact(0, 0, negative, 1); }, {"keep[0] = -1"});
  const int32_t ok[] = {0};
  expect_error_containing([&] { cache.compact(2, 0, ok, 1); }, {"slot 2", "[0, 2)"});
  expect_error_containing([&] { cache.compact(0, 6, ok, 1); }, {"first_row 6", "capacity 6"});
  EXPECT_EQ(cache.length(0), 0) << "a refused compaction changes nothing";
}

TEST(KvCacheTest, DefaultCacheIsEmpty) {
  KvCache cache;
  EXPECT_EQ(cache.slots(), 0);
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_EQ(cache.bytes_per_token(), 0u);
  EXPECT_FALSE(cache.has_layer(0));
}

}  // namespace
}  // namespace tessera
