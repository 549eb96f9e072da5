// Dequantisation of ggml block types to f32: a scalar reference and AVX2 paths.
//
// Results must be bit-identical to the reference (and to the Python gguf package, which does
// a product and then a sum in f32): the compiler must not fuse a*b+c into an FMA, which rounds
// once instead of twice. The pragmas come before every include so that all code in this file,
// inlined helpers included, is compiled the same way.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <array>
#include <cstring>
#include <limits>
#include <tessera/dtype.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/formats/dequantize.hpp>
#include <tessera/quant/blocks.hpp>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define TESSERA_DEQUANT_AVX2 1
#endif

namespace tessera {
namespace {

constexpr int64_t kQK = 32;  // block size of the 32-value types (Q4_0, Q4_1, Q8_0, ...)

// Byte sizes of the blocks (public ggml layouts).
constexpr size_t kQ4_0Bytes = 2 + kQK / 2;                       // f16 d, 16 bytes of nibbles
constexpr size_t kQ4_1Bytes = 2 + 2 + kQK / 2;                   // f16 d, f16 m, nibbles
constexpr size_t kQ8_0Bytes = 2 + kQK;                           // f16 d, 32 int8
constexpr size_t kKScaleBytes = 12;                              // packed 6-bit scales/mins
constexpr size_t kQ4_KBytes = 2 + 2 + kKScaleBytes + kQK_K / 2;  // 144
constexpr size_t kQ5_KBytes = 2 + 2 + kKScaleBytes + kQK_K / 8 + kQK_K / 2;  // 176
constexpr size_t kQ6_KBytes = kQK_K / 2 + kQK_K / 4 + kQK_K / 16 + 2;        // 210

// Indexed by type id; name == nullptr marks an unknown id.
constexpr std::array<GgmlTypeInfo, 31> kTypeInfos = {{
    {"F32", 1, 4, true},
    {"F16", 1, 2, true},
    {"Q4_0", kQK, kQ4_0Bytes, true},
    {"Q4_1", kQK, kQ4_1Bytes, true},
    {nullptr, 0, 0, false},  // 4: Q4_2, removed from ggml
    {nullptr, 0, 0, false},  // 5: Q4_3, removed from ggml
    {"Q5_0", kQK, 2 + 4 + kQK / 2, false},
    {"Q5_1", kQK, 2 + 2 + 4 + kQK / 2, false},
    {"Q8_0", kQK, kQ8_0Bytes, true},
    {"Q8_1", kQK, 4 + 4 + kQK, false},
    {"Q2_K", kQK_K, 2 + 2 + kQK_K / 16 + kQK_K / 4, false},
    {"Q3_K", kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + 12, false},
    {"Q4_K", kQK_K, kQ4_KBytes, true},
    {"Q5_K", kQK_K, kQ5_KBytes, true},
    {"Q6_K", kQK_K, kQ6_KBytes, true},
    {"Q8_K", kQK_K, 4 + kQK_K + kQK_K / 8, false},
    {"IQ2_XXS", kQK_K, 2 + kQK_K / 4, false},
    {"IQ2_XS", kQK_K, 2 + kQK_K / 4 + kQK_K / 32, false},
    {"IQ3_XXS", kQK_K, 2 + kQK_K / 4 + kQK_K / 8, false},
    {"IQ1_S", kQK_K, 2 + kQK_K / 8 + kQK_K / 16, false},
    {"IQ4_NL", kQK, 2 + kQK / 2, false},
    {"IQ3_S", kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + kQK_K / 32 + 4, false},
    {"IQ2_S", kQK_K, 2 + kQK_K / 4 + kQK_K / 16, false},
    {"IQ4_XS", kQK_K, 2 + 2 + kQK_K / 2 + kQK_K / 64, false},
    {"I8", 1, 1, false},
    {"I16", 1, 2, false},
    {"I32", 1, 4, false},
    {"I64", 1, 8, false},
    {"F64", 1, 8, false},
    {"IQ1_M", kQK_K, kQK_K / 8 + kQK_K / 16 + kQK_K / 32, false},
    {"BF16", 1, 2, true},
}};

using quant::load_f16;
using quant::load_u16;

// The scalar reference, one block at a time: the SDK's decoders (tessera/quant/blocks.hpp),
// built here without FMA contraction.
constexpr auto ref_q4_0 = quant::dequantize_block_q4_0;
constexpr auto ref_q4_1 = quant::dequantize_block_q4_1;
constexpr auto ref_q8_0 = quant::dequantize_block_q8_0;
constexpr auto ref_q4_k = quant::dequantize_block_q4_k;
constexpr auto ref_q5_k = quant::dequantize_block_q5_k;
constexpr auto ref_q6_k = quant::dequantize_block_q6_k;

using BlockFn = void (*)(const uint8_t*, float*);

template <BlockFn Fn>
void for_each_block(const uint8_t* src, float* dst, int64_t n, int64_t block_elems,
                    size_t block_bytes) {
  const int64_t blocks = n / block_elems;
  for (int64_t i = 0; i < blocks; ++i) {
    Fn(src + static_cast<size_t>(i) * block_bytes, dst + i * block_elems);
  }
}

const GgmlTypeInfo& checked_info(uint32_t type, int64_t n, const char* who) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  if (info == nullptr || !info->dequantizable) {
    throw ModelError(std::string(who) + ": cannot dequantise ggml type " + ggml_type_name(type) +
                     "; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K");
  }
  if (n < 0 || n % info->block_elems != 0) {
    throw ModelError(std::string(who) + ": " + std::to_string(n) + " values of " + info->name +
                     "; expected a non-negative multiple of its block size " +
                     std::to_string(info->block_elems));
  }
  return *info;
}

void reference_impl(uint32_t type, const uint8_t* s, float* dst, int64_t n,
                    const GgmlTypeInfo& info) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
      if (n != 0) std::memcpy(dst, s, static_cast<size_t>(n) * 4);
      break;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = load_f16(s + 2 * i);
      break;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(s + 2 * i));
      break;
    case GgmlType::Q4_0:
      for_each_block<ref_q4_0>(s, dst, n, info.block_elems, info.block_bytes);
      break;
    case GgmlType::Q4_1:
      for_each_block<ref_q4_1>(s, dst, n, info.block_elems, info.block_bytes);
      break;
    case GgmlType::Q8_0:
      for_each_block<ref_q8_0>(s, dst, n, info.block_elems, info.block_bytes);
      break;
    case GgmlType::Q4_K:
      for_each_block<ref_q4_k>(s, dst, n, info.block_elems, info.block_bytes);
      break;
    case GgmlType::Q5_K:
      for_each_block<ref_q5_k>(s, dst, n, info.block_elems, info.block_bytes);
      break;
    case GgmlType::Q6_K:
      for_each_block<ref_q6_k>(s, dst, n, info.block_elems, info.block_bytes);
      break;
    default:
      break;  // checked_info rejected it
  }
}

