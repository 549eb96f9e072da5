// safetensors reading and writing, WeightStore lookups, and Rng.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/formats/safetensors.hpp>

namespace tessera {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("tessera_safetensors_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes the 8-byte length (or `length_override`), the header and `data`.
  fs::path write_raw(const std::string& name, const std::string& header, const std::string& data,
                     int64_t length_override = -1) {
    const fs::path path = dir_ / name;
    std::ofstream out(path, std::ios::binary);
    uint64_t length = length_override >= 0 ? static_cast<uint64_t>(length_override) : header.size();
    for (int i = 0; i < 8; ++i) {
      const char byte = static_cast<char>(length & 0xffu);
      out.write(&byte, 1);
      length >>= 8;
    }
    out << header << data;
    return path;
  }

  // Reads `path` expecting a ModelError that contains every one of `parts`.
  void expect_error(const fs::path& path, std::initializer_list<std::string> parts) {
    try {
      (void)read_safetensors(path);
      FAIL() << "expected a ModelError for " << path;
    } catch (const ModelError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
      for (const std::string& part : parts) {
        EXPECT_NE(msg.find(part), std::string::npos) << "missing '" << part << "' in: " << msg;
      }
    }
  }

  fs::path dir_;
};

Tensor filled(std::vector<int64_t> shape, ts_dtype dtype, unsigned seed) {
  Tensor t(std::move(shape), dtype);
  auto* bytes = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.bytes(); ++i) bytes[i] = static_cast<unsigned char>(i * 31 + seed);
  return t;
}

TEST_F(SafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  WeightStore store;
  store.add("b.f32", filled({3, 5}, TS_F32, 1));
  store.add("a.f16", filled({7}, TS_F16, 2));
  store.add("c.bf16", filled({2, 2, 3}, TS_BF16, 3));
  store.add("d.i32", filled({4}, TS_I32, 4));
  store.add("e.i64", filled({1, 3}, TS_I64, 5));
  store.add("f.u8", filled({9}, TS_U8, 6));
  store.add("g.empty", Tensor({0, 4}, TS_F32));
  const fs::path path = dir_ / "all.safetensors";
  write_safetensors(path, store, {{"format", "pt"}, {"creator", "tessera test"}});

  WeightStore loaded = read_safetensors(path);
  EXPECT_EQ(loaded.source, path.string());
  ASSERT_EQ(loaded.all().size(), store.all().size());
  for (const auto& [name, original] : store.all()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(loaded.has(name));
    const Tensor& t = loaded.get(name);
    EXPECT_EQ(t.dtype(), original.dtype());
    EXPECT_EQ(t.shape(), original.shape());
    ASSERT_EQ(t.bytes(), original.bytes());
    EXPECT_EQ(std::memcmp(t.raw(), original.raw(), t.bytes()), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % dtype_size(t.dtype()), 0u);
  }

  // The header: padded to 8 bytes, tensors in name order, metadata kept.
  std::ifstream in(path, std::ios::binary);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  EXPECT_EQ(header_len % 8, 0u);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  const auto json = nlohmann::json::parse(header);
  EXPECT_EQ(json["__metadata__"]["format"], "pt");
  EXPECT_EQ(json["__metadata__"]["creator"], "tessera test");
  EXPECT_EQ(json["a.f16"]["dtype"], "F16");
  EXPECT_EQ(json["a.f16"]["data_offsets"][0], 0);
  EXPECT_EQ(json["b.f32"]["data_offsets"][0], 14);  // right after a.f16's 14 bytes
  EXPECT_EQ(json["e.i64"]["dtype"], "I64");
  EXPECT_EQ(fs::file_size(path), 8 + header_len + 60 + 14 + 24 + 16 + 24 + 9);
}

