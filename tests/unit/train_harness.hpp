// Test harness for the training entries of block plugins (ABI 2.1): a block made through
// its vtable, gradient buffers by weight name (ts_grads, with frozen weights), batches of
// whole sequences, forward_train into a workspace of the block's size and backward, and
// communicators of the parallel-local plugin for ranks run as threads.
#pragma once

#include <tessera/engine/tensor.hpp>

#include <tessera/abi.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "block_harness.hpp"

namespace tessera::test {

// ts_grads over f32 buffers by name; a frozen name answers data NULL, an unknown one fails.
class TestGrads {
 public:
  TestGrads() : abi_{this, &TestGrads::get_cb} {}
  TestGrads(const TestGrads&) = delete;
  TestGrads& operator=(const TestGrads&) = delete;

  void add(const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    Entry& e = map_[name];
    e.shape = std::move(shape);
    e.data.assign(static_cast<size_t>(n), 0.0f);
  }
  void freeze(const std::string& name) { frozen_.insert(name); }
  void zero() {
    for (auto& [name, e] : map_) std::fill(e.data.begin(), e.data.end(), 0.0f);
  }
  std::vector<float>& operator[](const std::string& name) { return map_.at(name).data; }
  const std::vector<float>& at(const std::string& name) const { return map_.at(name).data; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, e] : map_) out.push_back(name);
    return out;
  }
  const ts_grads* abi() const { return &abi_; }

 private:
  struct Entry {
    std::vector<int64_t> shape;
    std::vector<float> data;
  };

  static int get_cb(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
    auto* self = static_cast<TestGrads*>(ctx);
    auto it = self->map_.find(name);
    if (it == self->map_.end()) {
      std::snprintf(err->message, sizeof(err->message), "no gradient buffer named '%s'", name);
      return TS_ERROR;
    }
    Entry& e = it->second;
    *out = ts_tensor{};
    out->data = self->frozen_.count(name) != 0 ? nullptr : e.data.data();
    out->dtype = TS_F32;
    out->device = TS_DEVICE_CPU;
    out->ndim = static_cast<int32_t>(e.shape.size());
    int64_t stride = 1;
    for (int32_t d = out->ndim - 1; d >= 0; --d) {
      out->shape[d] = e.shape[static_cast<size_t>(d)];
      out->stride[d] = stride;
      stride *= out->shape[d];
    }
    return TS_OK;
  }

  std::map<std::string, Entry> map_;
  std::set<std::string> frozen_;
  ts_grads abi_;
};

// A batch of whole sequences, as a training run feeds them (no slots, no cache).
class TrainBatch {
 public:
  // A sequence of n tokens at positions first_position, first_position + 1, ...; mask empty
  // for causal, else n x n.
  TrainBatch& add(int32_t n, int32_t first_position = 0, std::vector<uint8_t> mask = {}) {
    offsets_.push_back(offsets_.back() + n);
    for (int32_t i = 0; i < n; ++i) positions_.push_back(first_position + i);
    masks_.push_back(std::move(mask));
    return *this;
  }
  int32_t tokens() const { return offsets_.back(); }
  int32_t sequences() const { return static_cast<int32_t>(masks_.size()); }
  int32_t first(int32_t s) const { return offsets_[static_cast<size_t>(s)]; }
  int32_t length(int32_t s) const {
    return offsets_[static_cast<size_t>(s) + 1] - offsets_[static_cast<size_t>(s)];
  }
  const int32_t* positions(int32_t s) const { return positions_.data() + first(s); }
  const uint8_t* mask(int32_t s) const {
    const auto& m = masks_[static_cast<size_t>(s)];
    return m.empty() ? nullptr : m.data();
  }

