// Tensor storage, views, dtype conversion, and ParamList.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/tensor.hpp>

namespace tessera {
namespace {

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint32_t to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

TEST(TensorTest, AllocatesAlignedZeroedStorage) {
  for (int64_t n : {1, 3, 17, 1000}) {
    Tensor t({n, 3}, TS_F32);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u) << n;
    EXPECT_EQ(t.numel(), n * 3);
    EXPECT_EQ(t.bytes(), static_cast<size_t>(n * 3 * 4));
    EXPECT_EQ(t.ndim(), 2);
    EXPECT_EQ(t.dim(0), n);
    EXPECT_EQ(t.device(), TS_DEVICE_CPU);
    for (int64_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.data<float>()[i], 0.0f);
  }
  Tensor bytes({5}, TS_U8);
  EXPECT_EQ(bytes.bytes(), 5u);
  Tensor longs({2, 2}, TS_I64);
  EXPECT_EQ(longs.bytes(), 32u);
}

TEST(TensorTest, DefaultIsEmptyAndZeroSizedIsNot) {
  Tensor none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.numel(), 0);
  EXPECT_EQ(none.bytes(), 0u);
  Tensor zero({0, 4}, TS_F32);
  EXPECT_FALSE(zero.empty());
  EXPECT_EQ(zero.numel(), 0);
  EXPECT_TRUE(zero.clone().shape() == (std::vector<int64_t>{0, 4}));
}

TEST(TensorTest, NegativeDimensionIsRefused) {
  try {
    Tensor t({2, -1}, TS_F32);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, -1]"), std::string::npos) << e.what();
  }
}

TEST(TensorTest, CopySharesStorageCloneDoesNot) {
  Tensor a({4}, TS_F32);
  Tensor shared = a;
  Tensor copy = a.clone();
  a.data<float>()[2] = 5.0f;
  EXPECT_EQ(shared.data<float>()[2], 5.0f);
  EXPECT_EQ(copy.data<float>()[2], 0.0f);
  EXPECT_NE(copy.raw(), a.raw());
  a.zero();
  EXPECT_EQ(shared.data<float>()[2], 0.0f);
}

TEST(TensorTest, ViewHasRowMajorStrides) {
  Tensor t({2, 3, 4, 5}, TS_BF16);
  ts_tensor v = t.view();
  EXPECT_EQ(v.data, t.raw());
  EXPECT_EQ(v.dtype, TS_BF16);
  EXPECT_EQ(v.device, TS_DEVICE_CPU);
  EXPECT_EQ(v.ndim, 4);
  const int64_t expected_stride[4] = {60, 20, 5, 1};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(v.shape[i], t.dim(i));
    EXPECT_EQ(v.stride[i], expected_stride[i]);
  }
  Tensor five({1, 1, 1, 1, 2}, TS_F32);
  EXPECT_THROW(five.view(), Error);
}

TEST(TensorTest, ReshapeKeepsStorageAndChecksCount) {
  Tensor t({2, 6}, TS_F32);
  t.data<float>()[7] = 3.0f;
  Tensor r = t.reshape({3, 4});
  EXPECT_EQ(r.raw(), t.raw());
  EXPECT_EQ(r.dim(0), 3);
  Tensor inferred = t.reshape({-1, 3});
  EXPECT_EQ(inferred.dim(0), 4);
  try {
    (void)t.reshape({5, 3});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 6]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[5, 3]"), std::string::npos) << msg;
  }
  EXPECT_THROW((void)t.reshape({-1, 5}), Error);
}

TEST(TensorTest, BorrowHoldsKeepalive) {
  auto buffer = std::make_shared<std::vector<float>>(6, 1.5f);
  std::weak_ptr<std::vector<float>> watch = buffer;
  Tensor t = Tensor::borrow(buffer->data(), {2, 3}, TS_F32, buffer);
  buffer.reset();
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(t.data<float>()[5], 1.5f);
  t = Tensor();
  EXPECT_TRUE(watch.expired());
}

TEST(TensorTest, ShapeString) {
  EXPECT_EQ(Tensor({2, 3}, TS_F32).shape_string(), "[2, 3]");
}

