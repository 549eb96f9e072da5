// The fast CPU matmul paths (GEMV for one row, packed 6x16 GEMM for more) against
// the naive reference_matmul_nt, for f32/bf16/f16 weights, on shapes that are
// not multiples of the register tile (6 x 16, or 12 x 16 with AVX-512), of the
// vector width (8 or 16), of the depth block (384) or of
// the packed row block (128), on every instruction set the CPU has (AVX2, and
// AVX-512 where present); attention_queries (one-by-one and 16-query tiles)
// against reference_attention; and the bandwidth probe.
#include <tessera/cpu/attention.hpp>
#include <tessera/cpu/attention_split.hpp>
#include <tessera/cpu/isa.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/dtype.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/tools/bandwidth_probe.hpp>

#include <gtest/gtest.h>

#include "isa_scope.hpp"

#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using tessera::cpu::Isa;
using tessera::cpu::MatrixView;

using tessera::test::isas_to_test;
using tessera::test::IsaScope;

std::vector<float> normal_floats(size_t n, uint64_t seed) {
  tessera::Rng rng(seed);
  std::vector<float> v(n);
  for (float& f : v) f = rng.normal();
  return v;
}

// A [rows, cols] weight in `dtype` with row stride `stride` >= cols.
struct Weight {
  std::vector<float> f32;
  std::vector<uint16_t> half;
  MatrixView view;
};

Weight make_weight(ts_dtype dtype, int64_t rows, int64_t cols, int64_t stride, uint64_t seed) {
  Weight w;
  w.f32 = normal_floats(static_cast<size_t>(rows * stride), seed);
  if (dtype != TS_F32) {
    w.half.resize(w.f32.size());
    for (size_t i = 0; i < w.f32.size(); ++i)
      w.half[i] = dtype == TS_BF16 ? tessera::f32_to_bf16(w.f32[i]) : tessera::f32_to_f16(w.f32[i]);
  }
  const void* data = dtype == TS_F32 ? static_cast<const void*>(w.f32.data()) : w.half.data();
  w.view = MatrixView{data, dtype, rows, cols, stride};
  return w;
}

// Every element within 2e-6 * k of sum_c |x_c w_c| (float rounding of a k-term
// sum in any order stays far inside), and the result not all zeros.
void expect_matches_reference(const std::vector<float>& x, int64_t m, int64_t ldx,
                              const MatrixView& w, const std::vector<float>& got, int64_t ldy,
                              const std::string& what) {
  std::vector<float> want(got.size(), 0.0f);
  tessera::cpu::reference_matmul_nt(x.data(), m, ldx, w, want.data(), ldy);
  double worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < w.rows; ++j) {
      double magnitude = 0;
      for (int64_t c = 0; c < w.cols; ++c)
        magnitude += std::fabs(x[i * ldx + c] * tessera::cpu::matrix_element(w, j, c));
      const double err = std::fabs(got[i * ldy + j] - want[i * ldy + j]);
      const double bound =
          2e-6 * static_cast<double>(std::max<int64_t>(w.cols, 8)) * magnitude + 1e-30;
      worst = std::max(worst, err / bound);
      ASSERT_LE(err, bound) << what << " at [" << i << ", " << j << "]: got " << got[i * ldy + j]
                            << ", want " << want[i * ldy + j];
    }
  EXPECT_LE(worst, 1.0) << what;
}

TEST(CpuKernels, IsaLimitCapsTheActiveInstructionSet) {
  EXPECT_EQ(tessera::cpu::active_isa(), tessera::cpu::supported_isa());
  {
    const IsaScope scope(Isa::avx2);
    EXPECT_EQ(tessera::cpu::active_isa(), Isa::avx2);
  }
  EXPECT_EQ(tessera::cpu::active_isa(), tessera::cpu::supported_isa());
  EXPECT_STREQ(tessera::cpu::isa_name(Isa::avx512), "avx512");
  EXPECT_STREQ(tessera::cpu::isa_name(Isa::avx2), "avx2");
}

