// GGUF reader and dequantisation: fixtures written by tests/golden/gguf/make_gguf_fixtures.py
// (the Python gguf package), corrupt variants made here, the fuzz corpus, and the real SmolLM2.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/formats/dequantize.hpp>
#include <tessera/formats/gguf.hpp>
#include <vector>

#include "default_model.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

const fs::path kDataDir = fs::path(TESSERA_SOURCE_DIR) / "tests" / "data" / "gguf";
const fs::path kGoldenDir = fs::path(TESSERA_SOURCE_DIR) / "tests" / "golden" / "gguf";

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

GgufFile parse(const Bytes& bytes, const std::string& name = "mem.gguf") {
  return GgufFile::from_memory(bytes.data(), bytes.size(), name);
}

// Runs `fn`, expects a ModelError, and returns its message.
template <class Fn>
std::string model_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const ModelError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ModelError, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected ModelError, nothing was thrown";
  return {};
}

size_t find_bytes(const Bytes& hay, std::string_view needle) {
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    if (std::memcmp(hay.data() + i, needle.data(), needle.size()) == 0) return i;
  }
  ADD_FAILURE() << "'" << needle << "' not found in the fixture";
  return 0;
}

// The byte offset just after a metadata key (where its u32 value type starts).
size_t after_key(const Bytes& file, std::string_view key) {
  return find_bytes(file, key) + key.size();
}

void put_u32(Bytes& b, size_t at, uint32_t v) {
  std::memcpy(b.data() + at, &v, 4);
}
void put_u64(Bytes& b, size_t at, uint64_t v) {
  std::memcpy(b.data() + at, &v, 8);
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Builds small GGUF files byte by byte, for layouts the Python writer will not produce.
struct GgufBuilder {
  Bytes out;
  void u32(uint32_t v) { append(&v, 4); }
  void u64(uint64_t v) { append(&v, 8); }
  void str(std::string_view s) {
    u64(s.size());
    append(s.data(), s.size());
  }
  void append(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    out.insert(out.end(), c, c + n);
  }
  void header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    append("GGUF", 4);
    u32(version);
    u64(tensors);
    u64(kvs);
  }
  void pad_to(size_t alignment) {
    while (out.size() % alignment != 0) out.push_back(0);
  }
};

// ---- Dequantisation -------------------------------------------------------------------------

TEST(DequantTest, TypeTableHasGgmlBlockSizes) {
  struct Expect {
    GgmlType type;
    int64_t elems;
    size_t bytes;
  };
  for (const Expect& e :
       {Expect{GgmlType::F32, 1, 4}, Expect{GgmlType::F16, 1, 2}, Expect{GgmlType::BF16, 1, 2},
        Expect{GgmlType::Q8_0, 32, 34}, Expect{GgmlType::Q4_0, 32, 18},
        Expect{GgmlType::Q4_1, 32, 20}, Expect{GgmlType::Q4_K, 256, 144},
        Expect{GgmlType::Q5_K, 256, 176}, Expect{GgmlType::Q6_K, 256, 210}}) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(e.type));
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->block_elems, e.elems) << info->name;
    EXPECT_EQ(info->block_bytes, e.bytes) << info->name;
    EXPECT_TRUE(info->dequantizable) << info->name;
  }
  EXPECT_EQ(ggml_type_info(4), nullptr);  // retired Q4_2
  EXPECT_EQ(ggml_type_info(9999), nullptr);
  EXPECT_EQ(ggml_type_name(12), "Q4_K");
  EXPECT_EQ(ggml_type_name(9999), "type 9999");
  EXPECT_EQ(ggml_bytes_for(static_cast<uint32_t>(GgmlType::Q4_1), 64), 40u);
  EXPECT_FALSE(ggml_bytes_for(static_cast<uint32_t>(GgmlType::Q4_1), 33).has_value());
  EXPECT_FALSE(ggml_bytes_for(9999, 32).has_value());
}