// ---- AVX2 paths (same operations as the reference, eight lanes at a time) -------------------

#if defined(TESSERA_DEQUANT_AVX2)

// The 32 nibbles of a 16-byte block as 32 bytes: low nibbles first, then high nibbles.
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i low = _mm_and_si128(packed, mask);
  const __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
  return _mm256_set_m128i(high, low);
}

// The low eight bytes of v (signed or unsigned) as eight floats.
template <bool Signed>
inline __m256 bytes_to_floats(__m128i v8) {
  const __m256i wide = Signed ? _mm256_cvtepi8_epi32(v8) : _mm256_cvtepu8_epi32(v8);
  return _mm256_cvtepi32_ps(wide);
}

void avx2_q4_0(const uint8_t* src, float* dst, int64_t blocks) {
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t i = 0; i < blocks; ++i, src += kQ4_0Bytes, dst += kQK) {
    const __m256 d = _mm256_set1_ps(load_f16(src));
    const __m256i q = _mm256_sub_epi8(unpack_nibbles(src + 2), eight);
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(dst + 0, _mm256_mul_ps(bytes_to_floats<true>(lo), d));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(bytes_to_floats<true>(_mm_srli_si128(lo, 8)), d));
    _mm256_storeu_ps(dst + 16, _mm256_mul_ps(bytes_to_floats<true>(hi), d));
    _mm256_storeu_ps(dst + 24, _mm256_mul_ps(bytes_to_floats<true>(_mm_srli_si128(hi, 8)), d));
  }
}