TEST(CpuKernels, MatmulPathsMatchReferenceOnOddShapesForEveryDtype) {
  tessera::ThreadPool pool(2);
  for (const Isa isa : isas_to_test())
    for (const ts_dtype dtype : {TS_F32, TS_BF16, TS_F16}) {
      const IsaScope scope(isa);
      for (const int64_t m : {1, 2, 5, 6, 7, 12, 13, 25}) {
        for (const int64_t n : {1, 15, 17, 33, 130}) {
          for (const int64_t k : {1, 7, 9, 37, 50, 385, 800}) {
            const std::string what = std::string(tessera::cpu::isa_name(isa)) + " " +
                                     tessera::dtype_name(dtype) + " m " + std::to_string(m) +
                                     " n " + std::to_string(n) + " k " + std::to_string(k);
            // Padded strides: the kernels must honour them.
            const int64_t ldx = k + 3, ldy = n + 5;
            const Weight w =
                make_weight(dtype, n, k, k + 2, static_cast<uint64_t>(m * 1000 + n + k));
            const std::vector<float> x = normal_floats(static_cast<size_t>(m * ldx), 7);
            for (const tessera::ThreadPool* p :
                 {&pool, static_cast<tessera::ThreadPool*>(nullptr)}) {
              std::vector<float> y(static_cast<size_t>(m * ldy), NAN);
              tessera::cpu::matmul_nt(p ? p->host() : nullptr, x.data(), m, ldx, w.view, y.data(),
                                      ldy);
              expect_matches_reference(x, m, ldx, w.view, y, ldy,
                                       what + (p ? " (2 threads)" : " (1 thread)"));
              // The padding between rows of y is left alone.
              for (int64_t i = 0; i < m; ++i)
                for (int64_t j = n; j < ldy; ++j)
                  ASSERT_TRUE(std::isnan(y[static_cast<size_t>(i * ldy + j)])) << what;
            }
          }
        }
      }
    }
}

TEST(CpuKernels, PrefillSizedGemmMatchesReference) {
  // Several packed row blocks, two depth blocks and a partial last tile.
  tessera::ThreadPool pool(2);
  const int64_t m = 67, n = 300, k = 576;
  for (const Isa isa : isas_to_test())
    for (const ts_dtype dtype : {TS_F32, TS_BF16, TS_F16}) {
      const IsaScope scope(isa);
      const Weight w = make_weight(dtype, n, k, k, 3);
      const std::vector<float> x = normal_floats(static_cast<size_t>(m * k), 4);
      std::vector<float> y(static_cast<size_t>(m * n));
      tessera::cpu::matmul_nt(pool.host(), x.data(), m, k, w.view, y.data(), n);
      expect_matches_reference(
          x, m, k, w.view, y, n,
          std::string(tessera::cpu::isa_name(isa)) + " " + tessera::dtype_name(dtype));
    }
}

TEST(CpuKernels, ZeroDepthGivesZerosAndEmptyProductsWriteNothing) {
  const Weight w = make_weight(TS_BF16, 20, 0, 0, 1);
  std::vector<float> x(3, 1.0f), y(60, NAN);
  tessera::cpu::matmul_nt(nullptr, x.data(), 3, 0, w.view, y.data(), 20);
  for (float v : y) EXPECT_EQ(v, 0.0f);
  std::vector<float> untouched(4, NAN);
  tessera::cpu::matmul_nt(nullptr, x.data(), 0, 1, make_weight(TS_F32, 4, 1, 1, 2).view,
                          untouched.data(), 4);
  for (float v : untouched) EXPECT_TRUE(std::isnan(v));
}