TEST_F(SafetensorsTest, TensorsOutliveTheStore) {
  WeightStore store;
  store.add("w", filled({4, 4}, TS_F32, 9));
  const fs::path path = dir_ / "w.safetensors";
  write_safetensors(path, store);
  Tensor kept;
  {
    WeightStore loaded = read_safetensors(path);
    kept = loaded.get("w");
  }
  fs::remove(path);  // the mapping stays valid after the file is unlinked
  EXPECT_EQ(std::memcmp(kept.raw(), store.get("w").raw(), kept.bytes()), 0);
  // Writes go to a private copy of the page, never to the file.
  kept.data<float>()[0] = 42.0f;
  EXPECT_EQ(kept.data<float>()[0], 42.0f);
}

TEST_F(SafetensorsTest, MissingFile) {
  expect_error(dir_ / "absent.safetensors", {"cannot open"});
}

TEST_F(SafetensorsTest, TruncatedBelowEightBytes) {
  const fs::path path = dir_ / "short.safetensors";
  std::ofstream(path, std::ios::binary) << "abc";
  expect_error(path, {"3 bytes", "at least 8"});
  const fs::path empty = dir_ / "empty.safetensors";
  std::ofstream(empty, std::ios::binary).flush();
  expect_error(empty, {"0 bytes", "at least 8"});
}

TEST_F(SafetensorsTest, HeaderLongerThanFile) {
  expect_error(write_raw("long.safetensors", "{}", "", 64),
               {"header length 64", "end of the file"});
}

TEST_F(SafetensorsTest, HeaderOverLimit) {
  expect_error(write_raw("huge.safetensors", "{}", "", 200'000'000),
               {"header length 200000000", "limit"});
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  expect_error(write_raw("bad.safetensors", "{\"a\": [1, 2", ""), {"not valid JSON"});
  expect_error(write_raw("array.safetensors", "[1, 2]  ", ""), {"array", "expected an object"});
}

TEST_F(SafetensorsTest, OffsetsBeyondData) {
  const std::string header = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, )"
                             R"("x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})";
  expect_error(write_raw("oob.safetensors", header, std::string(12, '\0')),
               {"tensor 'x'", "[8, 16]", "data section of 12 bytes"});
  const std::string reversed = R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 2]}})";
  expect_error(write_raw("rev.safetensors", reversed, std::string(8, '\0')),
               {"tensor 'w'", "begin after end"});
}

TEST_F(SafetensorsTest, TensorsSharingBytesAreRefused) {
  // x's range starts inside w's; empty tensors and ranges that only touch are fine.
  const std::string overlap = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, )"
                              R"("x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  expect_error(write_raw("overlap.safetensors", overlap, std::string(12, '\0')),
               {"tensors 'w' (data_offsets [0, 8]) and 'x' ([4, 12]) share bytes"});
  const std::string touching = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, )"
                               R"("x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}, )"
                               R"("e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})";
  EXPECT_EQ(read_safetensors(write_raw("touching.safetensors", touching, std::string(16, '\0')))
                .all()
                .size(),
            3u);
}

TEST_F(SafetensorsTest, SizeDoesNotMatchShape) {
  const std::string header = R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})";
  expect_error(write_raw("size.safetensors", header, std::string(24, '\0')),
               {"tensor 'w'", "hold 20 bytes", "[2, 3]", "F32", "needs 24"});
  const std::string overflow =
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})";
  expect_error(write_raw("overflow.safetensors", overflow, std::string(8, '\0')),
               {"tensor 'w'", "more than 2^64"});
}

TEST_F(SafetensorsTest, UnsupportedDtypeNamed) {
  const std::string header = R"({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})";
  expect_error(write_raw("f64.safetensors", header, std::string(8, '\0')),
               {"tensor 'w'", "'F64'", "not supported", "BF16"});
}

