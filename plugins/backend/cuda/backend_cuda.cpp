// The CUDA backend (ts_backend_vtable): device memory, copies, and the forward pass outside
// the blocks (RMSNorm, residual add, embedding gather, the lm head through cuBLASLt, argmax
// and sampling), all on one stream the backend owns and lends to the device blocks inside
// its context (ts_host.device_context, a ts_cuda_context). See docs/architecture.md ("A
// model on a device").
#include "backend_kernels.hpp"

#include <tessera/abi.h>
#include <tessera/cuda/context.h>
#include <tessera/cuda/cublaslt.hpp>
#include <tessera/cuda/runtime.hpp>
#include <tessera/dtype.hpp>
#include <tessera/plugin.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

namespace cu = tessera::cuda;
namespace kernels = tessera::cuda::backend;

const std::string kLabel = "cuda backend";

bool is_float(int32_t dtype) {
  return dtype == TS_F32 || dtype == TS_F16 || dtype == TS_BF16;
}

class CudaBackend {
 public:
  explicit CudaBackend(const ts_backend_config& config) : device_(config.device_index) {
    cu::require_device(device_, kLabel);
    cu::check(cudaSetDevice(device_), "cudaSetDevice");
    cu::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    context_.struct_size = sizeof(ts_cuda_context);
    context_.device_index = device_;
    context_.stream = stream_;
    done_ = std::make_unique<cu::Event>();
  }
  ~CudaBackend() {
    (void)cudaSetDevice(device_);
    (void)cudaStreamSynchronize(stream_);
    (void)cudaStreamDestroy(stream_);
  }
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  ts_backend_device_info device_info() {
    const cu::DeviceScope scope(device_);
    cudaDeviceProp prop{};
    cu::check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
    size_t free_bytes = 0, total_bytes = 0;
    cu::check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    ts_backend_device_info info{};
    info.struct_size = sizeof(info);
    std::snprintf(info.name, sizeof(info.name), "%s", prop.name);
    info.device = TS_DEVICE_CUDA;
    info.device_index = device_;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    info.total_memory = total_bytes;
    info.free_memory = free_bytes;
    return info;
  }

  // What blocks and collectives receive as ts_host.device_context.
  void* context() { return &context_; }

  void* alloc(size_t bytes) {
    const cu::DeviceScope scope(device_);
    void* p = nullptr;
    cu::check(cudaMalloc(&p, std::max<size_t>(bytes, 1)), "cudaMalloc");
    return p;
  }
  void free(void* p) noexcept {
    if (p == nullptr) return;
    (void)cudaSetDevice(device_);
    (void)cudaFree(p);
  }