TEST(CpuKernels, ManyProductsInOneRegionEqualEachAlone) {
  tessera::ThreadPool pool(2);
  const int64_t k = 70;
  const Weight a = make_weight(TS_F32, 50, k, k, 1), b = make_weight(TS_BF16, 17, k, k, 2),
               c = make_weight(TS_F16, 33, k, k, 3);
  for (const int64_t m : {1, 9}) {
    const std::vector<float> x = normal_floats(static_cast<size_t>(m * k), 5);
    std::vector<float> ya(static_cast<size_t>(m * 50)), yb(static_cast<size_t>(m * 17)),
        yc(static_cast<size_t>(m * 33));
    const tessera::cpu::MatmulTarget targets[3] = {
        {a.view, ya.data(), 50}, {b.view, yb.data(), 17}, {c.view, yc.data(), 33}};
    tessera::cpu::matmul_nt_many(pool.host(), x.data(), m, k, targets, 3);
    for (const auto& [w, y, n] :
         {std::tuple{&a, &ya, int64_t{50}}, std::tuple{&b, &yb, int64_t{17}},
          std::tuple{&c, &yc, int64_t{33}}}) {
      std::vector<float> alone(y->size());
      tessera::cpu::matmul_nt(nullptr, x.data(), m, k, w->view, alone.data(), n);
      EXPECT_EQ(*y, alone) << "m " << m << " n " << n;
    }
  }
}

// Products of a few rows (the multi-row GEMV with AVX-512) and RowReduction::each_row (any
// number of rows) give every row of y the bits the one-row product of that row gives, with
// or without threads; the rest of the matrix and the thread count change nothing.
TEST(CpuKernels, FewRowAndEachRowProductsGiveEveryRowItsOneRowBits) {
  tessera::ThreadPool pool(2);
  using tessera::cpu::RowReduction;
  for (const Isa isa : isas_to_test())
    for (const ts_dtype dtype : {TS_F32, TS_BF16, TS_F16}) {
      const IsaScope scope(isa);
      for (const int64_t n : {1, 6, 17, 130, 301})
        for (const int64_t k : {7, 37, 50, 385, 800}) {
          const int64_t ldx = k + 3, ldy = n + 5;
          const Weight w = make_weight(dtype, n, k, k + 2, static_cast<uint64_t>(n * 31 + k));
          const std::vector<float> x = normal_floats(static_cast<size_t>(40 * ldx), 9);
          std::vector<float> alone(static_cast<size_t>(40 * ldy), NAN);
          for (int64_t i = 0; i < 40; ++i)
            tessera::cpu::matmul_nt(nullptr, x.data() + i * ldx, 1, ldx, w.view,
                                    alone.data() + i * ldy, ldy);
          for (const RowReduction rows : {RowReduction::fastest, RowReduction::each_row})
            for (const int64_t m : {2, 3, 4, 5, 8, 9, 16, 17, 40}) {
              const bool invariant =
                  rows == RowReduction::each_row || (isa == Isa::avx512 && m <= 16);
              if (!invariant) continue;
              const std::string what = std::string(tessera::cpu::isa_name(isa)) + " " +
                                       tessera::dtype_name(dtype) + " m " + std::to_string(m) +
                                       " n " + std::to_string(n) + " k " + std::to_string(k) +
                                       (rows == RowReduction::each_row ? " each_row" : " fastest");
              for (const tessera::ThreadPool* p :
                   {&pool, static_cast<tessera::ThreadPool*>(nullptr)}) {
                std::vector<float> y(static_cast<size_t>(m * ldy), NAN);
                tessera::cpu::matmul_nt(p ? p->host() : nullptr, x.data(), m, ldx, w.view, y.data(),
                                        ldy, rows);
                for (int64_t i = 0; i < m; ++i)
                  ASSERT_EQ(std::memcmp(y.data() + i * ldy, alone.data() + i * ldy,
                                        static_cast<size_t>(n) * sizeof(float)),
                            0)
                      << what << ": row " << i;
                if (m <= 5) expect_matches_reference(x, m, ldx, w.view, y, ldy, what);
              }
            }
        }
    }
}

