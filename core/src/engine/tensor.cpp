#include <cstring>
#include <new>
#include <sstream>
#include <tessera/cpu/quant_matmul.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/tensor.hpp>

#include <vector>

namespace tessera {
namespace {

constexpr size_t kCpuAlignment = 64;

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    // Round up so that vectorised loops may read a whole last cache line.
    const size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    return ::operator new (rounded == 0 ? kCpuAlignment : rounded, std::align_val_t{kCpuAlignment});
  }
  void deallocate(void* p, size_t /*bytes*/) override {
    ::operator delete (p, std::align_val_t{kCpuAlignment});
  }
  ts_device device() const override { return TS_DEVICE_CPU; }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes != 0) std::memcpy(dst, src, bytes);
  }
};

bool is_float_dtype(ts_dtype d) {
  return d == TS_F32 || d == TS_F16 || d == TS_BF16;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("tensor shape " + shape_to_string(shape) + " has a negative dimension");
    n *= d;
  }
  return n;
}

// A quantised tensor's rows must be whole blocks (ABI 2.3).
void check_quantized_shape(const std::vector<int64_t>& shape, ts_dtype dtype) {
  if (!is_quantized(dtype)) return;
  const int64_t block = dtype_block_elems(dtype);
  if (shape.empty() || shape.back() % block != 0)
    throw Error("a " + std::string(dtype_name(dtype)) + " tensor of shape " +
                shape_to_string(shape) + " must have a last dimension that is a multiple of " +
                std::to_string(block) + " (its block)");
}

// n values (whole blocks) of a quantised dtype to f32, as one row.
void dequantize(const void* src, ts_dtype dtype, float* dst, int64_t n) {
  cpu::dequantize_rows(dtype, src, dtype_bytes(dtype, n), n, 0, 1, dst);
}

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator allocator;
  return allocator;
}

Tensor::Tensor(std::vector<int64_t> shape, ts_dtype dtype, Allocator& alloc)
    : shape_(std::move(shape)), dtype_(dtype), device_(alloc.device()) {
  if (dtype_block_elems(dtype) == 0) {
    throw Error("tensor dtype " + std::to_string(static_cast<int>(dtype)) +
                " is unknown; expected f32, f16, bf16, i32, i64, u8 or a quantised dtype");
  }
  check_quantized_shape(shape_, dtype);
  const size_t n_bytes = dtype_bytes(dtype, checked_numel(shape_));
  // Zero elements still get a (tiny) buffer so that empty() means "no tensor".
  const size_t alloc_bytes = n_bytes == 0 ? 1 : n_bytes;
  Allocator* owner = &alloc;
  void* p = alloc.allocate(alloc_bytes);
  storage_ = std::shared_ptr<void>(
      p, [owner, alloc_bytes](void* q) { owner->deallocate(q, alloc_bytes); });
  data_ = p;
  // Fresh CPU tensors start at zero, so that uninitialised reads are at least deterministic.
  if (device_ == TS_DEVICE_CPU) std::memset(p, 0, n_bytes);
}

Tensor Tensor::borrow(void* data, std::vector<int64_t> shape, ts_dtype dtype,
                      std::shared_ptr<void> keepalive) {
  if (dtype_block_elems(dtype) == 0) {
    throw Error("borrowed tensor dtype " + std::to_string(static_cast<int>(dtype)) + " is unknown");
  }
  checked_numel(shape);
  check_quantized_shape(shape, dtype);
  Tensor t;
  t.storage_ = std::move(keepalive);
  t.data_ = data;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = TS_DEVICE_CPU;
  return t;
}

