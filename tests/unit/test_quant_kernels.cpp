// The quantised-weight kernels of tessera/cpu/quant_matmul.hpp on every path this CPU runs
// (the portable scalar body, AVX2, AVX-512 without VNNI, AVX-512 VNNI), for all six block
// dtypes, against the scalar definitions of tessera/quant/blocks.hpp:
//  - quantize_activations: the reference's blocks exactly (d's bits, every q, sum), including
//    all-zero blocks and products that fall exactly on .5 (rounded away from zero).
//  - dequantize_rows: the reference decoders' floats bit for bit.
//  - quant_gemm_rows: quant_gemv_rows's floats bit for bit, x row by x row.
//  - quant_gemv_rows: within 1e-5 * Σ|w x| of quant::dot_reference (the same quantised values
//    dequantised and summed in double): a float sum of k terms in another order, with one
//    rounding of each block's scale, stays orders of magnitude inside.
// Weights are random bytes (nibbles, scales, minima, high bits) with sane f16 scales.
#include <tessera/abi.h>
#include <tessera/cpu/isa.hpp>
#include <tessera/cpu/quant_matmul.hpp>
#include <tessera/dtype.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/quant/blocks.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

using tessera::cpu::Isa;
using tessera::quant::ActBlock;

constexpr ts_dtype kDtypes[] = {TS_Q8_0, TS_Q4_0, TS_Q4_1, TS_Q4_K, TS_Q5_K, TS_Q6_K};

// One way the kernels can run: an instruction set, and VNNI on or off within AVX-512.
struct KernelPath {
  const char* name;
  Isa isa;
  bool vnni;
};

// Every path this CPU runs.
std::vector<KernelPath> paths_to_test() {
  std::vector<KernelPath> paths = {{"scalar", Isa::scalar, false}};
  if (tessera::cpu::supported_isa() >= Isa::avx2) paths.push_back({"avx2", Isa::avx2, false});
  if (tessera::cpu::supported_isa() == Isa::avx512) {
    paths.push_back({"avx512", Isa::avx512, false});
    if (tessera::cpu::supported_vnni()) paths.push_back({"avx512-vnni", Isa::avx512, true});
  }
  return paths;
}

// Runs the kernels on one path for a scope, then restores the limits found.
class PathScope {
 public:
  explicit PathScope(const KernelPath& path)
      : isa_(tessera::cpu::detail::isa_limit_slot().load()),
        vnni_(tessera::cpu::detail::vnni_allowed_slot().load()) {
    tessera::cpu::set_isa_limit(path.isa);
    tessera::cpu::set_vnni_allowed(path.vnni);
  }
  ~PathScope() {
    tessera::cpu::detail::isa_limit_slot().store(isa_);
    tessera::cpu::set_vnni_allowed(vnni_);
  }
  PathScope(const PathScope&) = delete;
  PathScope& operator=(const PathScope&) = delete;

 private:
  int isa_;
  bool vnni_;
};

void put_f16(uint8_t* p, float v) {
  const uint16_t h = tessera::f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// `rows` rows of k values of `dtype`, row_bytes apart (>= the packed size: padding between
// rows is random too): random bytes, with every f16 scale a sane value (a minimum too: Q4_1's
// m may be negative, the K types' dmin is subtracted).
std::vector<uint8_t> random_rows(ts_dtype dtype, int64_t rows, int64_t k, size_t row_bytes,
                                 uint64_t seed) {
  tessera::Rng rng(seed);
  std::vector<uint8_t> w(static_cast<size_t>(rows) * row_bytes);
  for (uint8_t& b : w) b = static_cast<uint8_t>(rng.next());
  const size_t bytes = tessera::dtype_block_bytes(dtype);
  const int64_t blocks = k / tessera::dtype_block_elems(dtype);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < blocks; ++i) {
      uint8_t* b = w.data() + static_cast<size_t>(r) * row_bytes + static_cast<size_t>(i) * bytes;
      const float scale = 0.001f + 0.05f * rng.uniform();
      switch (dtype) {
        case TS_Q8_0:
        case TS_Q4_0:
          put_f16(b, rng.uniform() < 0.5f ? scale : -scale);
          break;
        case TS_Q4_1:
          put_f16(b, scale);
          put_f16(b + 2, -0.4f + 0.3f * rng.uniform());
          break;
        case TS_Q4_K:
        case TS_Q5_K:
          put_f16(b, 0.01f * scale);
          put_f16(b + 2, 0.01f * rng.uniform());
          break;
        case TS_Q6_K:
          put_f16(b + 208, 0.01f * scale);
          break;
        default:
          break;
      }
    }
  return w;
}