TEST(CpuKernels, ParallelClaimsCoverEveryUnitOnceInStepsOnEveryThread) {
  tessera::ThreadPool pool(2);
  for (const tessera::ThreadPool* p : {&pool, static_cast<tessera::ThreadPool*>(nullptr)}) {
    for (const int64_t units : {1, 7, 64, 1001}) {
      for (const int64_t step : {1, 4, 5}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(units));
        std::atomic<int> bad_claims{0};
        tessera::cpu::parallel_claims(p ? p->host() : nullptr, units, step, 1,
                                      [&](int64_t u0, int64_t u1) {
                                        if (u1 - u0 > step || u0 % step != 0)
                                          bad_claims.fetch_add(1);
                                        for (int64_t u = u0; u < u1; ++u)
                                          hits[static_cast<size_t>(u)].fetch_add(1);
                                      });
        EXPECT_EQ(bad_claims.load(), 0);
        for (int64_t u = 0; u < units; ++u)
          ASSERT_EQ(hits[static_cast<size_t>(u)].load(), 1)
              << "unit " << u << " of " << units << ", step " << step;
      }
    }
  }
  // Below the grain everything runs on the calling thread.
  const auto caller = std::this_thread::get_id();
  tessera::cpu::parallel_claims(pool.host(), 10, 1, 10, [&](int64_t, int64_t) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
  });
}

TEST(CpuKernels, UnsupportedWeightDtypeIsRefused) {
  const int32_t data[4] = {1, 2, 3, 4};
  const MatrixView w{data, TS_I32, 2, 2, 2};
  std::vector<float> x(2, 1.0f), y(2);
  EXPECT_THROW(tessera::cpu::matmul_nt(nullptr, x.data(), 1, 2, w, y.data(), 2),
               std::invalid_argument);
}

// `values` in a KV cache of `dtype`: f32 as they are, 16-bit rounded.
// Random K and V rows ([cached + n_new][stride], seeds `seed` and seed + 1) stored in a
// cache of kv_dtype (16-bit: rounded), and the AttentionHead over the first head_dim
// columns; the caller sets mask and scale.
class RandomCache {
 public:
  RandomCache(ts_dtype kv_dtype, int64_t stride, int64_t head_dim, int64_t cached, int64_t n_new,
              uint64_t seed)
      : k_(stored(static_cast<size_t>((cached + n_new) * stride), seed, kv_dtype)),
        v_(stored(static_cast<size_t>((cached + n_new) * stride), seed + 1, kv_dtype)) {
    head.k = k_.data();
    head.v = v_.data();
    head.kv_dtype = kv_dtype;
    head.row_stride = stride;
    head.head_dim = head_dim;
    head.cached = cached;
    head.n_new = n_new;
  }
  RandomCache(const RandomCache&) = delete;
  RandomCache& operator=(const RandomCache&) = delete;

  tessera::cpu::AttentionHead head;