// Hand-made blocks against values worked out from the format by hand.
TEST(DequantTest, HandMadeBlocksGiveHandComputedValues) {
  // Q8_0: d = 0.5 (f16 0x3800), q = -128, -1, 0, 1, 127, ...
  uint8_t q8[34] = {0x00, 0x38};
  const int8_t q8_values[5] = {-128, -1, 0, 1, 127};
  std::memcpy(q8 + 2, q8_values, 5);
  float out[256];
  dequantize_to_f32_reference(static_cast<uint32_t>(GgmlType::Q8_0), q8, out, 32);
  EXPECT_EQ(out[0], -64.0f);
  EXPECT_EQ(out[1], -0.5f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[3], 0.5f);
  EXPECT_EQ(out[4], 63.5f);

  // Q4_0: d = 2 (0x4000); byte 0 = 0xF0 -> value 0 is (0-8)*2, value 16 is (15-8)*2.
  uint8_t q4[18] = {0x00, 0x40, 0xF0};
  dequantize_to_f32_reference(static_cast<uint32_t>(GgmlType::Q4_0), q4, out, 32);
  EXPECT_EQ(out[0], -16.0f);
  EXPECT_EQ(out[16], 14.0f);
  EXPECT_EQ(out[1], -16.0f);  // byte 1 is 0: both nibbles are 0 -> -8 * 2

  // Q4_1: d = 1 (0x3C00), m = -1 (0xBC00); byte 3 = 0x5A -> value 3 is 10-1, value 19 is 5-1.
  uint8_t q41[20] = {0x00, 0x3C, 0x00, 0xBC, 0, 0, 0, 0x5A};
  dequantize_to_f32_reference(static_cast<uint32_t>(GgmlType::Q4_1), q41, out, 32);
  EXPECT_EQ(out[3], 9.0f);
  EXPECT_EQ(out[19], 4.0f);
  EXPECT_EQ(out[0], -1.0f);

  // Q6_K: d = 1, every scale 2, every ql 0x21 and qh 0: value 0 is (1-32)*2, value 64 (high
  // nibble) is (2-32)*2; setting qh[0] bits 0..1 to 3 makes value 0 (1 | 48) - 32 = 17.
  uint8_t q6[210] = {};
  std::memset(q6, 0x21, 128);
  std::memset(q6 + 192, 2, 16);
  q6[208] = 0x00;
  q6[209] = 0x3C;
  dequantize_to_f32_reference(static_cast<uint32_t>(GgmlType::Q6_K), q6, out, 256);
  EXPECT_EQ(out[0], -62.0f);
  EXPECT_EQ(out[64], -60.0f);
  q6[128] = 0x03;
  dequantize_to_f32_reference(static_cast<uint32_t>(GgmlType::Q6_K), q6, out, 256);
  EXPECT_EQ(out[0], 34.0f);

  // Q4_K: d = 1, dmin = 1, sub-block 0 scale 3 min 1, sub-block 4 scale 0x15 min 0x22 (6-bit
  // values split across the packed bytes), qs all 0x32.
  uint8_t q4k[144] = {0x00, 0x3C, 0x00, 0x3C};
  uint8_t* sc = q4k + 4;
  sc[0] = 3;        // scale 0
  sc[4] = 1;        // min 0
  sc[8] = 0x25;     // scale 4 low bits 5, min 4 low bits 2
  sc[0] |= 1 << 6;  // scale 4 high bits 01 -> 0x15
  sc[4] |= 2 << 6;  // min 4 high bits 10 -> 0x22
  std::memset(q4k + 16, 0x32, 128);
  dequantize_to_f32_reference(static_cast<uint32_t>(GgmlType::Q4_K), q4k, out, 256);
  EXPECT_EQ(out[0], 3.0f * 2 - 1);         // sub-block 0: low nibble 2
  EXPECT_EQ(out[128], 21.0f * 2 - 34.0f);  // sub-block 4: low nibble of group 2
}

