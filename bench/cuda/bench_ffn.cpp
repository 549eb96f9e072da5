// FFN GEMMs on a GPU, on Llama-3.1-8B shapes (hidden 4096, intermediate 14336), for 1 to
// 4096 tokens: the plugin's cuBLASLt path (tessera/cuda/cublaslt.hpp, heuristic algorithm,
// shared workspace) against plain cuBLAS (cublasGemmEx, default algorithm) on the same
// shapes, and the whole SwiGLU block (gate_up GEMM, gating, down GEMM).
//   BM_GemmPeak: 8192^3 bf16 through cuBLAS, the compute ceiling to compare TFLOP/s with.
#include "bench_util.hpp"
#include "ffn_kernels.hpp"

#include <tessera/cuda/cublaslt.hpp>
#include <tessera/cuda/runtime.hpp>

#include <benchmark/benchmark.h>
#include <cublas_v2.h>

#include <stdexcept>
#include <string>

namespace {

namespace cu = tessera::cuda;
using tessera::cuda::bench::random_bf16;
using tessera::cuda::bench::report_tflops;
using tessera::cuda::bench::skip_without_device;
using tessera::cuda::bench::time_on_device;

constexpr int64_t kHidden = 4096, kInter = 14336;

void check_blas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(status));
}

// y[m, n] = x[m, k] w[n, k]^T in bf16 with f32 accumulation, through plain cuBLAS.
void cublas_nt(cublasHandle_t handle, const void* x, const void* w, void* y, int64_t m, int64_t n,
               int64_t k) {
  const float alpha = 1.0f, beta = 0.0f;
  check_blas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w,
                          CUDA_R_16BF, int(k), x, CUDA_R_16BF, int(k), &beta, y, CUDA_R_16BF,
                          int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx");
}

struct GemmShapes {
  int64_t m, n, k;
};

// range(0): tokens; range(1): 0 = gate_up [m, 2 * inter, hidden], 1 = down [m, hidden, inter].
GemmShapes shape_of(const benchmark::State& state) {
  const int64_t m = state.range(0);
  return state.range(1) == 0 ? GemmShapes{m, 2 * kInter, kHidden} : GemmShapes{m, kHidden, kInter};
}

void BM_FfnGemmCublasLt(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const auto [m, n, k] = shape_of(state);
  cu::DeviceBuffer x = random_bf16(size_t(m * k), 1), w = random_bf16(size_t(n * k), 2, 0.02f);
  cu::DeviceBuffer y(size_t(m * n) * 2);
  cu::Gemm gemm;
  cu::GemmArgs g;
  g.x = x.get();
  g.w = w.get();
  g.y = y.get();
  g.m = m;
  g.n = n;
  g.k = k;
  g.ldx = k;
  g.ldw = k;
  g.ldy = n;
  time_on_device(state, [&] { gemm.run(g, nullptr); });
  report_tflops(state, 2.0 * double(m) * double(n) * double(k));
  state.SetBytesProcessed(int64_t(n * k * 2) * state.iterations());  // the weights, once
}

void BM_FfnGemmCublas(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const auto [m, n, k] = shape_of(state);
  cu::DeviceBuffer x = random_bf16(size_t(m * k), 1), w = random_bf16(size_t(n * k), 2, 0.02f);
  cu::DeviceBuffer y(size_t(m * n) * 2);
  cublasHandle_t handle = nullptr;
  check_blas(cublasCreate(&handle), "cublasCreate");
  time_on_device(state, [&] { cublas_nt(handle, x.get(), w.get(), y.get(), m, n, k); });
  (void)cublasDestroy(handle);
  report_tflops(state, 2.0 * double(m) * double(n) * double(k));
  state.SetBytesProcessed(int64_t(n * k * 2) * state.iterations());
}

// The SwiGLU block's device work as the plugin does it: one GEMM to gate_up, the gating, the
// down GEMM.
void BM_SwigluBlock(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const int64_t m = state.range(0);
  cu::DeviceBuffer x = random_bf16(size_t(m * kHidden), 1);
  cu::DeviceBuffer gate_up_w = random_bf16(size_t(2 * kInter * kHidden), 2, 0.02f);
  cu::DeviceBuffer down_w = random_bf16(size_t(kHidden * kInter), 3, 0.02f);
  cu::DeviceBuffer gate_up(size_t(m * 2 * kInter) * 2), act(size_t(m * kInter) * 2);
  cu::DeviceBuffer y(size_t(m * kHidden) * 2);
  cu::Gemm gemm;
  cu::GemmArgs up{x.get(), gate_up_w.get(), gate_up.get(), m,          2 * kInter,
                  kHidden, kHidden,         kHidden,       2 * kInter, TS_BF16};
  cu::GemmArgs down{act.get(), down_w.get(), y.get(), m,       kHidden,
                    kInter,    kInter,       kInter,  kHidden, TS_BF16};
  time_on_device(state, [&] {
    gemm.run(up, nullptr);
    cu::ffn::launch_swiglu(gate_up.get<cu::ffn::bf16>(), m, kInter, act.get<cu::ffn::bf16>(),
                           nullptr);
    gemm.run(down, nullptr);
  });
  report_tflops(state, 6.0 * double(m) * double(kInter) * double(kHidden));
  state.SetBytesProcessed(int64_t(3 * kInter * kHidden * 2) * state.iterations());
}

void BM_GemmPeak(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const int64_t n = 8192;
  cu::DeviceBuffer a = random_bf16(size_t(n * n), 1), b = random_bf16(size_t(n * n), 2);
  cu::DeviceBuffer c(size_t(n * n) * 2);
  cublasHandle_t handle = nullptr;
  check_blas(cublasCreate(&handle), "cublasCreate");
  time_on_device(state, [&] { cublas_nt(handle, a.get(), b.get(), c.get(), n, n, n); });
  (void)cublasDestroy(handle);
  report_tflops(state, 2.0 * double(n) * double(n) * double(n));
}

BENCHMARK(BM_FfnGemmCublasLt)
    ->ArgNames({"tokens", "down"})
    ->ArgsProduct({{1, 16, 128, 1024, 4096}, {0, 1}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FfnGemmCublas)
    ->ArgNames({"tokens", "down"})
    ->ArgsProduct({{1, 16, 128, 1024, 4096}, {0, 1}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SwigluBlock)
    ->ArgName("tokens")
    ->Arg(1)
    ->Arg(128)
    ->Arg(4096)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GemmPeak)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