// n activations quantised by the reference; block `zero_block` (if in range) all zero.
std::vector<ActBlock> random_activations(int64_t n, uint64_t seed, int64_t zero_block = -1) {
  tessera::Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = rng.normal() * (0.1f + rng.uniform());
  if (zero_block >= 0 && zero_block < n / 32) std::fill_n(x.begin() + zero_block * 32, 32, 0.0f);
  std::vector<ActBlock> xq(static_cast<size_t>(n / 32));
  tessera::quant::quantize_activations_reference(x.data(), n, xq.data());
  return xq;
}

// Σ |w x| over a row: the scale of the sum's rounding errors.
double magnitude(ts_dtype dtype, const uint8_t* row, const ActBlock* xq, int64_t k) {
  std::vector<float> w(static_cast<size_t>(k));
  EXPECT_TRUE(tessera::quant::dequantize_row_reference(dtype, row, w.data(), k));
  double s = 0;
  for (int64_t c = 0; c < k; ++c)
    s += std::fabs(static_cast<double>(w[c]) * xq[c / 32].d * xq[c / 32].q[c % 32]);
  return s;
}

constexpr double kRelTol = 1e-5;

TEST(QuantKernels, VnniCanBeForbidden) {
  const PathScope scope({"avx512", Isa::avx512, true});
  EXPECT_EQ(tessera::cpu::active_vnni(),
            tessera::cpu::supported_isa() == Isa::avx512 && tessera::cpu::supported_vnni());
  tessera::cpu::set_vnni_allowed(false);
  EXPECT_FALSE(tessera::cpu::active_vnni());
  tessera::cpu::set_vnni_allowed(true);
  tessera::cpu::set_isa_limit(Isa::avx2);
  EXPECT_FALSE(tessera::cpu::active_vnni());
}

TEST(QuantKernels, ScalarBlockDotMatchesReference) {
  for (const ts_dtype dtype : kDtypes) {
    const int64_t block = tessera::dtype_block_elems(dtype);
    const size_t bytes = tessera::dtype_block_bytes(dtype);
    for (uint64_t seed = 1; seed <= 50; ++seed) {
      const std::vector<uint8_t> w = random_rows(dtype, 1, block, bytes, seed);
      const std::vector<ActBlock> xq = random_activations(block, seed + 100, seed % 9);
      const double want = tessera::quant::dot_reference(dtype, w.data(), xq.data(), block);
      const double got = tessera::cpu::quant_detail::dot_block_scalar(dtype, w.data(), xq.data());
      ASSERT_LE(std::fabs(got - want), kRelTol * magnitude(dtype, w.data(), xq.data(), block))
          << tessera::dtype_name(dtype) << " seed " << seed << ": got " << got << ", want " << want;
    }
  }
}

TEST(QuantKernels, GemvMatchesReferenceOnEveryPath) {
  for (const KernelPath& path : paths_to_test()) {
    const PathScope scope(path);
    ASSERT_EQ(tessera::cpu::active_isa(), path.isa);
    ASSERT_EQ(tessera::cpu::active_vnni(), path.vnni);
    for (const ts_dtype dtype : kDtypes) {
      const bool k_type = tessera::dtype_block_elems(dtype) == 256;
      std::vector<int64_t> ks = {256, 512, 1536};
      if (!k_type) ks.insert(ks.end(), {96, 800});  // odd numbers of 32-value blocks
      for (const int64_t k : ks)
        for (const int64_t rows : {1, 3, 7, 13}) {
          const std::string what = std::string(path.name) + " " + tessera::dtype_name(dtype) +
                                   " k " + std::to_string(k) + " rows " + std::to_string(rows);
          // Padded rows for some shapes: the kernels must honour row_bytes.
          const size_t row_bytes = tessera::dtype_bytes(dtype, k) + (rows > 3 ? 7 : 0);
          const std::vector<uint8_t> w = random_rows(dtype, rows + 2, k, row_bytes, k + rows);
          const std::vector<ActBlock> xq = random_activations(k, k * rows, rows);
          // Rows [1, rows + 1) of a larger matrix: y indexed by row, its ends untouched.
          std::vector<float> y(static_cast<size_t>(rows + 2), -7.0f);
          tessera::cpu::quant_gemv_rows(dtype, w.data(), row_bytes, k, 1, rows + 1, xq.data(),
                                        y.data());
          EXPECT_EQ(y[0], -7.0f) << what;
          EXPECT_EQ(y[static_cast<size_t>(rows + 1)], -7.0f) << what;
          for (int64_t r = 1; r <= rows; ++r) {
            const uint8_t* row = w.data() + static_cast<size_t>(r) * row_bytes;
            const double want = tessera::quant::dot_reference(dtype, row, xq.data(), k);
            const double bound = kRelTol * magnitude(dtype, row, xq.data(), k);
            ASSERT_GT(bound, 0.0) << what;
            ASSERT_LE(std::fabs(y[r] - want), bound)
                << what << " row " << r << ": got " << y[r] << ", want " << want;
          }
        }
    }
  }
}