TEST(TensorTest, Bf16ExactOnRepresentableValues) {
  // Every finite bf16 goes to f32 and back unchanged.
  Tensor all({65536}, TS_BF16);
  for (uint32_t i = 0; i < 65536; ++i) all.data<uint16_t>()[i] = static_cast<uint16_t>(i);
  Tensor wide = all.to(TS_F32);
  Tensor back = wide.to(TS_BF16);
  for (uint32_t i = 0; i < 65536; ++i) {
    const float f = wide.data<float>()[i];
    ASSERT_EQ(to_bits(f), i << 16) << i;
    if (std::isnan(f)) continue;
    ASSERT_EQ(back.data<uint16_t>()[i], i) << i;
  }
}

TEST(TensorTest, Bf16RoundsToNearestEven) {
  Tensor t({5}, TS_F32);
  float* p = t.data<float>();
  p[0] = from_bits(0x3F808000u);  // halfway, low bf16 even: down
  p[1] = from_bits(0x3F818000u);  // halfway, low bf16 odd: up
  p[2] = from_bits(0x3F808001u);  // above halfway: up
  p[3] = from_bits(0x3F807FFFu);  // below halfway: down
  p[4] = -from_bits(0x3F818000u);
  Tensor b = t.to(TS_BF16);
  const uint16_t* q = b.data<uint16_t>();
  EXPECT_EQ(q[0], 0x3F80u);
  EXPECT_EQ(q[1], 0x3F82u);
  EXPECT_EQ(q[2], 0x3F81u);
  EXPECT_EQ(q[3], 0x3F80u);
  EXPECT_EQ(q[4], 0xBF82u);
}

