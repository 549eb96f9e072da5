// bf16 GEMMs through cuBLASLt for device plugins: y[m, n] = x[m, k] w[n, k]^T with f32
// accumulation, w stored like nn.Linear ([out, in], rows contiguous), y in bf16 or f32.
//
// cuBLASLt (libcublasLt.so, over 500 MB) is opened with dlopen on first use rather than
// linked: a plugin library then loads in milliseconds on machines that list or check
// plugins without ever running one on a GPU, and on machines without cuBLAS at all.
#pragma once

#include <tessera/cuda/runtime.hpp>
#include <tessera/plugin.hpp>

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

namespace tessera::cuda {

// The cuBLASLt entry points used here, resolved from the shared library.
struct CublasLtApi {
  decltype(&::cublasLtCreate) create = nullptr;
  decltype(&::cublasLtDestroy) destroy = nullptr;
  decltype(&::cublasLtGetStatusString) status_string = nullptr;
  decltype(&::cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&::cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&::cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&::cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&::cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  decltype(&::cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&::cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&::cublasLtMatmul) matmul = nullptr;

  // Loaded once per process (per plugin library); throws Unsupported naming the file.
  static const CublasLtApi& get() {
    static const CublasLtApi api = load();
    return api;
  }

  void check(cublasStatus_t status, const char* what) const {
    if (status != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error(std::string(what) + ": " + status_string(status));
  }

 private:
  static CublasLtApi load() {
    const std::string file = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* lib = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = dlerror();
      throw sdk::Unsupported("cannot load " + file + " (cuBLASLt of CUDA " +
                             std::to_string(CUBLAS_VER_MAJOR) + "): " + (why ? why : "unknown"));
    }
    CublasLtApi api;
    auto resolve = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (fn == nullptr) throw sdk::Unsupported(file + " has no symbol " + name);
    };
    resolve(api.create, "cublasLtCreate");
    resolve(api.destroy, "cublasLtDestroy");
    resolve(api.status_string, "cublasLtGetStatusString");
    resolve(api.desc_create, "cublasLtMatmulDescCreate");
    resolve(api.desc_destroy, "cublasLtMatmulDescDestroy");
    resolve(api.desc_set, "cublasLtMatmulDescSetAttribute");
    resolve(api.layout_create, "cublasLtMatrixLayoutCreate");
    resolve(api.layout_destroy, "cublasLtMatrixLayoutDestroy");
    resolve(api.pref_create, "cublasLtMatmulPreferenceCreate");
    resolve(api.pref_destroy, "cublasLtMatmulPreferenceDestroy");
    resolve(api.pref_set, "cublasLtMatmulPreferenceSetAttribute");
    resolve(api.heuristic, "cublasLtMatmulAlgoGetHeuristic");
    resolve(api.matmul, "cublasLtMatmul");
    return api;  // the library stays open for the process, like the plugin itself
  }
};

// One GEMM: y = x w^T. Leading dimensions are row strides in elements.
struct GemmArgs {
  const void* x = nullptr;  // bf16 [m, k], row stride ldx
  const void* w = nullptr;  // bf16 [n, k], row stride ldw
  void* y = nullptr;        // y_dtype [m, n], row stride ldy
  int64_t m = 0, n = 0, k = 0;
  int64_t ldx = 0, ldw = 0, ldy = 0;
  int32_t y_dtype = TS_BF16;  // TS_BF16 or TS_F32
};

// cuBLASLt's workspace: 32 MiB lets it use its split-K and stream-K kernels on Hopper.
// One per (device, stream), shared by every GEMM of this library on that stream (they
// run one after another), kept for the life of the process.
inline DeviceBuffer& shared_workspace(cudaStream_t stream) {
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;
  static std::mutex mutex;
  static auto* buffers = new std::map<std::pair<int, cudaStream_t>, DeviceBuffer>();
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mutex);
  DeviceBuffer& buffer = (*buffers)[{device, stream}];
  buffer.reserve(kWorkspaceBytes);
  return buffer;
}

// cuBLASLt handle and the chosen algorithm per shape. One per block (or backend): not
// for concurrent use from several host threads.
class Gemm {
 public:
  Gemm() : api_(CublasLtApi::get()) { api_.check(api_.create(&handle_), "cublasLtCreate"); }
  ~Gemm() {
    for (auto& [shape, plan] : plans_) plan.release(api_);
    if (handle_ != nullptr) (void)api_.destroy(handle_);
  }
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void run(const GemmArgs& a, cudaStream_t stream) {
    if (a.m == 0 || a.n == 0) return;
    DeviceBuffer& workspace = shared_workspace(stream);
    Plan& plan = plan_for(a, workspace.bytes());
    const float alpha = 1.0f, beta = 0.0f;
    api_.check(api_.matmul(handle_, plan.desc, &alpha, a.w, plan.w_layout, a.x, plan.x_layout,
                           &beta, a.y, plan.y_layout, a.y, plan.y_layout, &plan.algo,
                           workspace.get(), workspace.bytes(), stream),
               "cublasLtMatmul");
  }

