// Test harness for block plugins: loads a plugin library directly, makes blocks
// from in-memory weights, owns their KV cache and runs batches through them.
#pragma once

#include <tessera/abi.h>
#include <tessera/dtype.hpp>

#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS
#endif
#include <boost/dll/import.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tessera::test {

// ---------------------------------------------------------------- plugins

// A loaded plugin library; kept loaded for the whole test run.
class PluginLibrary {
 public:
  explicit PluginLibrary(const std::string& path)
      : entry_(boost::dll::import <const ts_plugin_descriptor*()>(std::filesystem::path(path),
                                                                  TS_PLUGIN_ENTRY)) {
    descriptor_ = entry_();
    if (descriptor_ == nullptr) throw std::runtime_error(path + ": entry returned NULL");
  }
  const ts_plugin_descriptor& descriptor() const { return *descriptor_; }

  const ts_provider* find(int32_t kind, const std::string& name) const {
    for (int32_t i = 0; i < descriptor_->n_providers; ++i) {
      const ts_provider& p = descriptor_->providers[i];
      if (p.kind == kind && p.name != nullptr && name == p.name) return &p;
    }
    return nullptr;
  }
  const ts_block_vtable* block_vtable(int32_t kind, const std::string& name) const {
    const ts_provider* p = find(kind, name);
    if (p == nullptr)
      throw std::runtime_error("no provider '" + name + "' of kind " + std::to_string(kind));
    return static_cast<const ts_block_vtable*>(p->vtable);
  }

  // One instance per file for the whole process.
  static const PluginLibrary& get(const std::string& file_name) {
    static std::map<std::string, std::unique_ptr<PluginLibrary>> loaded;
    auto& slot = loaded[file_name];
    if (!slot)
      slot = std::make_unique<PluginLibrary>(std::string(TESSERA_PLUGIN_DIR) + "/" + file_name);
    return *slot;
  }

 private:
  std::function<const ts_plugin_descriptor*()> entry_;  // holds the library open
  const ts_plugin_descriptor* descriptor_ = nullptr;
};

inline const ts_block_vtable* attention_vtable(const std::string& name) {
  return PluginLibrary::get("libtessera-attention-cpu.so").block_vtable(TS_KIND_ATTENTION, name);
}
inline const ts_block_vtable* ffn_vtable(const std::string& name) {
  return PluginLibrary::get("libtessera-ffn-cpu.so").block_vtable(TS_KIND_FFN, name);
}

// ----------------------------------------------------------------- random

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// Values as they are after a round trip through bf16 (or f16).
inline std::vector<float> rounded(const std::vector<float>& v, int32_t dtype) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = dtype == TS_BF16  ? bf16_to_f32(f32_to_bf16(v[i]))
             : dtype == TS_F16 ? f16_to_f32(f32_to_f16(v[i]))
                               : v[i];
  return out;
}