// quant_gemm_rows against quant_gemv_rows row by row, bit for bit, on every path: m rows of x
// over W rows [1, rows + 1) (ranges that are not whole tiles), y with a stride wider than the
// rows and every value outside the outputs untouched.
TEST(QuantKernels, GemmIsGemvBitForBitOnEveryPath) {
  for (const KernelPath& path : paths_to_test()) {
    const PathScope scope(path);
    ASSERT_EQ(tessera::cpu::active_isa(), path.isa);
    ASSERT_EQ(tessera::cpu::active_vnni(), path.vnni);
    for (const ts_dtype dtype : kDtypes) {
      const bool k_type = tessera::dtype_block_elems(dtype) == 256;
      const std::vector<int64_t> ks =
          k_type ? std::vector<int64_t>{256, 768} : std::vector<int64_t>{96, 576};  // 3, 18 blocks
      for (const int64_t k : ks)
        for (const int64_t rows : {1, 4, 13})
          for (const int64_t m : {1, 2, 5, 9, 64}) {
            const std::string what = std::string(path.name) + " " + tessera::dtype_name(dtype) +
                                     " k " + std::to_string(k) + " rows " + std::to_string(rows) +
                                     " m " + std::to_string(m);
            const size_t row_bytes = tessera::dtype_bytes(dtype, k) + (rows > 4 ? 5 : 0);
            const std::vector<uint8_t> w =
                random_rows(dtype, rows + 2, k, row_bytes, 3 * k + rows + m);
            std::vector<ActBlock> xq;
            for (int64_t i = 0; i < m; ++i) {
              const std::vector<ActBlock> row = random_activations(k, 1000 * i + k + rows, i % 5);
              xq.insert(xq.end(), row.begin(), row.end());
            }
            const int64_t ldy = rows + 5;
            std::vector<float> got(static_cast<size_t>(m * ldy), -7.0f);
            tessera::cpu::quant_gemm_rows(dtype, w.data(), row_bytes, k, 1, rows + 1, xq.data(), m,
                                          got.data(), ldy);
            std::vector<float> want(got.size(), -7.0f);
            for (int64_t i = 0; i < m; ++i)
              tessera::cpu::quant_gemv_rows(dtype, w.data(), row_bytes, k, 1, rows + 1,
                                            xq.data() + i * (k / 32), want.data() + i * ldy);
            for (int64_t i = 0; i < m; ++i)
              for (int64_t r = 0; r < ldy; ++r) {
                const size_t at = static_cast<size_t>(i * ldy + r);
                if (r < 1 || r > rows) {
                  ASSERT_EQ(got[at], -7.0f) << what << ": x row " << i << " y " << r << " written";
                  continue;
                }
                ASSERT_NE(want[at], -7.0f) << what;
                ASSERT_EQ(std::memcmp(&got[at], &want[at], sizeof(float)), 0)
                    << what << ": x row " << i << " W row " << r << ": got " << got[at] << ", gemv "
                    << want[at];
              }
          }
    }
  }
}