  // Ordered on the stream; returns once host memory on either side may be used.
  void copy(void* dst, int32_t dst_device, const void* src, int32_t src_device, size_t bytes) {
    const cu::DeviceScope scope(device_);
    for (int32_t d : {dst_device, src_device})
      if (d != TS_DEVICE_CPU && d != TS_DEVICE_CUDA)
        throw std::invalid_argument(kLabel + ": copy between unknown devices");
    if (bytes == 0) return;
    cu::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "cudaMemcpyAsync");
    if (dst_device == TS_DEVICE_CPU || src_device == TS_DEVICE_CPU)
      cu::check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  void synchronize() { cu::check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

  void convert(const ts_tensor& src, ts_tensor& dst) {
    const cu::DeviceScope scope(device_);
    check_float(src, "convert src");
    check_float(dst, "convert dst");
    if (tessera::sdk::numel(src) != tessera::sdk::numel(dst))
      throw std::invalid_argument(kLabel + ": convert from " + tessera::sdk::shape_string(src) +
                                  " to " + tessera::sdk::shape_string(dst) +
                                  ": element counts differ");
    kernels::launch_convert(src.data, src.dtype, dst.data, dst.dtype, tessera::sdk::numel(src),
                            stream_);
  }

  void rmsnorm(const ts_tensor& x, const ts_tensor& w, double eps, ts_tensor& y) {
    const cu::DeviceScope scope(device_);
    check_float(x, "rmsnorm x");
    check_float(w, "rmsnorm weight");
    check_float(y, "rmsnorm y");
    const int64_t dim = x.ndim > 0 ? x.shape[x.ndim - 1] : 0;
    const int64_t rows = dim > 0 ? tessera::sdk::numel(x) / dim : 0;
    if (tessera::sdk::numel(w) != dim || tessera::sdk::numel(y) != rows * dim)
      throw std::invalid_argument(kLabel + ": rmsnorm of x " + tessera::sdk::shape_string(x) +
                                  " needs a weight of " + std::to_string(dim) +
                                  " and y of the same size; got " + tessera::sdk::shape_string(w) +
                                  " and " + tessera::sdk::shape_string(y));
    if (!(eps >= 0.0)) throw std::invalid_argument(kLabel + ": rmsnorm eps must be >= 0");
    kernels::launch_rmsnorm(x.data, x.dtype, w.data, w.dtype, y.data, y.dtype, rows, dim,
                            static_cast<float>(eps), stream_);
  }

  void add(ts_tensor& inout, const ts_tensor& addend) {
    const cu::DeviceScope scope(device_);
    check_float(inout, "add inout");
    check_float(addend, "add addend");
    if (tessera::sdk::numel(inout) != tessera::sdk::numel(addend))
      throw std::invalid_argument(kLabel + ": add of " + tessera::sdk::shape_string(addend) +
                                  " to " + tessera::sdk::shape_string(inout) +
                                  ": element counts differ");
    kernels::launch_add(inout.data, inout.dtype, addend.data, addend.dtype,
                        tessera::sdk::numel(inout), stream_);
  }

  void embed(const ts_tensor& table, const int32_t* tokens, int32_t n, ts_tensor& out) {
    const cu::DeviceScope scope(device_);
    check_float(table, "embed table");
    check_float(out, "embed out");
    if (table.ndim != 2 || out.ndim != 2 || out.shape[0] != n || out.shape[1] != table.shape[1])
      throw std::invalid_argument(kLabel + ": embed needs a table [vocab, hidden] and out [" +
                                  std::to_string(n) + ", hidden]; got " +
                                  tessera::sdk::shape_string(table) + " and " +
                                  tessera::sdk::shape_string(out));
    if (n > 0 && tokens == nullptr) throw std::invalid_argument(kLabel + ": embed has no tokens");
    for (int32_t i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= table.shape[0])
        throw std::invalid_argument(kLabel + ": token " + std::to_string(tokens[i]) +
                                    " is outside the vocabulary of " +
                                    std::to_string(table.shape[0]));
    if (n == 0) return;
    const auto* device_tokens = upload(tokens, static_cast<size_t>(n) * sizeof(int32_t));
    kernels::launch_embed(table.data, table.dtype, static_cast<const int32_t*>(device_tokens), n,
                          table.shape[1], out.data, out.dtype, stream_);
  }

  void matmul(const ts_tensor& x, const ts_tensor& w, ts_tensor& y) {
    const cu::DeviceScope scope(device_);
    check_float(x, "matmul x");
    check_float(w, "matmul w");
    check_float(y, "matmul y");
    if (x.ndim != 2 || w.ndim != 2 || y.ndim != 2 || x.shape[1] != w.shape[1] ||
        y.shape[0] != x.shape[0] || y.shape[1] != w.shape[0])
      throw std::invalid_argument(
          kLabel + ": matmul y = x w^T needs x [m, k], w [n, k], y [m, n]; " + "got x " +
          tessera::sdk::shape_string(x) + ", w " + tessera::sdk::shape_string(w) + ", y " +
          tessera::sdk::shape_string(y));
    if (w.dtype != TS_BF16 || (y.dtype != TS_F32 && y.dtype != TS_BF16) || x.dtype == TS_F16)
      throw tessera::sdk::Unsupported(kLabel + ": matmul takes x in bf16 or f32, w in bf16, y in " +
                                      "f32 or bf16; got x " + tessera::dtype_name(x.dtype) +
                                      ", w " + tessera::dtype_name(w.dtype) + ", y " +
                                      tessera::dtype_name(y.dtype));
    const int64_t m = x.shape[0], n = w.shape[0], k = x.shape[1];
    const void* x_bf16 = x.data;
    if (x.dtype == TS_F32) {  // the GEMM takes bf16 on both sides
      scratch_.reserve(static_cast<size_t>(m * k) * sizeof(uint16_t));
      kernels::launch_convert(x.data, TS_F32, scratch_.get(), TS_BF16, m * k, stream_);
      x_bf16 = scratch_.get();
    }
    if (!gemm_) gemm_ = std::make_unique<cu::Gemm>();
    cu::GemmArgs g;
    g.x = x_bf16;
    g.w = w.data;
    g.y = y.data;
    g.m = m;
    g.n = n;
    g.k = k;
    g.ldx = k;
    g.ldw = k;
    g.ldy = n;
    g.y_dtype = y.dtype;
    gemm_->run(g, stream_);
  }

  void argmax(const ts_tensor& logits, int32_t* tokens) {
    const cu::DeviceScope scope(device_);
    const auto [rows, vocab] = check_logits(logits, "argmax");
    picks_.reserve(static_cast<size_t>(rows) * sizeof(int32_t));
    kernels::launch_argmax(static_cast<const float*>(logits.data), rows, vocab,
                           picks_.get<int32_t>(), stream_);
    download_picks(tokens, rows);
  }

  void sample(const ts_tensor& logits, float temperature, const float* uniforms, int32_t* tokens) {
    const cu::DeviceScope scope(device_);
    const auto [rows, vocab] = check_logits(logits, "sample");
    if (!(temperature > 0.0f) || !std::isfinite(temperature))
      throw std::invalid_argument(kLabel + ": sample needs a temperature > 0");
    for (int64_t r = 0; r < rows; ++r)
      if (!(uniforms[r] >= 0.0f && uniforms[r] < 1.0f))
        throw std::invalid_argument(kLabel + ": sample needs uniforms in [0, 1)");
    const auto* device_uniforms = upload(uniforms, static_cast<size_t>(rows) * sizeof(float));
    picks_.reserve(static_cast<size_t>(rows) * sizeof(int32_t));
    kernels::launch_sample(static_cast<const float*>(logits.data), rows, vocab, temperature,
                           static_cast<const float*>(device_uniforms), picks_.get<int32_t>(),
                           stream_);
    download_picks(tokens, rows);
  }

 private:
  void check_float(const ts_tensor& t, const char* what) const {
    if (t.device != TS_DEVICE_CUDA || t.device_index != device_)
      throw tessera::sdk::Unsupported(
          kLabel + ": " + what + " is on " + tessera::device_name(t.device) + " " +
          std::to_string(t.device_index) + ", expected cuda " + std::to_string(device_));
    if (!is_float(t.dtype))
      throw tessera::sdk::Unsupported(kLabel + ": " + what + " has dtype " +
                                      tessera::dtype_name(t.dtype) + ", expected f32, f16 or bf16");
    if (t.data == nullptr && tessera::sdk::numel(t) > 0)
      throw std::invalid_argument(kLabel + ": " + what + " has no data");
    if (!tessera::sdk::is_contiguous(t))
      throw std::invalid_argument(kLabel + ": " + what + " must be contiguous");
  }

  std::pair<int64_t, int64_t> check_logits(const ts_tensor& logits, const char* op) const {
    check_float(logits, op);
    if (logits.dtype != TS_F32 || logits.ndim != 2 || logits.shape[1] <= 0)
      throw std::invalid_argument(kLabel + ": " + op + " takes f32 logits [rows, vocab]; got " +
                                  tessera::dtype_name(logits.dtype) + " " +
                                  tessera::sdk::shape_string(logits));
    return {logits.shape[0], logits.shape[1]};
  }

  // Host bytes to the device through pinned staging; the previous upload must be done
  // before the staging is reused.
  const void* upload(const void* host, size_t bytes) {
    done_->wait_host();
    staging_.reserve(bytes);
    uploads_.reserve(bytes);
    std::memcpy(staging_.get(), host, bytes);
    cu::check(
        cudaMemcpyAsync(uploads_.get(), staging_.get(), bytes, cudaMemcpyHostToDevice, stream_),
        "cudaMemcpyAsync");
    done_->record(stream_);
    return uploads_.get();
  }

  void download_picks(int32_t* tokens, int64_t rows) {
    cu::check(cudaMemcpyAsync(tokens, picks_.get(), static_cast<size_t>(rows) * sizeof(int32_t),
                              cudaMemcpyDeviceToHost, stream_),
              "cudaMemcpyAsync");
    cu::check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  int32_t device_ = 0;
  cudaStream_t stream_ = nullptr;
  ts_cuda_context context_{};
  std::unique_ptr<cu::Gemm> gemm_;  // made on the first matmul
  std::unique_ptr<cu::Event> done_;
  cu::PinnedBuffer staging_;
  cu::DeviceBuffer uploads_, picks_, scratch_;
};

int32_t score() {
  return cu::score_when_device_present();
}

const ts_backend_vtable kBackendVtable = tessera::sdk::backend_vtable<CudaBackend>();

const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_BACKEND, "cuda", TS_DEVICE_CUDA, &kBackendVtable, score),
};

}  // namespace

TESSERA_PLUGIN("tessera-backend-cuda", "0.1.0", kProviders)