 private:
  // Row-major y = x w^T is, in cuBLASLt's column-major terms, y^T [n, m] = (w^T)^T x^T with
  // w^T the [k, n] column-major view of w: "TN", cuBLASLt's preferred layout.
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w_layout = nullptr, x_layout = nullptr, y_layout = nullptr;
    cublasLtMatmulAlgo_t algo{};
    void release(const CublasLtApi& api) {
      if (desc != nullptr) (void)api.desc_destroy(desc);
      for (cublasLtMatrixLayout_t l : {w_layout, x_layout, y_layout})
        if (l != nullptr) (void)api.layout_destroy(l);
    }
  };
  // Shape, leading dimensions, output dtype and the pointers' alignments (in bytes).
  using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int32_t, uint32_t,
                           uint32_t, uint32_t>;

  // The largest power of two (up to 256) dividing the address: cuBLASLt assumes 256 unless
  // told, and an algorithm chosen for aligned operands fails on others.
  static uint32_t alignment(const void* p) {
    const auto address = reinterpret_cast<uintptr_t>(p);
    uint32_t a = 256;
    while (a > 1 && address % a != 0) a /= 2;
    return a;
  }

  Plan& plan_for(const GemmArgs& a, uint64_t workspace_bytes) {
    const uint32_t align_w = alignment(a.w), align_x = alignment(a.x), align_y = alignment(a.y);
    const Shape shape{a.m, a.n, a.k, a.ldx, a.ldw, a.ldy, a.y_dtype, align_w, align_x, align_y};
    if (auto it = plans_.find(shape); it != plans_.end()) return it->second;
    if (a.y_dtype != TS_BF16 && a.y_dtype != TS_F32)
      throw std::invalid_argument("gemm: output dtype must be bf16 or f32");
    Plan plan;
    try {
      const cudaDataType_t y_type = a.y_dtype == TS_F32 ? CUDA_R_32F : CUDA_R_16BF;
      api_.check(api_.desc_create(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                 "cublasLtMatmulDescCreate");
      const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
      api_.check(api_.desc_set(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)),
                 "cublasLtMatmulDescSetAttribute(TRANSA)");
      api_.check(api_.desc_set(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof(no_trans)),
                 "cublasLtMatmulDescSetAttribute(TRANSB)");
      auto u64 = [](int64_t v) { return static_cast<uint64_t>(v); };
      api_.check(api_.layout_create(&plan.w_layout, CUDA_R_16BF, u64(a.k), u64(a.n), a.ldw),
                 "cublasLtMatrixLayoutCreate(w)");
      api_.check(api_.layout_create(&plan.x_layout, CUDA_R_16BF, u64(a.k), u64(a.m), a.ldx),
                 "cublasLtMatrixLayoutCreate(x)");
      api_.check(api_.layout_create(&plan.y_layout, y_type, u64(a.n), u64(a.m), a.ldy),
                 "cublasLtMatrixLayoutCreate(y)");
      cublasLtMatmulPreference_t pref = nullptr;
      api_.check(api_.pref_create(&pref), "cublasLtMatmulPreferenceCreate");
      const uint64_t ws = workspace_bytes;
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      cublasStatus_t status =
          api_.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
      // A is w, B is x, C and D are y (see Plan).
      const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
          {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_w},
          {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_x},
          {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_y},
          {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_y}};
      for (const auto& [attribute, bytes] : aligns)
        if (status == CUBLAS_STATUS_SUCCESS)
          status = api_.pref_set(pref, attribute, &bytes, sizeof(bytes));
      if (status == CUBLAS_STATUS_SUCCESS)
        status = api_.heuristic(handle_, plan.desc, plan.w_layout, plan.x_layout, plan.y_layout,
                                plan.y_layout, pref, 1, &result, &found);
      (void)api_.pref_destroy(pref);
      api_.check(status, "cublasLtMatmulAlgoGetHeuristic");
      if (found == 0)
        throw std::runtime_error(
            "cuBLASLt has no algorithm for a bf16 GEMM of m=" + std::to_string(a.m) +
            " n=" + std::to_string(a.n) + " k=" + std::to_string(a.k));
      plan.algo = result.algo;
    } catch (...) {
      plan.release(api_);
      throw;
    }
    return plans_.emplace(shape, plan).first->second;
  }

  const CublasLtApi& api_;
  cublasLtHandle_t handle_ = nullptr;
  std::map<Shape, Plan> plans_;
};

}  // namespace tessera::cuda