int64_t Tensor::numel() const {
  if (data_ == nullptr && shape_.empty()) return 0;
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

ts_tensor Tensor::view() const {
  if (shape_.size() > TS_MAX_DIMS) {
    throw Error("tensor " + shape_string() + " has " + std::to_string(shape_.size()) +
                " dimensions; the ABI view holds at most " + std::to_string(TS_MAX_DIMS));
  }
  ts_tensor v{};
  v.data = data_;
  v.dtype = dtype_;
  v.device = device_;
  v.device_index = 0;
  v.ndim = static_cast<int32_t>(shape_.size());
  int64_t stride = 1;
  for (int i = v.ndim - 1; i >= 0; --i) {
    v.shape[i] = shape_[static_cast<size_t>(i)];
    v.stride[i] = stride;
    stride *= shape_[static_cast<size_t>(i)];
  }
  return v;
}

Tensor Tensor::to(ts_dtype dtype) const {
  if (device_ != TS_DEVICE_CPU) {
    throw Error(std::string("Tensor::to: tensor is on ") + device_name(device_) +
                "; conversion runs on the CPU only");
  }
  if (dtype == dtype_) return clone();
  if ((!is_float_dtype(dtype_) && !is_quantized(dtype_)) || !is_float_dtype(dtype)) {
    throw Error(std::string("cannot convert a tensor from ") + dtype_name(dtype_) + " to " +
                dtype_name(dtype) +
                ": only f32, f16 and bf16 convert among themselves, and quantised tensors to them");
  }
  Tensor out(shape_, dtype);
  convert(data_, dtype_, out.raw(), dtype, numel());
  return out;
}

Tensor Tensor::clone() const {
  if (empty()) return Tensor();
  if (device_ != TS_DEVICE_CPU) {
    throw Error(std::string("Tensor::clone: tensor is on ") + device_name(device_) +
                "; only CPU tensors can be cloned here");
  }
  Tensor out(shape_, dtype_);
  if (bytes() != 0) std::memcpy(out.raw(), data_, bytes());
  return out;
}

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  // One dimension may be -1: it takes whatever the others leave.
  int inferred = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1 && inferred < 0) {
      inferred = static_cast<int>(i);
    } else if (shape[i] < 0) {
      throw Error("cannot reshape " + shape_string() + " to " + shape_to_string(shape) +
                  ": dimensions must be non-negative (one may be -1)");
    } else {
      known *= shape[i];
    }
  }
  if (inferred >= 0) {
    if (known == 0 || numel() % known != 0) {
      throw Error("cannot reshape " + shape_string() + " (" + std::to_string(numel()) +
                  " elements) to " + shape_to_string(shape));
    }
    shape[static_cast<size_t>(inferred)] = numel() / known;
    known = numel();
  }
  if (known != numel()) {
    throw Error("cannot reshape " + shape_string() + " (" + std::to_string(numel()) +
                " elements) to " + shape_to_string(shape) + " (" + std::to_string(known) +
                " elements)");
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

void Tensor::zero() {
  if (empty()) return;
  if (device_ != TS_DEVICE_CPU) {
    throw Error(std::string("Tensor::zero: tensor is on ") + device_name(device_) +
                "; only CPU tensors can be zeroed here");
  }
  std::memset(data_, 0, bytes());
}

std::string Tensor::shape_string() const {
  return shape_to_string(shape_);
}

void convert(const void* src, ts_dtype src_dtype, void* dst, ts_dtype dst_dtype, int64_t n) {
  if (n < 0) throw Error("convert: negative element count " + std::to_string(n));
  if (is_quantized(src_dtype) && is_float_dtype(dst_dtype)) {
    if (n % dtype_block_elems(src_dtype) != 0)
      throw Error("convert: " + std::to_string(n) + " values of " + dtype_name(src_dtype) +
                  " are not whole blocks of " + std::to_string(dtype_block_elems(src_dtype)));
    if (dst_dtype == TS_F32) {
      dequantize(src, src_dtype, static_cast<float*>(dst), n);
      return;
    }
    std::vector<float> f32(static_cast<size_t>(n));
    dequantize(src, src_dtype, f32.data(), n);
    convert(f32.data(), TS_F32, dst, dst_dtype, n);
    return;
  }
  if (!is_float_dtype(src_dtype) || !is_float_dtype(dst_dtype)) {
    throw Error(std::string("cannot convert from ") + dtype_name(src_dtype) + " to " +
                dtype_name(dst_dtype) + ": only f32, f16 and bf16 convert among themselves");
  }
  if (src_dtype == dst_dtype) {
    if (n != 0) std::memmove(dst, src, static_cast<size_t>(n) * dtype_size(src_dtype));
    return;
  }
  // Through f32, which holds every f16 and bf16 value exactly.
  auto load = [src, src_dtype](int64_t i) -> float {
    switch (src_dtype) {
      case TS_F16:
        return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      case TS_BF16:
        return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      default:
        return static_cast<const float*>(src)[i];
    }
  };
  switch (dst_dtype) {
    case TS_F32: {
      float* out = static_cast<float*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = load(i);
      break;
    }
    case TS_F16: {
      uint16_t* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(load(i));
      break;
    }
    default: {
      uint16_t* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(load(i));
      break;
    }
  }
}

}  // namespace tessera