  // The ts_batch view (valid while this object lives and is not changed).
  const ts_batch& abi() {
    mask_ptrs_.clear();
    bool any = false;
    for (size_t s = 0; s < masks_.size(); ++s) {
      mask_ptrs_.push_back(masks_[s].empty() ? nullptr : masks_[s].data());
      any = any || !masks_[s].empty();
    }
    batch_ = ts_batch{};
    batch_.struct_size = sizeof(ts_batch);
    batch_.n_seqs = sequences();
    batch_.n_tokens = tokens();
    batch_.slots = nullptr;
    batch_.offsets = offsets_.data();
    batch_.positions = positions_.data();
    batch_.tree_masks = any ? mask_ptrs_.data() : nullptr;
    return batch_;
  }

 private:
  std::vector<int32_t> offsets_{0}, positions_;
  std::vector<std::vector<uint8_t>> masks_;
  std::vector<const uint8_t*> mask_ptrs_;
  ts_batch batch_{};
};

// The engine's view (tensor.hpp), under the name these tests use.
inline ts_tensor f32_matrix(const float* data, int64_t rows, int64_t cols) {
  return f32_matrix_view(data, rows, cols);
}

// A block made through a vtable, driven through its training entries.
class TrainBlock {
 public:
  TrainBlock(const ts_block_vtable* vt, const BlockSetup& setup, const ParamList& params)
      : vt_(vt), hidden_(setup.hidden) {
    ts_block_config config{};
    config.struct_size = sizeof(ts_block_config);
    config.kind = setup.kind;
    config.layer = setup.layer;
    config.hidden = setup.hidden;
    config.dtype = setup.dtype;
    config.device = TS_DEVICE_CPU;
    config.params = params.abi();
    config.weights = setup.weights;
    config.comm = setup.comm;
    config.host = setup.host;
    ts_error err{};
    status_ = vt_->create(&config, &self_, &err);
    error_ = err.message;
  }
  ~TrainBlock() {
    if (self_ != nullptr) vt_->destroy(self_);
  }
  TrainBlock(const TrainBlock&) = delete;
  TrainBlock& operator=(const TrainBlock&) = delete;

  bool ok() const { return status_ == TS_OK; }
  const std::string& create_error() const { return error_; }
  bool has_training() const {
    return vt_->train_workspace != nullptr && vt_->forward_train != nullptr &&
           vt_->backward != nullptr;
  }

  int workspace_bytes(const ts_batch& batch, int32_t recompute, uint64_t& bytes,
                      std::string* error = nullptr) {
    ts_error err{};
    const int status = vt_->train_workspace(self_, &batch, recompute, &bytes, &err);
    if (error != nullptr) *error = err.message;
    return status;
  }

  // forward_train over `batch` (x [tokens, hidden]) into a workspace of the block's size,
  // kept for the next backward; y gets [tokens, hidden].
  int forward_train(TrainBatch& batch, const std::vector<float>& x, int32_t recompute,
                    std::vector<float>& y, std::string* error = nullptr) {
    const ts_batch& b = batch.abi();
    uint64_t bytes = 0;
    int status = workspace_bytes(b, recompute, bytes, error);
    if (status != TS_OK) return status;
    workspace_.assign(static_cast<size_t>(bytes / 64 + 2), Line{});
    y.assign(x.size(), NAN);
    const ts_tensor xt = f32_matrix(x.data(), b.n_tokens, hidden_);
    ts_tensor yt = f32_matrix(y.data(), b.n_tokens, hidden_);
    ts_block_io io{};
    io.struct_size = sizeof(ts_block_io);
    io.x = &xt;
    io.y = &yt;
    io.batch = &b;
    io.kv = nullptr;
    ts_error err{};
    status = vt_->forward_train(self_, &io, recompute, workspace(), &err);
    if (error != nullptr) *error = err.message;
    return status;
  }