TEST(DequantTest, FastPathMatchesReferenceBitForBit) {
  std::mt19937 rng(7);
  for (GgmlType type :
       {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
        GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
    // Odd counts for the plain types exercise the vector loops' tails.
    const int64_t n = info->block_elems == 1 ? 1037 : info->block_elems * 13;
    Bytes src(*ggml_bytes_for(static_cast<uint32_t>(type), n));
    // Any bit pattern is a valid block, NaN and infinite scales included: compare bits.
    for (auto& b : src) b = static_cast<uint8_t>(rng());
    std::vector<float> fast(static_cast<size_t>(n)), ref(static_cast<size_t>(n));
    dequantize_to_f32(static_cast<uint32_t>(type), src.data(), fast.data(), n);
    dequantize_to_f32_reference(static_cast<uint32_t>(type), src.data(), ref.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      // F16C quietens signalling NaNs (sets the top mantissa bit); any NaN matches any NaN.
      if (std::isnan(fast[i]) && std::isnan(ref[i])) continue;
      ASSERT_EQ(bits_of(fast[i]), bits_of(ref[i])) << info->name << " value " << i;
    }
  }
}

TEST(DequantTest, RejectsUnsupportedTypesAndPartialBlocks) {
  float out[64];
  const uint8_t zeros[64] = {};
  EXPECT_NE(model_error_of([&] {
              dequantize_to_f32(static_cast<uint32_t>(GgmlType::Q5_0), zeros, out, 32);
            }).find("Q5_0"),
            std::string::npos);
  EXPECT_NE(model_error_of([&] { dequantize_to_f32(9999, zeros, out, 32); }).find("type 9999"),
            std::string::npos);
  EXPECT_NE(model_error_of([&] {
              dequantize_to_f32(static_cast<uint32_t>(GgmlType::Q8_0), zeros, out, 31);
            }).find("block size 32"),
            std::string::npos);
}

// The fixtures' expected values come from gguf.quants.dequantize; equality is exact.
TEST(DequantTest, MatchesPythonGgufPackageExactly) {
  const GgufFile file = GgufFile::open(kDataDir / "quants.gguf-fixture");
  const nlohmann::json expected =
      nlohmann::json::parse(std::ifstream(kDataDir / "quants.expected.json"));
  const Bytes expected_bytes = read_bytes(kDataDir / "quants.expected.f32");
  ASSERT_EQ(expected.size(), 9u);
  for (const auto& [name, e] : expected.items()) {
    SCOPED_TRACE(name);
    const GgufTensorInfo& info = file.tensor(name);
    EXPECT_EQ(ggml_type_name(info.type), e["type"].get<std::string>());
    EXPECT_EQ(info.ne, e["ne"].get<std::vector<int64_t>>());
    const auto count = e["count"].get<size_t>();
    const auto offset = e["offset"].get<size_t>();
    ASSERT_LE((offset + count) * 4, expected_bytes.size());
    const Tensor t = file.load_tensor(name);
    ASSERT_EQ(static_cast<size_t>(t.numel()), count);
    EXPECT_EQ(t.shape(), info.shape());
    std::vector<float> ref(count);
    dequantize_to_f32_reference(info.type, file.tensor_data(info), ref.data(),
                                static_cast<int64_t>(count));
    for (size_t i = 0; i < count; ++i) {
      float want;
      std::memcpy(&want, expected_bytes.data() + (offset + i) * 4, 4);
      ASSERT_EQ(bits_of(t.data<float>()[i]), bits_of(want)) << "value " << i << ": " << want;
      ASSERT_EQ(bits_of(ref[i]), bits_of(want)) << "reference, value " << i;
    }
  }
}

TEST(DequantTest, TinyFixtureLoadsEverySupportedType) {
  const GgufFile file = GgufFile::open(kDataDir / "tiny_types.gguf-fixture");
  ASSERT_EQ(file.tensors().size(), 10u);
  for (const GgufTensorInfo& info : file.tensors()) {
    SCOPED_TRACE(info.name);
    EXPECT_EQ(info.name, [&] {
      std::string lower = ggml_type_name(info.type);
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return lower;
    }());
    if (info.ggml_type() == GgmlType::Q5_0) {
      EXPECT_THROW(file.load_tensor(info), ModelError);
      continue;
    }
    const Tensor t = file.load_tensor(info);
    std::vector<float> ref(static_cast<size_t>(info.numel));
    dequantize_to_f32_reference(info.type, file.tensor_data(info), ref.data(), info.numel);
    for (int64_t i = 0; i < info.numel; ++i) {
      ASSERT_EQ(bits_of(t.data<float>()[i]), bits_of(ref[static_cast<size_t>(i)])) << i;
      ASSERT_TRUE(std::isfinite(ref[static_cast<size_t>(i)])) << i;
    }
  }
}

TEST(DequantTest, LoadsAsF16AndBf16ThroughF32) {
  const GgufFile file = GgufFile::open(kDataDir / "quants.gguf-fixture");
  for (const char* name : {"q4_1", "q6_k", "f16", "bf16", "f32"}) {
    SCOPED_TRACE(name);
    const Tensor f32 = file.load_tensor(name, TS_F32);
    const Tensor f16 = file.load_tensor(name, TS_F16);
    const Tensor bf16 = file.load_tensor(name, TS_BF16);
    ASSERT_EQ(f16.dtype(), TS_F16);
    ASSERT_EQ(bf16.dtype(), TS_BF16);
    ASSERT_EQ(f16.shape(), f32.shape());
    for (int64_t i = 0; i < f32.numel(); ++i) {
      ASSERT_EQ(f16.data<uint16_t>()[i], f32_to_f16(f32.data<float>()[i])) << i;
      ASSERT_EQ(bf16.data<uint16_t>()[i], f32_to_bf16(f32.data<float>()[i])) << i;
    }
  }
  EXPECT_NE(model_error_of([&] { file.load_tensor("q4_1", TS_I32); }).find("expected f32, f16"),
            std::string::npos);
}

// ---- Parsing the fixtures -------------------------------------------------------------------

TEST(GgufTest, ReadsTensorInfosOfQuantFixture) {
  const GgufFile file = GgufFile::open(kDataDir / "quants.gguf-fixture");
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 32u);
  EXPECT_EQ(file.get_string("general.name"), "quant fixtures");
  ASSERT_EQ(file.tensors().size(), 10u);
  EXPECT_EQ(file.data_offset() % 32, 0u);
  const GgufTensorInfo& q4k = file.tensor("q4_k");
  EXPECT_EQ(q4k.ggml_type(), GgmlType::Q4_K);
  EXPECT_EQ(q4k.ne, (std::vector<int64_t>{512, 2}));
  EXPECT_EQ(q4k.shape(), (std::vector<int64_t>{2, 512}));
  EXPECT_EQ(q4k.numel, 1024);
  EXPECT_EQ(q4k.bytes, 4u * 144u);
  uint64_t previous_end = 0;
  for (const GgufTensorInfo& t : file.tensors()) {
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    EXPECT_EQ(t.file_offset, file.data_offset() + t.offset) << t.name;
    EXPECT_GE(t.offset, previous_end) << t.name;
    EXPECT_LE(t.file_offset + t.bytes, file.file_size()) << t.name;
    previous_end = t.offset + t.bytes;
  }
  EXPECT_EQ(file.find_tensor("nope"), nullptr);
  const std::string missing = model_error_of([&] { file.tensor("nope"); });
  EXPECT_NE(missing.find("no tensor named 'nope'"), std::string::npos) << missing;
  const std::string q5 = model_error_of([&] { file.load_tensor("q5_0_unsupported"); });
  EXPECT_NE(q5.find("Q5_0"), std::string::npos) << q5;
  EXPECT_NE(q5.find("q5_0_unsupported"), std::string::npos) << q5;
}