TEST(QuantKernels, QuantizeActivationsIsExactOnEveryPath) {
  constexpr int64_t kBlocks = 40;
  std::vector<float> x(static_cast<size_t>(kBlocks * 32));
  tessera::Rng rng(11);
  for (float& v : x) v = rng.normal() * std::exp(4.0f * rng.normal());
  std::fill_n(x.begin() + 32, 32, 0.0f);   // block 1: all zero
  std::fill_n(x.begin() + 64, 32, -0.0f);  // block 2: negative zeros
  // Block 3: max 127 (d = 1, 1 / d = 1), so each x is its own product: halves exactly, and the
  // floats just either side of them.
  const float ties[] = {127.0f,       0.5f,        -0.5f,        1.5f,       -1.5f,
                        2.5f,         -2.5f,       126.5f,       -126.5f,    0.49999997f,
                        -0.49999997f, 0.50000006f, -0.50000006f, 2.4999998f, -2.4999998f,
                        3.5000002f,   0.0f,        -0.0f,        1.0f,       -127.0f};
  std::fill_n(x.begin() + 96, 32, 0.0f);
  std::copy(std::begin(ties), std::end(ties), x.begin() + 96);
  // Block 4: max 63.5 (d = 0.5, 1 / d = 2): 0.25 * 2 = 0.5 and so on.
  for (int l = 0; l < 32; ++l)
    x[128 + static_cast<size_t>(l)] = 0.25f * static_cast<float>(l % 16) - 2.0f;
  x[128 + 31] = 63.5f;
  // Block 5: so small that 1 / d overflows (taken as zero); block 6: small, 1 / d finite.
  std::fill_n(x.begin() + 160, 64, 0.0f);
  x[165] = 1e-37f;
  x[166] = -2e-38f;
  x[192] = 3e-36f;
  x[193] = -1e-36f;
  x[200] = 1e-44f;

  std::vector<ActBlock> want(static_cast<size_t>(kBlocks));
  tessera::quant::quantize_activations_reference(x.data(), kBlocks * 32, want.data());
  // The reference rounds half away from zero (std::lround): a kernel rounding half to even
  // must fail below.
  ASSERT_EQ(want[3].d, 1.0f);
  EXPECT_EQ(want[3].q[1], 1);
  EXPECT_EQ(want[3].q[2], -1);
  EXPECT_EQ(want[3].q[5], 3);
  EXPECT_EQ(want[3].q[6], -3);
  EXPECT_EQ(want[3].q[9], 0);
  EXPECT_EQ(want[1].d, 0.0f);
  EXPECT_EQ(want[5].d, 0.0f);
  EXPECT_EQ(want[5].sum, 0);
  EXPECT_EQ(want[6].q[0], 127);
  EXPECT_EQ(want[6].q[1], -42);

  for (const KernelPath& path : paths_to_test()) {
    const PathScope scope(path);
    std::vector<ActBlock> got(static_cast<size_t>(kBlocks));
    std::memset(got.data(), 0x5a, got.size() * sizeof(ActBlock));
    tessera::cpu::quantize_activations(x.data(), kBlocks * 32, got.data());
    for (int64_t b = 0; b < kBlocks; ++b) {
      const ActBlock& g = got[static_cast<size_t>(b)];
      const ActBlock& e = want[static_cast<size_t>(b)];
      uint32_t gd, ed;
      std::memcpy(&gd, &g.d, 4);
      std::memcpy(&ed, &e.d, 4);
      ASSERT_EQ(gd, ed) << path.name << " block " << b;
      ASSERT_EQ(g.sum, e.sum) << path.name << " block " << b;
      for (int l = 0; l < 32; ++l)
        ASSERT_EQ(g.q[l], e.q[l]) << path.name << " block " << b << " value " << l
                                  << " x = " << x[static_cast<size_t>(b * 32 + l)];
    }
  }
}

TEST(QuantKernels, DequantizeRowsIsBitExactOnEveryPath) {
  for (const KernelPath& path : paths_to_test()) {
    const PathScope scope(path);
    for (const ts_dtype dtype : kDtypes)
      for (const int64_t k : {256, 1536}) {
        constexpr int64_t kRows = 5;
        const size_t row_bytes = tessera::dtype_bytes(dtype, k) + 3;
        const std::vector<uint8_t> w = random_rows(dtype, kRows, k, row_bytes, 77 + k);
        // Rows [2, 5): out holds them from its start.
        std::vector<float> got(static_cast<size_t>(3 * k), -1.0f);
        tessera::cpu::dequantize_rows(dtype, w.data(), row_bytes, k, 2, kRows, got.data());
        std::vector<float> want(got.size());
        for (int64_t r = 2; r < kRows; ++r)
          ASSERT_TRUE(tessera::quant::dequantize_row_reference(
              dtype, w.data() + static_cast<size_t>(r) * row_bytes, want.data() + (r - 2) * k, k));
        for (size_t i = 0; i < got.size(); ++i) {
          uint32_t g, e;
          std::memcpy(&g, &got[i], 4);
          std::memcpy(&e, &want[i], 4);
          ASSERT_EQ(g, e) << path.name << " " << tessera::dtype_name(dtype) << " k " << k
                          << " value " << i << ": got " << got[i] << ", want " << want[i];
        }
      }
  }
}

}  // namespace