 private:
  // The values' bytes in the cache's dtype.
  static std::vector<unsigned char> stored(size_t n, uint64_t seed, ts_dtype dtype) {
    const std::vector<float> values = normal_floats(n, seed);
    std::vector<unsigned char> bytes(n * tessera::dtype_size(dtype));
    for (size_t i = 0; i < n; ++i) {
      if (dtype == TS_F32) {
        std::memcpy(bytes.data() + 4 * i, &values[i], 4);
      } else {
        const uint16_t h =
            dtype == TS_BF16 ? tessera::f32_to_bf16(values[i]) : tessera::f32_to_f16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    return bytes;
  }
  std::vector<unsigned char> k_, v_;
};

// Random K/V rows (row stride wider than a head, like a cache of several KV
// heads) in a cache of kv_dtype, and queries; compares the fast path with the
// reference (which reads the same stored values) for the new tokens
// [first, first + count).
void check_attention(int64_t head_dim, int64_t cached, int64_t n_new, int64_t first, int64_t count,
                     bool tree_mask, uint64_t seed, ts_dtype kv_dtype = TS_F32) {
  RandomCache cache(kv_dtype, head_dim * 3 + 1, head_dim, cached, n_new, seed);
  tessera::cpu::AttentionHead& h = cache.head;
  const int64_t ldq = head_dim + 5;
  const std::vector<float> q = normal_floats(static_cast<size_t>(count * ldq), seed + 2);
  std::vector<uint8_t> mask;
  if (tree_mask) {
    // Each token sees itself and, pseudo-randomly, about half of the others.
    tessera::Rng rng(seed + 3);
    mask.resize(static_cast<size_t>(n_new * n_new));
    for (int64_t i = 0; i < n_new; ++i)
      for (int64_t j = 0; j < n_new; ++j)
        mask[static_cast<size_t>(i * n_new + j)] = i == j || rng.uniform() < 0.5f ? 1 : 0;
    h.mask = mask.data();
  }
  h.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t ldo = head_dim + 2;
  std::vector<float> want(static_cast<size_t>(count * ldo), NAN), got(want.size(), NAN);
  tessera::cpu::reference_attention(h, q.data(), ldq, first, count, want.data(), ldo);
  tessera::cpu::attention_queries(h, q.data(), ldq, first, count, got.data(), ldo);
  const std::string what = std::string("kv ") + tessera::dtype_name(kv_dtype) + " head_dim " +
                           std::to_string(head_dim) + " cached " + std::to_string(cached) +
                           " n_new " + std::to_string(n_new) + " first " + std::to_string(first) +
                           " count " + std::to_string(count) +
                           (tree_mask ? " tree mask" : " causal");
  for (int64_t t = 0; t < count; ++t) {
    for (int64_t d = 0; d < head_dim; ++d) {
      const float w = want[static_cast<size_t>(t * ldo + d)],
                  g = got[static_cast<size_t>(t * ldo + d)];
      // Outputs are convex combinations of N(0, 1) values: O(1).
      ASSERT_NEAR(g, w, 2e-5f) << what << " token " << t << " dim " << d;
    }
    for (int64_t d = head_dim; d < ldo; ++d)
      ASSERT_TRUE(std::isnan(got[static_cast<size_t>(t * ldo + d)])) << what << ": wrote padding";
  }
}

TEST(CpuKernels, AttentionMatchesReferenceCausalAndTreeMasked) {
  for (const Isa isa : isas_to_test())
    for (const ts_dtype kv : {TS_F32, TS_BF16, TS_F16})
      for (const bool tree : {false, true})
        for (const int64_t head_dim : {64, 20, 7})
          for (const int64_t cached : {0, 5, 130}) {
            const IsaScope scope(isa);
            check_attention(head_dim, cached, 1, 0, 1, tree, 1, kv);    // decode
            check_attention(head_dim, cached, 3, 0, 3, tree, 2, kv);    // below the tile threshold
            check_attention(head_dim, cached, 4, 0, 4, tree, 3, kv);    // smallest tile
            check_attention(head_dim, cached, 37, 0, 37, tree, 4, kv);  // 16 + 16 + 5
            check_attention(head_dim, cached, 90, 64, 26, tree, 5,
                            kv);  // a later range of a prefill
            check_attention(head_dim, cached, 90, 16, 18, tree, 6, kv);  // 16 + 2 (one-by-one tail)
          }
}

// Split-KV: any cut of the rows into chunks, merged, equals one softmax over
// them all, for each cache dtype, causal or tree-masked (chunks that see no row
// included).
TEST(CpuKernels, SplitKvChunksMergeToTheReference) {
  const int64_t hd = 64, stride = 3 * hd, cached = 150, n_new = 3;
  for (const ts_dtype kv_dtype : {TS_F32, TS_BF16, TS_F16})
    for (const bool tree : {false, true}) {
      const int64_t rows = cached + n_new;
      RandomCache cache(kv_dtype, stride, hd, cached, n_new, 21);
      tessera::cpu::AttentionHead& h = cache.head;
      const std::vector<float> q = normal_floats(static_cast<size_t>(n_new * hd), 23);
      // Token 1 sees only itself among the new rows; token 2 sees 0 and 2.
      const std::vector<uint8_t> mask = {1, 0, 0, 0, 1, 0, 1, 0, 1};
      h.mask = tree ? mask.data() : nullptr;
      h.scale = 0.125f;
      std::vector<float> want(static_cast<size_t>(n_new * hd));
      tessera::cpu::reference_attention(h, q.data(), hd, 0, n_new, want.data(), hd);
      for (const std::vector<int64_t>& cuts : {std::vector<int64_t>{0, rows},
                                               {0, 1, 2, 77, rows},
                                               {0, 64, 128, rows},
                                               {0, cached, cached + 1, rows},
                                               {0, 50, 50, 151, rows}}) {
        for (int64_t t = 0; t < n_new; ++t) {
          const auto chunks = static_cast<int64_t>(cuts.size()) - 1;
          std::vector<tessera::cpu::AttentionPartial> parts(static_cast<size_t>(chunks));
          std::vector<float> outs(static_cast<size_t>(chunks * hd), NAN), got(hd, NAN);
          for (int64_t c = 0; c < chunks; ++c)
            parts[static_cast<size_t>(c)] = tessera::cpu::attention_chunk(
                h, q.data() + t * hd, t, cuts[static_cast<size_t>(c)],
                cuts[static_cast<size_t>(c + 1)], outs.data() + c * hd);
          tessera::cpu::combine_partials(parts.data(), outs.data(), hd, chunks, hd, got.data());
          for (int64_t d = 0; d < hd; ++d)
            ASSERT_NEAR(got[static_cast<size_t>(d)], want[static_cast<size_t>(t * hd + d)], 2e-5f)
                << tessera::dtype_name(kv_dtype) << (tree ? " tree" : " causal") << " token " << t
                << " dim " << d << " chunks " << chunks;
        }
      }
    }
  // Nothing visible anywhere: zeros, as the reference gives.
  const tessera::cpu::AttentionPartial none[2] = {};
  const std::vector<float> outs(16, 5.0f);
  std::vector<float> out(8, NAN);
  tessera::cpu::combine_partials(none, outs.data(), 8, 2, 8, out.data());
  for (const float o : out) EXPECT_EQ(o, 0.0f);
}

// Row-invariant attention: near the reference, and a token's bits do not depend on what else
// the pass holds: the same visible rows laid out as one new causal token after its cached
// rows, or as a node deep in a tree of other tokens, give the same output, across the
// 64-row chunk bound and for every cache dtype.
TEST(CpuKernels, RowInvariantAttentionGivesATreeNodeTheBitsOfItsPathDecodedAlone) {
  const int64_t hd = 64;
  // A tree of 6 new tokens: parents -1, 0, 0, 1, 3, 2. Node 4 sees 0, 1, 3 and itself.
  const std::vector<int32_t> parent = {-1, 0, 0, 1, 3, 2};
  const int64_t n_new = 6;
  std::vector<uint8_t> mask(static_cast<size_t>(n_new * n_new), 0);
  for (int64_t i = 0; i < n_new; ++i)
    for (int64_t j = i; j >= 0; j = parent[static_cast<size_t>(j)])
      mask[static_cast<size_t>(i * n_new + j)] = 1;
  for (const ts_dtype kv_dtype : {TS_F32, TS_BF16, TS_F16})
    for (const int64_t cached : {0, 5, 60, 61, 64, 130}) {
      RandomCache tree(kv_dtype, 2 * hd, hd, cached, n_new, 41);
      tree.head.mask = mask.data();
      tree.head.scale = 0.125f;
      const std::vector<float> q = normal_floats(static_cast<size_t>(n_new * hd), 43);
      const std::string what =
          std::string(tessera::dtype_name(kv_dtype)) + " cached " + std::to_string(cached);
      std::vector<float> want(static_cast<size_t>(n_new * hd));
      tessera::cpu::reference_attention(tree.head, q.data(), hd, 0, n_new, want.data(), hd);
      for (int64_t t = 0; t < n_new; ++t) {
        std::vector<float> got(hd, NAN);
        tessera::cpu::attention_row_invariant(tree.head, q.data() + t * hd, t, got.data());
        for (int64_t d = 0; d < hd; ++d)
          ASSERT_NEAR(got[static_cast<size_t>(d)], want[static_cast<size_t>(t * hd + d)], 2e-5f)
              << what << " token " << t;
        // The same rows as a cache holding the cached rows then the node's ancestors, and the
        // node as its one new token.
        std::vector<int64_t> rows;
        for (int64_t r = 0; r < cached; ++r) rows.push_back(r);
        std::vector<int64_t> path;
        for (int64_t j = t; j >= 0; j = parent[static_cast<size_t>(j)])
          path.insert(path.begin(), j);
        for (const int64_t j : path) rows.push_back(cached + j);
        const size_t elem = tessera::dtype_size(kv_dtype);
        const size_t row_bytes = static_cast<size_t>(2 * hd) * elem;
        std::vector<unsigned char> k(rows.size() * row_bytes), v(k.size());
        for (size_t r = 0; r < rows.size(); ++r) {
          std::memcpy(k.data() + r * row_bytes,
                      static_cast<const unsigned char*>(tree.head.k) +
                          static_cast<size_t>(rows[r]) * row_bytes,
                      row_bytes);
          std::memcpy(v.data() + r * row_bytes,
                      static_cast<const unsigned char*>(tree.head.v) +
                          static_cast<size_t>(rows[r]) * row_bytes,
                      row_bytes);
        }
        tessera::cpu::AttentionHead alone = tree.head;
        alone.k = k.data();
        alone.v = v.data();
        alone.cached = static_cast<int64_t>(rows.size()) - 1;
        alone.n_new = 1;
        alone.mask = nullptr;
        std::vector<float> by_itself(hd, NAN);
        tessera::cpu::attention_row_invariant(alone, q.data() + t * hd, 0, by_itself.data());
        EXPECT_EQ(std::memcmp(got.data(), by_itself.data(), hd * sizeof(float)), 0)
            << what << " token " << t;
      }
    }
}

// The query heads of one KV head in one pass (attention_chunk_group: AVX-512 where the CPU
// has it) equal each head's own attention_chunk, for groups of 1 to 5 (beyond one pass of
// four), head dims 64 and 48 (and 20: the one-by-one fallback), every cache dtype, masks.
TEST(CpuKernels, GroupedChunksEqualOneQueryAtATime) {
  const int64_t cached = 90, n_new = 3;
  const std::vector<uint8_t> mask = {1, 0, 0, 0, 1, 0, 1, 0, 1};
  for (const Isa isa : isas_to_test())
    for (const ts_dtype kv_dtype : {TS_F32, TS_BF16, TS_F16})
      for (const int64_t hd : {64, 48, 20})
        for (const bool tree : {false, true}) {
          const IsaScope scope(isa);
          const int64_t rows = cached + n_new;
          RandomCache cache(kv_dtype, 2 * hd + 3, hd, cached, n_new, 31);
          tessera::cpu::AttentionHead& h = cache.head;
          h.mask = tree ? mask.data() : nullptr;
          h.scale = 0.1f;
          for (int g = 1; g <= 5; ++g) {
            const std::vector<float> q = normal_floats(static_cast<size_t>(g * hd), 33 + g);
            std::vector<float> got(static_cast<size_t>(g * hd), NAN), want(got.size(), NAN);
            std::vector<const float*> qs;
            std::vector<float*> outs;
            for (int j = 0; j < g; ++j) {
              qs.push_back(q.data() + j * hd);
              outs.push_back(got.data() + j * hd);
            }
            for (const int64_t t : {int64_t{0}, int64_t{2}}) {
              std::vector<tessera::cpu::AttentionPartial> parts(static_cast<size_t>(g));
              tessera::cpu::attention_chunk_group(h, qs.data(), g, t, 10, rows, outs.data(),
                                                  parts.data());
              for (int j = 0; j < g; ++j) {
                const tessera::cpu::AttentionPartial one =
                    tessera::cpu::attention_chunk(h, qs[j], t, 10, rows, want.data() + j * hd);
                const std::string what = std::string(tessera::cpu::isa_name(isa)) + " " +
                                         tessera::dtype_name(kv_dtype) + " hd " +
                                         std::to_string(hd) + (tree ? " tree" : "") + " g " +
                                         std::to_string(g) + " query " + std::to_string(j);
                EXPECT_NEAR(parts[j].max_score, one.max_score, 1e-5f) << what;
                EXPECT_NEAR(parts[j].sum, one.sum, 1e-4f * one.sum) << what;
                for (int64_t d = 0; d < hd; ++d)
                  ASSERT_NEAR(got[static_cast<size_t>(j * hd + d)],
                              want[static_cast<size_t>(j * hd + d)], 2e-5f)
                      << what << " dim " << d;
              }
            }
          }
        }
}

TEST(CpuKernels, AttentionRefusesAnUnknownCacheDtype) {
  const std::vector<float> kv(64, 1.0f), q(8, 1.0f);
  std::vector<float> out(8);
  tessera::cpu::AttentionHead h;
  h.k = kv.data();
  h.v = kv.data();
  h.kv_dtype = TS_I32;
  h.row_stride = 8;
  h.head_dim = 8;
  h.cached = 4;
  h.n_new = 4;
  for (const int64_t count : {int64_t{1}, int64_t{4}}) {  // one-by-one and tiled
    try {
      tessera::cpu::attention_queries(h, q.data(), 0, 0, count, out.data(), 0);
      FAIL() << "an i32 cache was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("KV cache dtype i32"), std::string::npos) << e.what();
    }
  }
}

TEST(CpuKernels, AttentionOfATokenThatSeesNothingIsZero) {
  // A tree mask row of zeros with no cache: no visible row at all.
  const int64_t hd = 8, n = 5;
  const std::vector<float> kv = normal_floats(static_cast<size_t>(n * hd), 9);
  std::vector<uint8_t> mask(static_cast<size_t>(n * n), 1);
  for (int64_t j = 0; j < n; ++j) mask[static_cast<size_t>(2 * n + j)] = 0;
  tessera::cpu::AttentionHead h;
  h.k = kv.data();
  h.v = kv.data();
  h.row_stride = hd;
  h.head_dim = hd;
  h.n_new = n;
  h.mask = mask.data();
  const std::vector<float> q = normal_floats(static_cast<size_t>(n * hd), 10);
  for (const int64_t count : {int64_t{1}, n}) {  // one-by-one and tiled
    std::vector<float> out(static_cast<size_t>(n * hd), NAN);
    const int64_t first = count == 1 ? 2 : 0;
    tessera::cpu::attention_queries(h, q.data() + first * hd, hd, first, count, out.data(), hd);
    const int64_t row = count == 1 ? 0 : 2;
    for (int64_t d = 0; d < hd; ++d) EXPECT_EQ(out[static_cast<size_t>(row * hd + d)], 0.0f);
  }
}

TEST(BandwidthProbe, ReturnsAPositiveFigureReadByEveryThread) {
  tessera::ThreadPool pool(2);
  const tessera::ReadBandwidth bw = tessera::measure_read_bandwidth(pool, size_t{32} << 20, 3);
  EXPECT_TRUE(std::isfinite(bw.bytes_per_second));
  EXPECT_GT(bw.bytes_per_second, 1e6);  // any real machine reads more than 1 MB/s
  EXPECT_EQ(bw.bytes, size_t{32} << 20);
  EXPECT_EQ(bw.repetitions, 3);
  EXPECT_EQ(bw.threads, 2) << "the probe must read with every thread of the pool";

  tessera::ThreadPool single(1);
  EXPECT_EQ(tessera::measure_read_bandwidth(single, size_t{1} << 20, 1).threads, 1);
  EXPECT_THROW(tessera::measure_read_bandwidth(pool, 0, 1), std::invalid_argument);
  EXPECT_THROW(tessera::measure_read_bandwidth(pool, 1 << 20, 0), std::invalid_argument);
}

}  // namespace