void expect_metadata_fixture(const GgufFile& file) {
  EXPECT_EQ(file.alignment(), 64u);
  EXPECT_EQ(file.metadata().size(), 19u);
  EXPECT_EQ(file.metadata()[0].key, "general.architecture");
  EXPECT_EQ(file.get_string("general.architecture"), "test");
  EXPECT_EQ(file.get_int("test.u8"), 200);
  EXPECT_EQ(file.find("test.u8")->type(), GgufValueType::UINT8);
  EXPECT_EQ(file.get_int("test.i8"), -100);
  EXPECT_EQ(file.get_int("test.u16"), 60000);
  EXPECT_EQ(file.get_int("test.i16"), -30000);
  EXPECT_EQ(file.get_int("test.u32"), 4000000000);
  EXPECT_EQ(file.get_int("test.i32"), -2000000000);
  EXPECT_EQ(file.get_float("test.f32"), 3.5);
  EXPECT_EQ(file.get_bool("test.bool"), true);
  EXPECT_EQ(file.get_string("test.string"), "h\xc3\xa9llo w\xc3\xb6rld");
  EXPECT_EQ(file.find("test.u64")->as_uint(), (uint64_t{1} << 63) + 5);
  EXPECT_FALSE(file.find("test.u64")->as_int().has_value());  // does not fit int64
  EXPECT_EQ(file.get_int("test.i64"), -(int64_t{1} << 62));
  EXPECT_EQ(file.get_float("test.f64"), 3.141592653589793);

  EXPECT_EQ(file.get_array("test.array_i32").as_int_array(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(file.get_array("test.array_i32").element_type(), GgufValueType::INT32);
  EXPECT_EQ(file.get_array("test.array_f32").as_float_array(), (std::vector<double>{0.5, 1.5}));
  EXPECT_EQ(file.get_array("test.array_u8").as_int_array(), (std::vector<int64_t>{7, 8, 9, 10}));
  const GgufValue& strs = file.get_array("test.array_str");
  ASSERT_EQ(strs.size(), 3u);
  EXPECT_EQ(strs.strings()[1], "bc");
  EXPECT_EQ(strs.strings()[2], "");
  EXPECT_EQ(strs.element(0).as_string(), "a");
  EXPECT_THROW(strs.element(3), std::out_of_range);
  const GgufValue& nested = file.get_array("test.array_nested");
  ASSERT_EQ(nested.element_type(), GgufValueType::ARRAY);
  ASSERT_EQ(nested.nested().size(), 3u);
  EXPECT_EQ(nested.nested()[0].as_int_array(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(nested.nested()[1].as_int_array(), (std::vector<int64_t>{3}));
  EXPECT_EQ(nested.nested()[2].strings(), (std::vector<std::string_view>{"x", "yz"}));
  EXPECT_EQ(nested.element(1).as_int_array(), (std::vector<int64_t>{3}));
  EXPECT_EQ(nested.to_string(), "[array of 3 array]");

  ASSERT_EQ(file.tensors().size(), 2u);
  for (const GgufTensorInfo& t : file.tensors()) EXPECT_EQ(t.file_offset % 64, 0u) << t.name;
  const Tensor b = file.load_tensor("b");
  EXPECT_EQ(b.shape(), (std::vector<int64_t>{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b.data<float>()[i], static_cast<float>(i));
  const Tensor a = file.load_tensor("a");
  EXPECT_EQ(a.shape(), (std::vector<int64_t>{5}));
  EXPECT_EQ(a.data<float>()[4], 4.0f);
}

TEST(GgufTest, ReadsEveryMetadataTypeVersion3) {
  const GgufFile file = GgufFile::open(kDataDir / "metadata.gguf-fixture");
  EXPECT_EQ(file.version(), 3u);
  expect_metadata_fixture(file);
}

TEST(GgufTest, ReadsVersion2) {
  const GgufFile file = GgufFile::open(kDataDir / "metadata_v2.gguf-fixture");
  EXPECT_EQ(file.version(), 2u);
  expect_metadata_fixture(file);
}

TEST(GgufTest, TypedLookupsNameTheKeyOnError) {
  const GgufFile file = GgufFile::open(kDataDir / "metadata.gguf-fixture");
  const std::string wrong = model_error_of([&] { file.get_int("test.string"); });
  EXPECT_NE(wrong.find("'test.string'"), std::string::npos) << wrong;
  EXPECT_NE(wrong.find("expected an integer"), std::string::npos) << wrong;
  const std::string missing = model_error_of([&] { file.get_string("no.such.key"); });
  EXPECT_NE(missing.find("'no.such.key' is missing"), std::string::npos) << missing;
  EXPECT_NE(missing.find("metadata.gguf-fixture"), std::string::npos) << missing;
  EXPECT_EQ(file.get_int("no.such.key", 7), 7);
  EXPECT_EQ(file.get_string("no.such.key", "x"), "x");
  EXPECT_EQ(file.get_float("test.u8", 0.0), 200.0);
  EXPECT_THROW(file.get_int("test.string", 7), ModelError);  // present but wrong type
  EXPECT_THROW(file.get_bool("test.u8"), ModelError);
  EXPECT_THROW(file.get_array("test.u8"), ModelError);
  EXPECT_THROW(file.get_int("test.bool"), ModelError);
}

// ---- Refusals and corrupt files -------------------------------------------------------------

TEST(GgufTest, RefusesMissingEmptyAndNonGgufFiles) {
  const std::string missing = model_error_of([] { GgufFile::open("/nonexistent/x.gguf"); });
  EXPECT_NE(missing.find("/nonexistent/x.gguf"), std::string::npos) << missing;
  EXPECT_THROW(GgufFile::open(kDataDir), ModelError);  // a directory
  const fs::path empty = fs::temp_directory_path() / "tessera_gguf_empty_test.gguf";
  std::ofstream(empty).close();
  const std::string empty_error = model_error_of([&] { GgufFile::open(empty); });
  EXPECT_NE(empty_error.find("empty"), std::string::npos) << empty_error;
  fs::remove(empty);
  const Bytes text = {'{', '"', 'a', '"', ':', '1', '}'};
  const std::string magic = model_error_of([&] { parse(text); });
  EXPECT_NE(magic.find("does not start with \"GGUF\""), std::string::npos) << magic;
  EXPECT_NE(magic.find("mem.gguf"), std::string::npos) << magic;
}

TEST(GgufTest, RefusesVersion1BigEndianAndUnknownVersions) {
  Bytes file = read_bytes(kDataDir / "metadata.gguf-fixture");
  put_u32(file, 4, 1);
  const std::string v1 = model_error_of([&] { parse(file); });
  EXPECT_NE(v1.find("version 1 is not supported"), std::string::npos) << v1;
  EXPECT_NE(v1.find("byte offset 4"), std::string::npos) << v1;
  put_u32(file, 4, 0x03000000);
  const std::string be = model_error_of([&] { parse(file); });
  EXPECT_NE(be.find("big-endian"), std::string::npos) << be;
  put_u32(file, 4, 4);
  const std::string v4 = model_error_of([&] { parse(file); });
  EXPECT_NE(v4.find("unknown GGUF version 4"), std::string::npos) << v4;
}

TEST(GgufTest, CorruptStringLengthNamesFileOffsetAndField) {
  Bytes file = read_bytes(kDataDir / "metadata.gguf-fixture");
  const size_t length_at = after_key(file, "test.string") + 4;  // after the u32 value type
  put_u64(file, length_at, uint64_t{1} << 40);
  const std::string e = model_error_of([&] { parse(file, "corrupt.gguf"); });
  EXPECT_NE(e.find("'corrupt.gguf'"), std::string::npos) << e;
  EXPECT_NE(e.find("byte offset " + std::to_string(length_at)), std::string::npos) << e;
  EXPECT_NE(e.find("metadata key 10 'test.string' value string length"), std::string::npos) << e;
  EXPECT_NE(e.find(std::to_string(uint64_t{1} << 40)), std::string::npos) << e;
}

TEST(GgufTest, HugeCountsAreRejectedBeforeAllocating) {
  const Bytes original = read_bytes(kDataDir / "metadata.gguf-fixture");
  {
    Bytes file = original;
    const size_t count_at = after_key(file, "test.array_u8") + 4 + 4;  // type, element type
    put_u64(file, count_at, uint64_t{1} << 62);
    const std::string e = model_error_of([&] { parse(file); });
    EXPECT_NE(e.find("'test.array_u8' array length"), std::string::npos) << e;
    EXPECT_NE(e.find("byte offset " + std::to_string(count_at)), std::string::npos) << e;
  }
  {
    Bytes file = original;
    const size_t count_at = after_key(file, "test.array_str") + 4 + 4;
    put_u64(file, count_at, ~uint64_t{0});
    EXPECT_NE(model_error_of([&] { parse(file); }).find("array length"), std::string::npos);
  }
  {
    Bytes file = original;
    put_u64(file, 8, uint64_t{1} << 60);  // tensor count
    EXPECT_NE(model_error_of([&] { parse(file); }).find("tensor count"), std::string::npos);
    file = original;
    put_u64(file, 16, ~uint64_t{0});  // metadata count
    EXPECT_NE(model_error_of([&] { parse(file); }).find("metadata count"), std::string::npos);
  }
}

TEST(GgufTest, RejectsBadValueTypesDuplicatesAndAlignment) {
  const Bytes original = read_bytes(kDataDir / "metadata.gguf-fixture");
  Bytes file = original;
  put_u32(file, after_key(file, "test.u16"), 13);
  std::string e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("'test.u16' value type: unknown value type 13"), std::string::npos) << e;

  file = original;
  put_u32(file, after_key(file, "test.array_i32") + 4, 77);
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("array element type: unknown value type 77"), std::string::npos) << e;

  file = original;
  file[find_bytes(file, "test.i8")] = 'x';  // "xest.i8" is fine...
  EXPECT_NO_THROW(parse(file));
  file = original;
  file[find_bytes(file, "test.i8") + 5] = 'u';  // ...but a second "test.u8" is not
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("the key is repeated"), std::string::npos) << e;

  file = original;
  put_u32(file, after_key(file, "general.alignment") + 4, 48);
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("'general.alignment' value: 48"), std::string::npos) << e;
  EXPECT_NE(e.find("power of two"), std::string::npos) << e;
}

TEST(GgufTest, RejectsBadTensorInfos) {
  const Bytes original = read_bytes(kDataDir / "metadata.gguf-fixture");
  const GgufFile parsed = parse(original);
  // Tensor "b" info: name, u32 n_dims, u64 dims, u32 type, u64 offset. It follows "a".
  const size_t b_name = find_bytes(original, std::string_view("\x01\0\0\0\0\0\0\0b", 9)) + 9;
  const size_t b_offset_field = b_name + 4 + 2 * 8 + 4;
  Bytes file = original;
  put_u64(file, b_offset_field, parsed.tensor("b").offset + 4);
  std::string e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("tensor 1 'b' data offset"), std::string::npos) << e;
  EXPECT_NE(e.find("multiple of the alignment 64"), std::string::npos) << e;
  EXPECT_NE(e.find("byte offset " + std::to_string(b_offset_field)), std::string::npos) << e;

  file = original;
  put_u64(file, b_offset_field, 64 * 1000);
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("past the end of the file"), std::string::npos) << e;

  file = original;
  put_u64(file, b_offset_field, 0);  // on top of "a"
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("overlap"), std::string::npos) << e;

  file = original;
  put_u32(file, b_name, 5);
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("dimension count: 5; expected at most 4"), std::string::npos) << e;

  file = original;
  put_u32(file, b_name + 4 + 16, 4);  // retired type id
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("unknown ggml type id 4"), std::string::npos) << e;

  file = original;
  put_u32(file, b_name + 4 + 16, static_cast<uint32_t>(GgmlType::Q8_0));  // 3 is not 32k
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("multiple of the Q8_0 block size 32"), std::string::npos) << e;

  file = original;  // 2^62 f32 values fit an int64 count but not a 64-bit byte count
  put_u64(file, b_name + 4, uint64_t{1} << 61);
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("overflow a 64-bit byte count"), std::string::npos) << e;

  file = original;
  put_u64(file, b_name + 4, uint64_t{1} << 62);
  put_u64(file, b_name + 12, uint64_t{1} << 62);
  e = model_error_of([&] { parse(file); });
  EXPECT_NE(e.find("overflow"), std::string::npos) << e;
}