  // backward after forward_train of the same batch, x and policy; dx NULL skips d loss / d x.
  int backward(TrainBatch& batch, const std::vector<float>& x, const std::vector<float>& dy,
               std::vector<float>* dx, const ts_grads* grads, int32_t recompute,
               std::string* error = nullptr) {
    const ts_batch& b = batch.abi();
    const ts_tensor xt = f32_matrix(x.data(), b.n_tokens, hidden_);
    const ts_tensor dyt = f32_matrix(dy.data(), b.n_tokens, hidden_);
    ts_tensor dxt{};
    if (dx != nullptr) {
      dx->assign(x.size(), NAN);
      dxt = f32_matrix(dx->data(), b.n_tokens, hidden_);
    }
    ts_backward_io io{};
    io.struct_size = sizeof(ts_backward_io);
    io.x = &xt;
    io.grad_y = &dyt;
    io.grad_x = dx != nullptr ? &dxt : nullptr;
    io.batch = &b;
    io.workspace = workspace();
    io.recompute = recompute;
    io.grads = grads;
    return backward_io(io, error);
  }

  // A forward (inference entry) with no cache.
  int forward_cache_free(TrainBatch& batch, const std::vector<float>& x, std::vector<float>& y,
                         std::string* error = nullptr) {
    const ts_batch& b = batch.abi();
    y.assign(x.size(), NAN);
    const ts_tensor xt = f32_matrix(x.data(), b.n_tokens, hidden_);
    ts_tensor yt = f32_matrix(y.data(), b.n_tokens, hidden_);
    ts_block_io io{};
    io.struct_size = sizeof(ts_block_io);
    io.x = &xt;
    io.y = &yt;
    io.batch = &b;
    io.kv = nullptr;
    ts_error err{};
    const int status = vt_->forward(self_, &io, &err);
    if (error != nullptr) *error = err.message;
    return status;
  }

  int forward_train_io(const ts_block_io& io, int32_t recompute, void* workspace,
                       std::string* error) {
    ts_error err{};
    const int status = vt_->forward_train(self_, &io, recompute, workspace, &err);
    if (error != nullptr) *error = err.message;
    return status;
  }
  int backward_io(const ts_backward_io& io, std::string* error) {
    ts_error err{};
    const int status = vt_->backward(self_, &io, &err);
    if (error != nullptr) *error = status == TS_OK ? std::string() : std::string(err.message);
    return status;
  }
  void* workspace() { return workspace_.empty() ? nullptr : workspace_.data(); }

 private:
  struct alignas(64) Line {
    unsigned char bytes[64];
  };
  const ts_block_vtable* vt_;
  int32_t hidden_;
  void* self_ = nullptr;
  int status_ = TS_ERROR;
  std::string error_;
  std::vector<Line> workspace_;
};

// --------------------------------------------------------------- ranks

// The parallel-local plugin's communicator for `rank` of `world` in `group` (ranks of one
// group meet in this process: run each on its own thread).
class LocalComm {
 public:
  LocalComm(const std::string& group, int32_t world, int32_t rank) : group_(group) {
    const auto* p =
        PluginLibrary::get("libtessera-parallel-local.so").find(TS_KIND_PARALLEL, "local");
    if (p == nullptr) throw std::runtime_error("parallel-local has no provider 'local'");
    vt_ = static_cast<const ts_parallel_vtable*>(p->vtable);
    ts_param params[3]{};
    params[0].key = "world";
    params[0].type = TS_PARAM_INT;
    params[0].i = world;
    params[1].key = "rank";
    params[1].type = TS_PARAM_INT;
    params[1].i = rank;
    params[2].key = "group";
    params[2].type = TS_PARAM_STRING;
    params[2].s = group_.c_str();
    const ts_params list{params, 3};
    ts_error err{};
    if (vt_->create(&list, nullptr, &self_, &err) != TS_OK) throw std::runtime_error(err.message);
    if (vt_->communicator(self_, &comm_, &err) != TS_OK) throw std::runtime_error(err.message);
  }
  ~LocalComm() {
    if (self_ != nullptr) vt_->destroy(self_);
  }
  LocalComm(const LocalComm&) = delete;
  LocalComm& operator=(const LocalComm&) = delete;
  const ts_comm* abi() const { return &comm_; }

 private:
  std::string group_;
  const ts_parallel_vtable* vt_ = nullptr;
  void* self_ = nullptr;
  ts_comm comm_{};
};

}  // namespace tessera::test
