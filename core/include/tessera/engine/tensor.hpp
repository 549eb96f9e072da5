// An owning tensor on one device, and the per-device allocators behind it.
#pragma once

#include <tessera/abi.h>
#include <tessera/dtype.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tessera {

// Allocates raw device memory. One instance per device; the CPU one aligns to 64 bytes.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) = 0;
  virtual ts_device device() const = 0;
  // Copies between buffers of this device.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
};

Allocator& cpu_allocator();

// Contiguous, row-major. Copying a Tensor shares its storage (like a view);
// clone() makes an independent copy.
class Tensor {
 public:
  Tensor() = default;
  Tensor(std::vector<int64_t> shape, ts_dtype dtype, Allocator& alloc = cpu_allocator());
  // Wraps memory owned elsewhere (e.g. a memory-mapped file); `keepalive` holds it.
  static Tensor borrow(void* data, std::vector<int64_t> shape, ts_dtype dtype,
                       std::shared_ptr<void> keepalive);

  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const;
  // Whole blocks for a quantised dtype (its last dimension is a multiple of the block).
  size_t bytes() const { return dtype_bytes(dtype_, numel()); }
  ts_dtype dtype() const { return dtype_; }
  ts_device device() const { return device_; }
  bool empty() const { return data_ == nullptr; }

  void* raw() const { return data_; }
  template <class T>
  T* data() const {
    return static_cast<T*>(data_);
  }

  // The ABI view of this tensor.
  ts_tensor view() const;
  // A copy converted to `dtype` (f32/f16/bf16 among themselves, or a quantised dtype
  // dequantised to one of them), on the CPU.
  Tensor to(ts_dtype dtype) const;
  Tensor clone() const;
  // Same storage, new shape with the same element count.
  Tensor reshape(std::vector<int64_t> shape) const;
  void zero();

  std::string shape_string() const;

 private:
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  std::vector<int64_t> shape_;
  ts_dtype dtype_ = TS_F32;
  ts_device device_ = TS_DEVICE_CPU;
};

// Converts n elements between float dtypes (f32, f16, bf16); a quantised source (n whole
// blocks) is dequantised.
void convert(const void* src, ts_dtype src_dtype, void* dst, ts_dtype dst_dtype, int64_t n);

// A row-major f32 [rows, cols] host matrix as the ABI sees it (no ownership). The data may be
// read-only to the callee; the view's pointer is not const because ts_tensor's is not.
inline ts_tensor f32_matrix_view(const float* data, int64_t rows, int64_t cols) {
  ts_tensor t{};
  t.data = const_cast<float*>(data);
  t.dtype = TS_F32;
  t.device = TS_DEVICE_CPU;
  t.ndim = 2;
  t.shape[0] = rows;
  t.shape[1] = cols;
  t.stride[0] = cols;
  t.stride[1] = 1;
  return t;
}

}  // namespace tessera