TEST(GgufTest, SyntheticFilesNestingAndEmptyArrays) {
  // Arrays nested 20 deep are refused by name, not by a stack overflow.
  GgufBuilder deep;
  deep.header(3, 0, 1);
  deep.str("deep");
  deep.u32(static_cast<uint32_t>(GgufValueType::ARRAY));
  for (int i = 0; i < 20; ++i) {
    deep.u32(static_cast<uint32_t>(GgufValueType::ARRAY));
    deep.u64(1);
  }
  const std::string e = model_error_of([&] { parse(deep.out); });
  EXPECT_NE(e.find("nested deeper than 8"), std::string::npos) << e;

  // An empty array, a zero-tensor file with no data section, and duplicate tensor names.
  GgufBuilder ok;
  ok.header(2, 0, 1);
  ok.str("empty");
  ok.u32(static_cast<uint32_t>(GgufValueType::ARRAY));
  ok.u32(static_cast<uint32_t>(GgufValueType::STRING));
  ok.u64(0);
  const GgufFile f = parse(ok.out);
  EXPECT_EQ(f.get_array("empty").size(), 0u);
  EXPECT_TRUE(f.tensors().empty());

  GgufBuilder dup;
  dup.header(3, 2, 0);
  for (int i = 0; i < 2; ++i) {
    dup.str("w");
    dup.u32(1);
    dup.u64(4);
    dup.u32(static_cast<uint32_t>(GgmlType::F32));
    dup.u64(static_cast<uint64_t>(i) * 32);
  }
  dup.pad_to(32);
  dup.out.resize(dup.out.size() + 64);
  EXPECT_NE(model_error_of([&] { parse(dup.out); }).find("name is repeated"), std::string::npos);
}

