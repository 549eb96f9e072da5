// Which vector instruction set the CPU kernels use, chosen at run time.
//
// The plugins are built for AVX2 + FMA + F16C (the project's baseline), and the
// hot kernels also carry an AVX-512 variant compiled with a function-level
// target attribute. The variant runs only where the CPU reports AVX-512 F, BW,
// VL and DQ, so one binary runs on both kinds of machine.
//
// TESSERA_CPU_ISA=avx2 in the environment keeps a whole process (the core and
// every plugin it loads) on the AVX2 kernels: for comparisons and for testing
// both paths on one machine. set_isa_limit does the same for the calling
// library's kernels, from code (the tests use it).
//
// AVX-512 VNNI (vpdpbusd, the 8-bit dot products of the quantised GEMV) is a
// separate capability within AVX-512: active_vnni() says whether those kernels
// use it. TESSERA_CPU_VNNI=0 in the environment, or set_vnni_allowed(false),
// keeps them on their plain AVX-512 path.
#pragma once

#include <tessera/cpu/simd.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>

#if TESSERA_CPU_AVX2 && defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define TESSERA_CPU_AVX512 1
#define TESSERA_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#else
#define TESSERA_CPU_AVX512 0
#define TESSERA_TARGET_AVX512
#endif

namespace tessera::cpu {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

namespace detail {

// What this CPU supports, before any limit.
inline Isa detect_isa() {
#if TESSERA_CPU_AVX512
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return Isa::avx512;
#endif
  return TESSERA_CPU_AVX2 ? Isa::avx2 : Isa::scalar;
}

// The environment's limit: TESSERA_CPU_ISA=avx2 caps the kernels at AVX2; unset
// (or any other value) leaves them at what the CPU has.
inline Isa environment_limit() {
  const char* v = std::getenv("TESSERA_CPU_ISA");
  return v != nullptr && std::strcmp(v, "avx2") == 0 ? Isa::avx2 : Isa::avx512;
}

inline std::atomic<int>& isa_limit_slot() {
  static std::atomic<int> limit{static_cast<int>(environment_limit())};
  return limit;
}

}  // namespace detail

// The best instruction set this CPU has (ignoring any limit).
inline Isa supported_isa() {
  static const Isa isa = detail::detect_isa();
  return isa;
}

// Caps the kernels of this library at `limit` (never above what the CPU has).
inline void set_isa_limit(Isa limit) {
  detail::isa_limit_slot().store(static_cast<int>(limit), std::memory_order_relaxed);
}

// The instruction set the kernels use now.
inline Isa active_isa() {
  const int limit = detail::isa_limit_slot().load(std::memory_order_relaxed);
  const int have = static_cast<int>(supported_isa());
  return static_cast<Isa>(limit < have ? limit : have);
}

namespace detail {

inline bool detect_vnni() {
#if TESSERA_CPU_AVX512
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

inline std::atomic<bool>& vnni_allowed_slot() {
  static std::atomic<bool> allowed{[] {
    const char* v = std::getenv("TESSERA_CPU_VNNI");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }()};
  return allowed;
}

}  // namespace detail

// Whether this CPU has AVX-512 VNNI (ignoring any limit).
inline bool supported_vnni() {
  static const bool vnni = detail::detect_vnni();
  return vnni;
}

// Lets (true, the default unless TESSERA_CPU_VNNI=0) or forbids the kernels of this library
// to use AVX-512 VNNI.
inline void set_vnni_allowed(bool allowed) {
  detail::vnni_allowed_slot().store(allowed, std::memory_order_relaxed);
}

// Whether the kernels use AVX-512 VNNI now: AVX-512 active, VNNI present and allowed.
inline bool active_vnni() {
  return active_isa() == Isa::avx512 && supported_vnni() &&
         detail::vnni_allowed_slot().load(std::memory_order_relaxed);
}

}  // namespace tessera::cpu