TEST_F(SafetensorsTest, MalformedEntries) {
  const std::string data(8, '\0');
  expect_error(write_raw("e1.safetensors", R"({"w": 3})", data),
               {"tensor 'w'", "expected an object"});
  expect_error(
      write_raw("e2.safetensors", R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", data),
      {"tensor 'w'", "dtype"});
  expect_error(write_raw("e3.safetensors",
                         R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", data),
               {"tensor 'w'", "non-negative"});
  expect_error(
      write_raw("e4.safetensors",
                R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", data),
      {"tensor 'w'", "non-negative integers"});
  expect_error(write_raw("e5.safetensors", R"({"w": {"dtype": "F32", "shape": [2]}})", data),
               {"tensor 'w'", "data_offsets"});
  expect_error(write_raw("e6.safetensors",
                         R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", data),
               {"tensor 'w'", "[begin, end]"});
  expect_error(write_raw("e7.safetensors", R"({"__metadata__": {"k": 1}})", ""),
               {"__metadata__", "'k'", "expected a string"});
}

TEST_F(SafetensorsTest, UnalignedDataIsCopied) {
  // A header of odd length puts the data off alignment; the reader copies it.
  const std::string header = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  ASSERT_NE(header.size() % 4, 0u);
  float values[2] = {1.25f, -3.5f};
  std::string data(reinterpret_cast<const char*>(values), 8);
  WeightStore loaded = read_safetensors(write_raw("odd.safetensors", header, data));
  const Tensor& w = loaded.get("w");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.raw()) % 4, 0u);
  EXPECT_EQ(w.data<float>()[0], 1.25f);
  EXPECT_EQ(w.data<float>()[1], -3.5f);
}

TEST_F(SafetensorsTest, WriteRefusesEmptyTensor) {
  WeightStore store;
  store.add("nothing", Tensor());
  EXPECT_THROW(write_safetensors(dir_ / "x.safetensors", store), ModelError);
}

TEST(WeightStoreTest, MissingNameListsSimilarOnes) {
  WeightStore store;
  store.source = "model.safetensors";
  for (int i = 0; i < 8; ++i) {
    store.add("model.layers." + std::to_string(i) + ".mlp.up_proj.weight", Tensor({1}, TS_F32));
  }
  store.add("lm_head.weight", Tensor({1}, TS_F32));
  try {
    (void)store.get("model.layers.3.mlp.up_prj.weight");
    FAIL() << "expected a ModelError";
  } catch (const ModelError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'model.layers.3.mlp.up_prj.weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
    // The closest name comes first; at most five are listed.
    const auto similar = msg.find("similar names: ");
    ASSERT_NE(similar, std::string::npos) << msg;
    EXPECT_EQ(msg.find("model.layers.3.mlp.up_proj.weight", similar), similar + 15) << msg;
    EXPECT_EQ(msg.find("lm_head"), std::string::npos) << msg;
    size_t listed = 0;
    for (auto pos = msg.find("up_proj", similar); pos != std::string::npos;
         pos = msg.find("up_proj", pos + 1)) {
      ++listed;
    }
    EXPECT_EQ(listed, 5u) << msg;
  }
  WeightStore empty;
  EXPECT_THROW((void)empty.get("x"), ModelError);
}

TEST(RngTest, MatchesReferenceSplitmix64) {
  // Seeding with the golden ratio leaves the state at 0: the first outputs are
  // those of the published splitmix64 sequence from state 0.
  Rng rng(0x9e3779b97f4a7c15ull);
  EXPECT_EQ(rng.next(), 0xe220a8397b1dcdafull);
  EXPECT_EQ(rng.next(), 0x6e789e6aa1b965f4ull);
  EXPECT_EQ(rng.next(), 0x06c45d188009454full);
}

TEST(RngTest, DeterministicAndSeedDependent) {
  Rng a(42), b(42), c(43);
  bool any_different = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    any_different |= x != c.next();
  }
  EXPECT_TRUE(any_different);
}

TEST(RngTest, UniformAndNormalStatistics) {
  Rng rng(7);
  constexpr int kN = 100000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < kN; ++i) {
    const float u = rng.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / kN, 0.5, 0.01);
  sum = 0;
  for (int i = 0; i < kN; ++i) {
    const float x = rng.normal();
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sum_sq += static_cast<double>(x) * x;
  }
  const double mean = sum / kN;
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(sum_sq / kN - mean * mean, 1.0, 0.03);
}

}  // namespace
}  // namespace tessera