inline float max_abs(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// ---------------------------------------------------------------- weights

// ts_weights over a std::map; tensors stored in f32, bf16 or f16.
class TestWeights {
 public:
  TestWeights() : abi_{this, &TestWeights::get_cb} {}
  TestWeights(const TestWeights&) = delete;
  TestWeights& operator=(const TestWeights&) = delete;

  void add(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values,
           int32_t dtype = TS_F32) {
    Entry e;
    e.shape = std::move(shape);
    e.dtype = dtype;
    if (dtype == TS_F32) {
      e.f32 = values;
    } else {
      e.half.resize(values.size());
      for (size_t i = 0; i < values.size(); ++i)
        e.half[i] = dtype == TS_BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
    }
    map_[name] = std::move(e);
  }
  void remove(const std::string& name) { map_.erase(name); }
  const ts_weights* abi() const { return &abi_; }

 private:
  struct Entry {
    std::vector<int64_t> shape;
    int32_t dtype = TS_F32;
    std::vector<float> f32;
    std::vector<uint16_t> half;
  };

  static int get_cb(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
    auto* self = static_cast<TestWeights*>(ctx);
    auto it = self->map_.find(name);
    if (it == self->map_.end()) {
      std::snprintf(err->message, sizeof(err->message), "no weight named '%s'", name);
      return TS_ERROR;
    }
    Entry& e = it->second;
    *out = ts_tensor{};
    out->data =
        e.dtype == TS_F32 ? static_cast<void*>(e.f32.data()) : static_cast<void*>(e.half.data());
    out->dtype = e.dtype;
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
  ts_weights abi_;
};

// ----------------------------------------------------------------- params

class ParamList {
 public:
  ParamList& set_int(const std::string& key, int64_t v) {
    ts_param p{};
    p.key = store(key);
    p.type = TS_PARAM_INT;
    p.i = v;
    items_.push_back(p);
    return *this;
  }
  ParamList& set_float(const std::string& key, double v) {
    ts_param p{};
    p.key = store(key);
    p.type = TS_PARAM_FLOAT;
    p.f = v;
    items_.push_back(p);
    return *this;
  }
  ParamList& set_string(const std::string& key, const std::string& v) {
    ts_param p{};
    p.key = store(key);
    p.type = TS_PARAM_STRING;
    p.s = store(v);
    items_.push_back(p);
    return *this;
  }
  ts_params abi() const { return ts_params{items_.data(), static_cast<int32_t>(items_.size())}; }

 private:
  const char* store(const std::string& s) { return keys_.emplace_back(s).c_str(); }
  std::deque<std::string> keys_;
  std::vector<ts_param> items_;
};

// ------------------------------------------------------------------- host

// A ts_host with two threads: parallel_for runs the first half of [0, n) on a
// fresh thread and the second half on the caller (simple, and enough to catch races).
class TwoThreadHost {
 public:
  TwoThreadHost() {
    host_.struct_size = sizeof(ts_host);
    host_.abi_minor = TS_ABI_MINOR;
    host_.ctx = this;
    host_.n_threads = 2;
    host_.parallel_for = &TwoThreadHost::parallel_for_cb;
    host_.log = [](void*, int32_t, const char*) {};
  }
  const ts_host* abi() const { return &host_; }

 private:
  static void parallel_for_cb(void*, int64_t n, int64_t grain, ts_range_fn fn, void* arg) {
    if (n < 2 * std::max<int64_t>(grain, 1)) {
      fn(arg, 0, n);
      return;
    }
    const int64_t mid = n / 2;
    std::thread worker([&] { fn(arg, 0, mid); });
    fn(arg, mid, n);
    worker.join();
  }
  ts_host host_{};
};

// ------------------------------------------------------------------- comm

// A communicator for rank `rank` of `world` whose all_reduce_sum leaves the
// partial in place and counts calls: tests run the ranks one after the other
// and add their outputs themselves.
class RecordingComm {
 public:
  RecordingComm(int32_t rank, int32_t world) {
    comm_.struct_size = sizeof(ts_comm);
    comm_.ctx = this;
    comm_.rank = rank;
    comm_.world = world;
    comm_.all_reduce_sum = [](void* ctx, ts_tensor* inout, void*, ts_error*) {
      auto* self = static_cast<RecordingComm*>(ctx);
      ++self->all_reduce_calls;
      self->last_numel = 1;
      for (int32_t d = 0; d < inout->ndim; ++d) self->last_numel *= inout->shape[d];
      return static_cast<int>(TS_OK);
    };
  }
  const ts_comm* abi() const { return &comm_; }
  int all_reduce_calls = 0;
  int64_t last_numel = 0;

 private:
  ts_comm comm_{};
};

// ------------------------------------------------------------------ block

// One sequence's part of a batch.
struct SeqFeed {
  int32_t slot = 0;
  std::vector<float> x;            // [n_new, hidden]
  std::vector<int32_t> positions;  // [n_new]; empty = consecutive after the cache
  std::vector<uint8_t> mask;       // empty = causal, else n_new x n_new
};

struct BlockSetup {
  int32_t kind = TS_KIND_ATTENTION;
  int32_t layer = 0;
  int32_t hidden = 0;
  int32_t dtype = TS_F32;
  const ts_weights* weights = nullptr;
  const ts_host* host = nullptr;
  const ts_comm* comm = nullptr;
  int32_t slots = 4;
  int32_t capacity = 64;
};

// A block created through a vtable, with a KV cache of its own.
class BlockRunner {
 public:
  BlockRunner(const ts_block_vtable* vt, const BlockSetup& setup, const ParamList& params)
      : vt_(vt), setup_(setup) {
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
    create_status_ = vt_->create(&config, &self_, &err);
    create_error_ = err.message;
    if (create_status_ != TS_OK) return;
    if (vt_->info(self_, &info_, &err) != TS_OK) throw std::runtime_error(err.message);
    if (info_.kv_heads > 0) {
      // The cache in the dtype the block asks for, zeroed.
      row_width_ = static_cast<int64_t>(info_.kv_heads) * info_.head_dim;
      const size_t bytes = static_cast<size_t>(setup.slots * setup.capacity * row_width_) *
                           tessera::dtype_size(info_.kv_dtype);
      k_.assign(bytes, 0);
      v_ = k_;
    }
    lengths_.assign(static_cast<size_t>(setup.slots), 0);
  }
  ~BlockRunner() {
    if (self_ != nullptr) vt_->destroy(self_);
  }
  BlockRunner(const BlockRunner&) = delete;
  BlockRunner& operator=(const BlockRunner&) = delete;

  bool ok() const { return create_status_ == TS_OK; }
  int create_status() const { return create_status_; }
  const std::string& create_error() const { return create_error_; }
  const ts_block_info& info() const { return info_; }
  std::vector<int32_t>& lengths() { return lengths_; }
  // The caches' contents as floats (a copy, whatever dtype they are kept in).
  std::vector<float> k_cache() const { return as_floats(k_); }
  std::vector<float> v_cache() const { return as_floats(v_); }

  ts_kv_layer kv_view() {
    ts_kv_layer kv{};
    auto fill = [&](ts_tensor& t, std::vector<unsigned char>& data) {
      t.data = data.data();
      t.dtype = info_.kv_dtype;
      t.device = TS_DEVICE_CPU;
      t.ndim = 4;
      const int64_t shape[4] = {setup_.slots, setup_.capacity, info_.kv_heads, info_.head_dim};
      int64_t stride = 1;
      for (int d = 3; d >= 0; --d) {
        t.shape[d] = shape[d];
        t.stride[d] = stride;
        stride *= shape[d];
      }
    };
    fill(kv.k, k_);
    fill(kv.v, v_);
    kv.lengths = lengths_.data();
    return kv;
  }

  // Runs one batch; y gets [n_tokens, hidden]. Advances the lengths on success
  // (as the host does). Returns the status; the message goes to *error.
  int forward(const std::vector<SeqFeed>& seqs, std::vector<float>& y,
              std::string* error = nullptr) {
    std::vector<float> x;
    std::vector<int32_t> slots, offsets{0}, positions;
    std::vector<const uint8_t*> masks;
    bool any_mask = false;
    for (const SeqFeed& s : seqs) {
      const int32_t n_new = static_cast<int32_t>(s.x.size() / static_cast<size_t>(setup_.hidden));
      x.insert(x.end(), s.x.begin(), s.x.end());
      slots.push_back(s.slot);
      offsets.push_back(offsets.back() + n_new);
      for (int32_t i = 0; i < n_new; ++i)
        positions.push_back(s.positions.empty()
                                ? (s.slot >= 0 && s.slot < setup_.slots ? lengths_[s.slot] : 0) + i
                                : s.positions[static_cast<size_t>(i)]);
      masks.push_back(s.mask.empty() ? nullptr : s.mask.data());
      any_mask = any_mask || !s.mask.empty();
    }
    const int32_t n_tokens = offsets.back();
    y.assign(static_cast<size_t>(n_tokens) * setup_.hidden, NAN);
    ts_tensor xt = matrix(x.data(), n_tokens), yt = matrix(y.data(), n_tokens);
    ts_batch batch{};
    batch.struct_size = sizeof(ts_batch);
    batch.n_seqs = static_cast<int32_t>(seqs.size());
    batch.n_tokens = n_tokens;
    batch.slots = slots.data();
    batch.offsets = offsets.data();
    batch.positions = positions.data();
    batch.tree_masks = any_mask ? masks.data() : nullptr;
    ts_kv_layer kv = kv_view();
    ts_block_io io{};
    io.struct_size = sizeof(ts_block_io);
    io.x = &xt;
    io.y = &yt;
    io.batch = &batch;
    io.kv = info_.kv_heads > 0 ? &kv : nullptr;
    return run(io, error, [&] {
      for (size_t s = 0; s < seqs.size(); ++s)
        lengths_[static_cast<size_t>(seqs[s].slot)] += offsets[s + 1] - offsets[s];
    });
  }

  // Raw forward for error-path tests.
  int forward_io(const ts_block_io& io, std::string* error) {
    return run(io, error, [] {});
  }

  int compact_kv(int32_t slot, int32_t first_row, const std::vector<int32_t>& keep,
                 std::string* error = nullptr) {
    ts_kv_layer kv = kv_view();
    ts_error err{};
    const int status = vt_->compact_kv(self_, &kv, slot, first_row, keep.data(),
                                       static_cast<int32_t>(keep.size()), &err);
    if (error != nullptr) *error = err.message;
    if (status == TS_OK)
      lengths_[static_cast<size_t>(slot)] = first_row + static_cast<int32_t>(keep.size());
    return status;
  }

  std::vector<float> as_floats(const std::vector<unsigned char>& bytes) const {
    const size_t n = bytes.size() / std::max<size_t>(1, tessera::dtype_size(info_.kv_dtype));
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) {
      if (info_.kv_dtype == TS_F32) {
        std::memcpy(&out[i], bytes.data() + 4 * i, 4);
      } else {
        uint16_t h = 0;
        std::memcpy(&h, bytes.data() + 2 * i, 2);
        out[i] = info_.kv_dtype == TS_BF16 ? tessera::bf16_to_f32(h) : tessera::f16_to_f32(h);
      }
    }
    return out;
  }

  ts_tensor matrix(float* data, int64_t rows) const {
    ts_tensor t{};
    t.data = data;
    t.dtype = TS_F32;
    t.device = TS_DEVICE_CPU;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = setup_.hidden;
    t.stride[0] = setup_.hidden;
    t.stride[1] = 1;
    return t;
  }

 private:
  template <class OnSuccess>
  int run(const ts_block_io& io, std::string* error, OnSuccess on_success) {
    ts_error err{};
    const int status = vt_->forward(self_, &io, &err);
    if (error != nullptr) *error = status == TS_OK ? std::string() : std::string(err.message);
    if (status == TS_OK) on_success();
    return status;
  }

  const ts_block_vtable* vt_;
  BlockSetup setup_;
  void* self_ = nullptr;
  int create_status_ = TS_ERROR;
  std::string create_error_;
  ts_block_info info_{};
  int64_t row_width_ = 0;
  std::vector<unsigned char> k_, v_;  // elements of info_.kv_dtype
  std::vector<int32_t> lengths_;
};

}  // namespace tessera::test