TEST(GgufTest, EveryTruncationThrowsModelError) {
  const Bytes original = read_bytes(kDataDir / "quants.gguf-fixture");
  const GgufFile full = parse(original);
  uint64_t needed = 0;
  for (const GgufTensorInfo& t : full.tensors()) needed = std::max(needed, t.file_offset + t.bytes);
  for (size_t size = 0; size < original.size(); ++size) {
    const Bytes cut(original.begin(), original.begin() + static_cast<std::ptrdiff_t>(size));
    if (size < needed) {
      EXPECT_THROW(parse(cut), ModelError) << "truncated to " << size;
    } else {
      EXPECT_NO_THROW(parse(cut)) << "truncated to " << size << " (only padding lost)";
    }
  }
}

// Either parses (and then every tensor loads or is refused by ModelError) or throws ModelError.
void parse_and_load_everything(const Bytes& bytes, const std::string& name) {
  try {
    const GgufFile file = parse(bytes, name);
    for (const GgufMetadataEntry& entry : file.metadata()) (void)entry.value.to_string();
    for (const GgufTensorInfo& t : file.tensors()) {
      try {
        const Tensor loaded = file.load_tensor(t);
        EXPECT_EQ(loaded.numel(), t.numel);
      } catch (const ModelError&) {
      }
    }
  } catch (const ModelError&) {
  }
}