void avx2_q4_1(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t i = 0; i < blocks; ++i, src += kQ4_1Bytes, dst += kQK) {
    const __m256 d = _mm256_set1_ps(load_f16(src));
    const __m256 m = _mm256_set1_ps(load_f16(src + 2));
    const __m256i q = unpack_nibbles(src + 4);
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    auto put = [&](float* out, __m128i bytes) {
      _mm256_storeu_ps(out, _mm256_add_ps(_mm256_mul_ps(bytes_to_floats<false>(bytes), d), m));
    };
    put(dst + 0, lo);
    put(dst + 8, _mm_srli_si128(lo, 8));
    put(dst + 16, hi);
    put(dst + 24, _mm_srli_si128(hi, 8));
  }
}

void avx2_q8_0(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t i = 0; i < blocks; ++i, src += kQ8_0Bytes, dst += kQK) {
    const __m256 d = _mm256_set1_ps(load_f16(src));
    for (int k = 0; k < kQK; k += 8) {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 2 + k));
      _mm256_storeu_ps(dst + k, _mm256_mul_ps(bytes_to_floats<true>(bytes), d));
    }
  }
}

void avx2_f16(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = load_f16(src + 2 * i);
}

#endif  // TESSERA_DEQUANT_AVX2

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  if (type >= kTypeInfos.size() || kTypeInfos[type].name == nullptr) return nullptr;
  return &kTypeInfos[type];
}

std::string ggml_type_name(uint32_t type) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  return info ? std::string(info->name) : "type " + std::to_string(type);
}

std::optional<uint64_t> ggml_bytes_for(uint32_t type, int64_t n) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  if (info == nullptr || n < 0 || n % info->block_elems != 0) return std::nullopt;
  const uint64_t blocks = static_cast<uint64_t>(n / info->block_elems);
  if (blocks > std::numeric_limits<uint64_t>::max() / info->block_bytes) return std::nullopt;
  return blocks * info->block_bytes;
}

void dequantize_to_f32_reference(uint32_t type, const void* src, float* dst, int64_t n) {
  const GgmlTypeInfo& info = checked_info(type, n, "dequantize_to_f32_reference");
  reference_impl(type, static_cast<const uint8_t*>(src), dst, n, info);
}

void dequantize_to_f32(uint32_t type, const void* src, float* dst, int64_t n) {
  const GgmlTypeInfo& info = checked_info(type, n, "dequantize_to_f32");
  const auto* s = static_cast<const uint8_t*>(src);
#if defined(TESSERA_DEQUANT_AVX2)
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F16:
      avx2_f16(s, dst, n);
      return;
    case GgmlType::Q4_0:
      avx2_q4_0(s, dst, n / kQK);
      return;
    case GgmlType::Q4_1:
      avx2_q4_1(s, dst, n / kQK);
      return;
    case GgmlType::Q8_0:
      avx2_q8_0(s, dst, n / kQK);
      return;
    default:
      break;
  }
#endif
  reference_impl(type, s, dst, n, info);
}

std::optional<ts_dtype> ts_dtype_of(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
      return TS_F32;
    case GgmlType::F16:
      return TS_F16;
    case GgmlType::BF16:
      return TS_BF16;
    case GgmlType::Q8_0:
      return TS_Q8_0;
    case GgmlType::Q4_0:
      return TS_Q4_0;
    case GgmlType::Q4_1:
      return TS_Q4_1;
    case GgmlType::Q4_K:
      return TS_Q4_K;
    case GgmlType::Q5_K:
      return TS_Q5_K;
    case GgmlType::Q6_K:
      return TS_Q6_K;
    default:
      return std::nullopt;
  }
}

std::optional<uint32_t> ggml_type_of(ts_dtype dtype) {
  for (uint32_t type = 0; type < kTypeInfos.size(); ++type)
    if (ts_dtype_of(type) == dtype) return type;
  return std::nullopt;
}

}  // namespace tessera