TEST(TensorTest, F16ExactOnRepresentableValues) {
  Tensor all({65536}, TS_F16);
  for (uint32_t i = 0; i < 65536; ++i) all.data<uint16_t>()[i] = static_cast<uint16_t>(i);
  Tensor wide = all.to(TS_F32);
  Tensor back = wide.to(TS_F16);
  for (uint32_t i = 0; i < 65536; ++i) {
    if (std::isnan(wide.data<float>()[i])) continue;
    ASSERT_EQ(back.data<uint16_t>()[i], i) << i;
  }
  // A few values checked against their known encodings.
  EXPECT_EQ(wide.data<float>()[0x3C00], 1.0f);
  EXPECT_EQ(wide.data<float>()[0xC000], -2.0f);
  EXPECT_EQ(wide.data<float>()[0x7BFF], 65504.0f);
  EXPECT_EQ(wide.data<float>()[0x0400], std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(wide.data<float>()[0x0001], std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(wide.data<float>()[0x7C00]));
}

TEST(TensorTest, F16RoundsToNearestEvenAndOverflows) {
  Tensor t({6}, TS_F32);
  float* p = t.data<float>();
  p[0] = 1.0f + std::ldexp(1.0f, -11);         // halfway to the next half: down to even
  p[1] = 1.0f + 3.0f * std::ldexp(1.0f, -11);  // halfway, odd below: up
  p[2] = 65520.0f;                             // rounds past the largest half
  p[3] = std::ldexp(1.0f, -25);                // half the smallest subnormal: to zero (even)
  p[4] = std::ldexp(3.0f, -26);                // 0.75 of the smallest subnormal: up
  p[5] = -65504.0f;
  Tensor h = t.to(TS_F16);
  const uint16_t* q = h.data<uint16_t>();
  EXPECT_EQ(q[0], 0x3C00u);
  EXPECT_EQ(q[1], 0x3C02u);
  EXPECT_EQ(q[2], 0x7C00u);
  EXPECT_EQ(q[3], 0x0000u);
  EXPECT_EQ(q[4], 0x0001u);
  EXPECT_EQ(q[5], 0xFBFFu);
}

TEST(TensorTest, F16ToBf16GoesThroughF32) {
  Tensor h({3}, TS_F16);
  h.data<uint16_t>()[0] = 0x3C00;  // 1
  h.data<uint16_t>()[1] = 0x3E00;  // 1.5
  h.data<uint16_t>()[2] = 0x3C01;  // 1 + 2^-10: bf16 keeps 7 mantissa bits, rounds to 1
  Tensor b = h.to(TS_BF16);
  EXPECT_EQ(b.data<uint16_t>()[0], 0x3F80u);
  EXPECT_EQ(b.data<uint16_t>()[1], 0x3FC0u);
  EXPECT_EQ(b.data<uint16_t>()[2], 0x3F80u);
  Tensor same = h.to(TS_F16);
  EXPECT_NE(same.raw(), h.raw());
  EXPECT_EQ(same.data<uint16_t>()[2], 0x3C01u);
}

TEST(TensorTest, UnsupportedConversionNamesBothDtypes) {
  Tensor ints({2}, TS_I32);
  try {
    (void)ints.to(TS_F32);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("i32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("f32"), std::string::npos) << msg;
  }
  float src = 1.0f;
  int64_t dst = 0;
  try {
    convert(&src, TS_F32, &dst, TS_I64, 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("f32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("i64"), std::string::npos) << msg;
  }
}

TEST(ParamsTest, SetReplacesAndFinds) {
  ParamList p;
  p.set("kv_heads", int64_t{4});
  p.set("rope_theta", 10000.0);
  p.set("kv_heads", int64_t{2});
  ASSERT_EQ(p.items().size(), 2u);
  ASSERT_NE(p.find("kv_heads"), nullptr);
  EXPECT_EQ(std::get<int64_t>(*p.find("kv_heads")), 2);
  EXPECT_EQ(p.find("missing"), nullptr);
}

TEST(ParamsTest, CParamsViewEveryType) {
  ParamList p;
  p.set("n", int64_t{7});
  p.set("x", 0.25);
  p.set("flag", true);
  p.set("name", std::string("gqa"));
  p.set("ids", std::vector<int64_t>{1, 2, 3});
  ts_params c = p.c_params();
  ASSERT_EQ(c.count, 5);
  EXPECT_STREQ(c.items[0].key, "n");
  EXPECT_EQ(c.items[0].type, TS_PARAM_INT);
  EXPECT_EQ(c.items[0].i, 7);
  EXPECT_EQ(c.items[1].type, TS_PARAM_FLOAT);
  EXPECT_EQ(c.items[1].f, 0.25);
  EXPECT_EQ(c.items[2].type, TS_PARAM_BOOL);
  EXPECT_EQ(c.items[2].i, 1);
  EXPECT_EQ(c.items[3].type, TS_PARAM_STRING);
  EXPECT_STREQ(c.items[3].s, "gqa");
  EXPECT_EQ(c.items[4].type, TS_PARAM_INT_LIST);
  ASSERT_EQ(c.items[4].count, 3);
  EXPECT_EQ(c.items[4].ints[2], 3);

  // Modifying rebuilds the view.
  p.set("n", int64_t{9});
  c = p.c_params();
  EXPECT_EQ(c.items[0].i, 9);
}

TEST(ParamsTest, MergeReplacesAndAppendsAndCopiesAreIndependent) {
  ParamList model;
  model.set("kv_heads", int64_t{8});
  model.set("hidden_size", int64_t{64});
  ParamList block;
  block.set("kv_heads", int64_t{2});
  block.set("window", int64_t{16});
  ParamList merged = model;
  merged.merge(block);
  ASSERT_EQ(merged.items().size(), 3u);
  EXPECT_EQ(merged.items()[0].key, "kv_heads");
  EXPECT_EQ(std::get<int64_t>(merged.items()[0].value), 2);
  EXPECT_EQ(merged.items()[2].key, "window");
  EXPECT_EQ(std::get<int64_t>(*model.find("kv_heads")), 8);

  ParamList copy = merged;
  merged.set("window", int64_t{1});
  ts_params c = copy.c_params();
  ASSERT_EQ(c.count, 3);
  EXPECT_EQ(c.items[2].i, 16);
  copy = model;
  EXPECT_EQ(copy.c_params().count, 2);
}

}  // namespace
}  // namespace tessera