TEST(GgufTest, RandomByteCorruptionNeverCrashes) {
  std::mt19937 rng(12345);
  for (const char* fixture : {"metadata.gguf-fixture", "quants.gguf-fixture"}) {
    const Bytes original = read_bytes(kDataDir / fixture);
    for (int round = 0; round < 400; ++round) {
      Bytes file = original;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) {
        // Mostly in the header and infos, where the structure is.
        const size_t limit = rng() % 4 == 0 ? file.size() : std::min<size_t>(file.size(), 1024);
        file[rng() % limit] = static_cast<uint8_t>(rng());
      }
      ASSERT_NO_FATAL_FAILURE(parse_and_load_everything(file, fixture));
    }
  }
}

// Inputs kept by the libFuzzer runs (scripts/fuzz.sh gguf) stay regressions here.
TEST(GgufTest, FuzzCorpusParsesOrThrowsModelError) {
  const fs::path corpus = fs::path(TESSERA_SOURCE_DIR) / "fuzz" / "corpus" / "gguf";
  ASSERT_TRUE(fs::is_directory(corpus)) << corpus;
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    if (!entry.is_regular_file()) continue;
    ++files;
    ASSERT_NO_FATAL_FAILURE(
        parse_and_load_everything(read_bytes(entry.path()), entry.path().filename().string()));
  }
  EXPECT_GT(files, 0u);
}

// ---- The real default model -----------------------------------------------------------------

fs::path smollm2_path() {
  return test::default_model_path();
}

TEST(GgufSmolLM2Test, MetadataOfTheDefaultModel) {
  const fs::path path = smollm2_path();
  TESSERA_NEED_DEFAULT_MODEL(fs::exists(path), path.string());
  const GgufFile file = GgufFile::open(path);
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.get_int("llama.block_count"), 30);
  EXPECT_EQ(file.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(file.get_int("llama.attention.head_count"), 9);
  EXPECT_EQ(file.get_int("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(file.get_int("llama.feed_forward_length"), 1536);
  EXPECT_FLOAT_EQ(static_cast<float>(file.get_float("llama.rope.freq_base")), 100000.0f);
  EXPECT_EQ(file.get_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(file.get_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(file.tensors().size(), 272u);
  const GgufTensorInfo& embd = file.tensor("token_embd.weight");
  EXPECT_EQ(embd.shape(), (std::vector<int64_t>{49152, 576}));
}

TEST(GgufSmolLM2Test, EveryTensorDequantisesAndMatchesPython) {
  const fs::path path = smollm2_path();
  TESSERA_NEED_DEFAULT_MODEL(fs::exists(path), path.string());
  const GgufFile file = GgufFile::open(path);
  const nlohmann::json golden =
      nlohmann::json::parse(std::ifstream(kGoldenDir / "smollm2_q4_1.json"));
  ASSERT_EQ(golden["tensor_count"].get<size_t>(), file.tensors().size());
  int64_t total = 0;
  for (const GgufTensorInfo& info : file.tensors()) {
    SCOPED_TRACE(info.name);
    const Tensor t = file.load_tensor(info);
    ASSERT_EQ(t.numel(), info.numel);
    total += t.numel();
    const float* v = t.data<float>();
    int64_t not_finite = 0;  // counted, not asserted per value: 135M assertions are slow
    for (int64_t i = 0; i < t.numel(); ++i) not_finite += std::isfinite(v[i]) ? 0 : 1;
    ASSERT_EQ(not_finite, 0);
    if (!golden["tensors"].contains(info.name)) continue;
    const auto& g = golden["tensors"][info.name];
    EXPECT_EQ(ggml_type_name(info.type), g["type"].get<std::string>());
    EXPECT_EQ(info.ne, g["ne"].get<std::vector<int64_t>>());
    const int64_t row_len = info.ne[0];
    for (const auto& [row, expect] : g["rows"].items()) {
      const float* r = v + std::stoll(row) * row_len;
      const auto first = expect["first"].get<std::vector<double>>();
      for (size_t i = 0; i < first.size(); ++i) {
        EXPECT_EQ(r[i], static_cast<float>(first[i])) << "row " << row << " value " << i;
      }
      double sum = 0;
      for (int64_t i = 0; i < row_len; ++i) sum += r[i];
      const double want = expect["sum"].get<double>();
      EXPECT_NEAR(sum, want, 1e-6 * (1 + std::abs(want))) << "row " << row;
    }
  }
  EXPECT_GT(total, 130'000'000);
}

}  // namespace
}  // namespace tessera
