// Header-only C++ helpers for writing Tessera plugins over the C ABI in abi.h.
// They need the C++ standard library only (no Boost); a plugin in C needs abi.h alone.
//
//   struct MyBlock {
//     explicit MyBlock(const ts_block_config& config);   // throw on bad input
//     ts_block_info info() const;
//     void forward(const ts_block_io& io);
//     // Optional: what a block of this configuration reads and caches (ts_block_layout),
//     // and a check that throws sdk::Unsupported when this machine cannot build it.
//     static tessera::sdk::BlockLayout describe(const ts_block_config& config);
//     static void supports(const ts_block_config& config);
//     // Optional (ABI 2.1), all three or none: training.
//     uint64_t train_workspace(const ts_batch& batch, ts_recompute recompute);
//     void forward_train(const ts_block_io& io, ts_recompute recompute, void* workspace);
//     void backward(const ts_backward_io& io);
//   };
//   static const ts_block_vtable kVtable = tessera::sdk::block_vtable<MyBlock>();
//   static const ts_provider kProviders[] = {
//       tessera::sdk::provider(TS_KIND_ATTENTION, "my-gqa", TS_DEVICE_CPU, &kVtable)};
//   TESSERA_PLUGIN("my-plugin", "0.1.0", kProviders)
//
// Exceptions thrown by the implementation are caught here and turned into
// TS_ERROR with the message; nothing C++ crosses the library boundary.
#pragma once

#include <tessera/abi.h>
#include <tessera/dtype.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace tessera::sdk {

// ------------------------------------------------------------------ errors

// Thrown by plugin code; turned into TS_UNSUPPORTED rather than TS_ERROR.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void set_error(ts_error* err, std::string_view message) {
  if (err == nullptr) return;
  const size_t n = std::min(message.size(), sizeof(err->message) - 1);
  std::memcpy(err->message, message.data(), n);
  err->message[n] = '\0';
}

// Runs f, converting any exception into a status code and a message.
template <class F>
int guard(ts_error* err, F&& f) noexcept {
  try {
    f();
    return TS_OK;
  } catch (const Unsupported& e) {
    set_error(err, e.what());
    return TS_UNSUPPORTED;
  } catch (const std::exception& e) {
    set_error(err, e.what());
    return TS_ERROR;
  } catch (...) {
    set_error(err, "unknown exception in plugin");
    return TS_ERROR;
  }
}

// ---------------------------------------------------------------- params

// Read access to a ts_params list. Lookups of a missing or mistyped key throw
// std::invalid_argument naming the key.
class Params {
 public:
  Params() = default;
  explicit Params(const ts_params& p) : p_(p) {}

  const ts_param* find(std::string_view key) const {
    for (int32_t i = 0; i < p_.count; ++i)
      if (p_.items[i].key != nullptr && key == p_.items[i].key) return &p_.items[i];
    return nullptr;
  }
  bool has(std::string_view key) const { return find(key) != nullptr; }

  int64_t get_int(std::string_view key) const {
    const ts_param* p = require(key);
    if (p->type == TS_PARAM_INT || p->type == TS_PARAM_BOOL) return p->i;
    if (p->type == TS_PARAM_FLOAT && p->f == static_cast<double>(static_cast<int64_t>(p->f)))
      return static_cast<int64_t>(p->f);
    throw std::invalid_argument("parameter '" + std::string(key) + "' must be an integer");
  }
  double get_float(std::string_view key) const {
    const ts_param* p = require(key);
    if (p->type == TS_PARAM_FLOAT) return p->f;
    if (p->type == TS_PARAM_INT) return static_cast<double>(p->i);
    throw std::invalid_argument("parameter '" + std::string(key) + "' must be a number");
  }
  bool get_bool(std::string_view key) const {
    const ts_param* p = require(key);
    if (p->type == TS_PARAM_BOOL || p->type == TS_PARAM_INT) return p->i != 0;
    throw std::invalid_argument("parameter '" + std::string(key) + "' must be a boolean");
  }
  std::string get_string(std::string_view key) const {
    const ts_param* p = require(key);
    if (p->type == TS_PARAM_STRING && p->s != nullptr) return p->s;
    throw std::invalid_argument("parameter '" + std::string(key) + "' must be a string");
  }
  std::vector<int64_t> get_ints(std::string_view key) const {
    const ts_param* p = require(key);
    if (p->type == TS_PARAM_INT) return {p->i};
    if (p->type == TS_PARAM_INT_LIST) return {p->ints, p->ints + p->count};
    throw std::invalid_argument("parameter '" + std::string(key) + "' must be a list of integers");
  }

  int64_t get_int(std::string_view key, int64_t fallback) const {
    return has(key) ? get_int(key) : fallback;
  }
  double get_float(std::string_view key, double fallback) const {
    return has(key) ? get_float(key) : fallback;
  }
  bool get_bool(std::string_view key, bool fallback) const {
    return has(key) ? get_bool(key) : fallback;
  }
  std::string get_string(std::string_view key, std::string fallback) const {
    return has(key) ? get_string(key) : std::move(fallback);
  }

 private:
  const ts_param* require(std::string_view key) const {
    const ts_param* p = find(key);
    if (p == nullptr) throw std::invalid_argument("missing parameter '" + std::string(key) + "'");
    return p;
  }
  ts_params p_{nullptr, 0};
};

// ----------------------------------------------------------------- batches

// The batch's ts_batch_flags; 0 from a host older than ABI 2.2 (its struct ends before).
inline uint32_t batch_flags(const ts_batch* batch) {
  if (batch == nullptr || batch->struct_size < offsetof(ts_batch, flags) + sizeof(uint32_t))
    return 0;
  return batch->flags;
}
inline bool row_invariant(const ts_batch* batch) {
  return (batch_flags(batch) & TS_BATCH_ROW_INVARIANT) != 0;
}

// ----------------------------------------------------------------- tensors

inline int64_t numel(const ts_tensor& t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t.ndim; ++i) n *= t.shape[i];
  return n;
}

inline bool is_contiguous(const ts_tensor& t) {
  int64_t expected = 1;
  for (int32_t i = t.ndim - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.stride[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

inline std::string shape_string(const ts_tensor& t) {
  std::string s = "[";
  for (int32_t i = 0; i < t.ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(t.shape[i]);
  }
  return s + "]";
}

// Fetches a weight by its block-local name and checks its dtype and shape.
inline ts_tensor get_weight(const ts_weights* weights, const std::string& name,
                            std::initializer_list<int64_t> shape) {
  if (weights == nullptr || weights->get == nullptr)
    throw std::invalid_argument("no weights were given for '" + name + "'");
  ts_tensor t{};
  ts_error err{};
  if (weights->get(weights->ctx, name.c_str(), &t, &err) != TS_OK)
    throw std::runtime_error(err.message);
  bool ok = t.ndim == static_cast<int32_t>(shape.size());
  int32_t d = 0;
  for (int64_t s : shape) ok = ok && t.shape[d++] == s;
  if (!ok) {
    std::string want = "[";
    d = 0;
    for (int64_t s : shape) want += (d++ ? ", " : "") + std::to_string(s);
    throw std::invalid_argument("weight '" + name + "' has shape " + shape_string(t) +
                                ", expected " + want + "]");
  }
  return t;
}

// ------------------------------------------------------------------ host

// Splits [0, n) over the host's threads, or runs inline without a host.
template <class F>
void parallel_for(const ts_host* host, int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  if (host == nullptr || host->parallel_for == nullptr || host->n_threads <= 1 || n <= grain) {
    f(int64_t{0}, n);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  host->parallel_for(
      host->ctx, n, grain,
      [](void* arg, int64_t begin, int64_t end) { (*static_cast<Fn*>(arg))(begin, end); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

// ---------------------------------------------------------------- layouts

// One declared weight (ts_weight_decl) in C++ form.
struct WeightDecl {
  std::string name;            // block-local, "q_proj.weight"
  std::vector<int64_t> shape;  // unsharded
  ts_split split = TS_SPLIT_REPLICATED;
  ts_init init = TS_INIT_LINEAR;
  float init_scale = 0.0f;  // TS_INIT_NORMAL
  uint32_t dtypes = 0;      // mask of 1u << ts_dtype; 0: f32, f16 and bf16
};

// What describe() returns (ts_block_layout in C++ form).
struct BlockLayout {
  uint32_t flags = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
  int32_t kv_dtype = TS_F32;
  std::vector<WeightDecl> weights;
};

// Writes `layout` into the host's struct: the counts always, the entries that fit.
inline void write_layout(const BlockLayout& layout, ts_block_layout& out) {
  out.flags = layout.flags;
  out.kv_heads = layout.kv_heads;
  out.head_dim = layout.head_dim;
  out.kv_dtype = layout.kv_dtype;
  out.n_weights = static_cast<int32_t>(layout.weights.size());
  const int32_t room = out.weights == nullptr ? 0 : std::max(out.capacity, 0);
  for (int32_t i = 0; i < std::min(out.n_weights, room); ++i) {
    const WeightDecl& w = layout.weights[static_cast<size_t>(i)];
    if (w.name.size() >= TS_MAX_WEIGHT_NAME)
      throw std::invalid_argument("weight name '" + w.name + "' is longer than " +
                                  std::to_string(TS_MAX_WEIGHT_NAME - 1) + " bytes");
    if (w.shape.size() > TS_MAX_DIMS)
      throw std::invalid_argument("weight '" + w.name + "' has more than " +
                                  std::to_string(TS_MAX_DIMS) + " dimensions");
    ts_weight_decl& d = out.weights[i];
    d = ts_weight_decl{};
    std::memcpy(d.name, w.name.c_str(), w.name.size() + 1);
    d.ndim = static_cast<int32_t>(w.shape.size());
    for (size_t k = 0; k < w.shape.size(); ++k) d.shape[k] = w.shape[k];
    d.dtypes = w.dtypes;
    d.split = w.split;
    d.init = w.init;
    d.init_scale = w.init_scale;
  }
}

// ---------------------------------------------------------------- training

// A ts_recompute from the host, checked.
inline ts_recompute recompute_policy(int32_t value) {
  if (value < TS_RECOMPUTE_NONE || value > TS_RECOMPUTE_ALL)
    throw std::invalid_argument("recompute policy " + std::to_string(value) +
                                " is not one of 0 (none), 1 (core), 2 (all)");
  return static_cast<ts_recompute>(value);
}

// The f32 gradient buffer of a declared weight, checked against the weight's shape;
// data NULL when the weight is frozen.
inline ts_tensor get_grad(const ts_grads* grads, const std::string& name,
                          std::initializer_list<int64_t> shape) {
  if (grads == nullptr || grads->get == nullptr)
    throw std::invalid_argument("no gradient buffers were given for '" + name + "'");
  ts_tensor t{};
  ts_error err{};
  if (grads->get(grads->ctx, name.c_str(), &t, &err) != TS_OK)
    throw std::runtime_error(err.message);
  if (t.data == nullptr) return t;  // frozen
  bool ok = t.dtype == TS_F32 && t.ndim == static_cast<int32_t>(shape.size());
  int32_t d = 0;
  for (int64_t s : shape) ok = ok && t.shape[d++] == s;
  if (!ok)
    throw std::invalid_argument("gradient of '" + name + "' is " +
                                std::string(dtype_name(t.dtype)) + " " + shape_string(t) +
                                "; expected f32 of the weight's shape");
  return t;
}

// ---------------------------------------------------------------- vtables

template <class T, class = void>
struct has_describe : std::false_type {};
template <class T>
struct has_describe<T, std::void_t<decltype(T::describe(std::declval<const ts_block_config&>()))>>
    : std::true_type {};

template <class T, class = void>
struct has_supports : std::false_type {};
template <class T>
struct has_supports<T, std::void_t<decltype(T::supports(std::declval<const ts_block_config&>()))>>
    : std::true_type {};

template <class T, class = void>
struct has_training : std::false_type {};
template <class T>
struct has_training<
    T, std::void_t<decltype(std::declval<T&>().train_workspace(std::declval<const ts_batch&>(),
                                                               TS_RECOMPUTE_NONE)),
                   decltype(std::declval<T&>().forward_train(std::declval<const ts_block_io&>(),
                                                             TS_RECOMPUTE_NONE, nullptr)),
                   decltype(std::declval<T&>().backward(std::declval<const ts_backward_io&>()))>>
    : std::true_type {};

template <class T, class = void>
struct has_compact_kv : std::false_type {};
template <class T>
struct has_compact_kv<T, std::void_t<decltype(std::declval<T&>().compact_kv(
                             std::declval<ts_kv_layer&>(), 0, 0, nullptr, 0))>> : std::true_type {};

// A ts_block_vtable over a C++ class (see the top of this file).
template <class Block>
ts_block_vtable block_vtable() {
  ts_block_vtable v{};
  v.struct_size = sizeof(ts_block_vtable);
  v.create = [](const ts_block_config* config, void** self, ts_error* err) {
    return guard(err, [&] { *self = new Block(*config); });
  };
  v.destroy = [](void* self) { delete static_cast<Block*>(self); };
  v.info = [](void* self, ts_block_info* out, ts_error* err) {
    return guard(err, [&] {
      *out = static_cast<Block*>(self)->info();
      out->struct_size = sizeof(ts_block_info);
    });
  };
  v.forward = [](void* self, const ts_block_io* io, ts_error* err) {
    return guard(err, [&] { static_cast<Block*>(self)->forward(*io); });
  };
  if constexpr (has_compact_kv<Block>::value) {
    v.compact_kv = [](void* self, ts_kv_layer* kv, int32_t slot, int32_t first_row,
                      const int32_t* keep, int32_t n_keep, ts_error* err) {
      return guard(
          err, [&] { static_cast<Block*>(self)->compact_kv(*kv, slot, first_row, keep, n_keep); });
    };
  }
  if constexpr (has_describe<Block>::value) {
    v.describe = [](const ts_block_config* config, ts_block_layout* out, ts_error* err) {
      return guard(err, [&] { write_layout(Block::describe(*config), *out); });
    };
  }
  if constexpr (has_supports<Block>::value) {
    v.supports = [](const ts_block_config* config, ts_error* reason) {
      return guard(reason, [&] { Block::supports(*config); });
    };
  }
  if constexpr (has_training<Block>::value) {
    v.train_workspace = [](void* self, const ts_batch* batch, int32_t recompute, uint64_t* bytes,
                           ts_error* err) {
      return guard(err, [&] {
        *bytes = static_cast<Block*>(self)->train_workspace(*batch, recompute_policy(recompute));
      });
    };
    v.forward_train = [](void* self, const ts_block_io* io, int32_t recompute, void* workspace,
                         ts_error* err) {
      return guard(err, [&] {
        static_cast<Block*>(self)->forward_train(*io, recompute_policy(recompute), workspace);
      });
    };
    v.backward = [](void* self, const ts_backward_io* io, ts_error* err) {
      return guard(err, [&] { static_cast<Block*>(self)->backward(*io); });
    };
  }
  return v;
}

// A ts_decoder_vtable over a class with
//   explicit Decoder(const ts_decoder_config&); void step(const ts_decode_host&, ts_decode_step&);
template <class Decoder>
ts_decoder_vtable decoder_vtable() {
  ts_decoder_vtable v{};
  v.struct_size = sizeof(ts_decoder_vtable);
  v.create = [](const ts_decoder_config* config, void** self, ts_error* err) {
    return guard(err, [&] { *self = new Decoder(*config); });
  };
  v.destroy = [](void* self) { delete static_cast<Decoder*>(self); };
  v.step = [](void* self, const ts_decode_host* host, ts_decode_step* step, ts_error* err) {
    return guard(err, [&] { static_cast<Decoder*>(self)->step(*host, *step); });
  };
  return v;
}

// A ts_search_vtable over a class with
//   Search(const ts_params&, const ts_host*); std::string solve(std::string_view problem_json);
template <class Search>
ts_search_vtable search_vtable() {
  ts_search_vtable v{};
  v.struct_size = sizeof(ts_search_vtable);
  v.create = [](const ts_params* params, const ts_host* host, void** self, ts_error* err) {
    return guard(err, [&] { *self = new Search(*params, host); });
  };
  v.destroy = [](void* self) { delete static_cast<Search*>(self); };
  v.solve = [](void* self, const char* problem, char** solution, ts_error* err) {
    return guard(err, [&] {
      std::string out = static_cast<Search*>(self)->solve(problem ? problem : "");
      char* buf = new char[out.size() + 1];
      std::memcpy(buf, out.c_str(), out.size() + 1);
      *solution = buf;
    });
  };
  v.free_string = [](void*, char* text) { delete[] text; };
  return v;
}

// A ts_parallel_vtable over a class with
//   Parallel(const ts_params&, const ts_host*); ts_comm communicator();
template <class Parallel>
ts_parallel_vtable parallel_vtable() {
  ts_parallel_vtable v{};
  v.struct_size = sizeof(ts_parallel_vtable);
  v.create = [](const ts_params* params, const ts_host* host, void** self, ts_error* err) {
    return guard(err, [&] { *self = new Parallel(*params, host); });
  };
  v.destroy = [](void* self) { delete static_cast<Parallel*>(self); };
  v.communicator = [](void* self, ts_comm* out, ts_error* err) {
    return guard(err, [&] {
      *out = static_cast<Parallel*>(self)->communicator();
      out->struct_size = sizeof(ts_comm);
    });
  };
  return v;
}

// A ts_backend_vtable over a class with
//   explicit Backend(const ts_backend_config&);   // throw Unsupported when the device is absent
//   ts_backend_device_info device_info(); void* context();
//   void* alloc(size_t); void free(void*) noexcept;
//   void copy(void* dst, int32_t dst_device, const void* src, int32_t src_device, size_t);
//   void synchronize(); void convert(const ts_tensor&, ts_tensor&);
//   void rmsnorm(const ts_tensor& x, const ts_tensor& w, double eps, ts_tensor& y);
//   void add(ts_tensor& inout, const ts_tensor& addend);
//   void embed(const ts_tensor& table, const int32_t* tokens, int32_t n, ts_tensor& out);
//   void matmul(const ts_tensor& x, const ts_tensor& w, ts_tensor& y);
//   void argmax(const ts_tensor& logits, int32_t* tokens);
//   void sample(const ts_tensor& logits, float t, const float* uniforms, int32_t* tokens);
template <class Backend>
ts_backend_vtable backend_vtable() {
  ts_backend_vtable v{};
  v.struct_size = sizeof(ts_backend_vtable);
  v.create = [](const ts_backend_config* config, void** self, ts_error* err) {
    return guard(err, [&] { *self = new Backend(*config); });
  };
  v.destroy = [](void* self) { delete static_cast<Backend*>(self); };
  v.device_info = [](void* self, ts_backend_device_info* out, ts_error* err) {
    return guard(err, [&] {
      *out = static_cast<Backend*>(self)->device_info();
      out->struct_size = sizeof(ts_backend_device_info);
    });
  };
  v.context = [](void* self) { return static_cast<Backend*>(self)->context(); };
  v.alloc = [](void* self, size_t bytes, void** out, ts_error* err) {
    return guard(err, [&] { *out = static_cast<Backend*>(self)->alloc(bytes); });
  };
  v.free = [](void* self, void* ptr) { static_cast<Backend*>(self)->free(ptr); };
  v.copy = [](void* self, void* dst, int32_t dst_device, const void* src, int32_t src_device,
              size_t bytes, ts_error* err) {
    return guard(
        err, [&] { static_cast<Backend*>(self)->copy(dst, dst_device, src, src_device, bytes); });
  };
  v.synchronize = [](void* self, ts_error* err) {
    return guard(err, [&] { static_cast<Backend*>(self)->synchronize(); });
  };
  v.convert = [](void* self, const ts_tensor* src, ts_tensor* dst, ts_error* err) {
    return guard(err, [&] { static_cast<Backend*>(self)->convert(*src, *dst); });
  };
  v.rmsnorm = [](void* self, const ts_tensor* x, const ts_tensor* w, double eps, ts_tensor* y,
                 ts_error* err) {
    return guard(err, [&] { static_cast<Backend*>(self)->rmsnorm(*x, *w, eps, *y); });
  };
  v.add = [](void* self, ts_tensor* inout, const ts_tensor* addend, ts_error* err) {
    return guard(err, [&] { static_cast<Backend*>(self)->add(*inout, *addend); });
  };
  v.embed = [](void* self, const ts_tensor* table, const int32_t* tokens, int32_t n, ts_tensor* out,
               ts_error* err) {
    return guard(err, [&] { static_cast<Backend*>(self)->embed(*table, tokens, n, *out); });
  };
  v.matmul = [](void* self, const ts_tensor* x, const ts_tensor* w, ts_tensor* y, ts_error* err) {
    return guard(err, [&] { static_cast<Backend*>(self)->matmul(*x, *w, *y); });
  };
  v.argmax = [](void* self, const ts_tensor* logits, int32_t* tokens, ts_error* err) {
    return guard(err, [&] { static_cast<Backend*>(self)->argmax(*logits, tokens); });
  };
  v.sample = [](void* self, const ts_tensor* logits, float temperature, const float* uniforms,
                int32_t* tokens, ts_error* err) {
    return guard(
        err, [&] { static_cast<Backend*>(self)->sample(*logits, temperature, uniforms, tokens); });
  };
  return v;
}

constexpr ts_provider provider(ts_kind kind, const char* name, ts_device device, const void* vtable,
                               int32_t (*score)() = nullptr) {
  return ts_provider{sizeof(ts_provider), kind, name, device, score, vtable};
}

}  // namespace tessera::sdk

// Defines the plugin's single exported entry point, the C function tessera_plugin().
// PROVIDERS is a C array of ts_provider. Use it once, at namespace scope.
#define TESSERA_PLUGIN(NAME, VERSION, PROVIDERS)                                 \
  extern "C" TS_PLUGIN_EXPORT const ts_plugin_descriptor* tessera_plugin(void) { \
    static const ts_plugin_descriptor d{                                         \
        sizeof(ts_plugin_descriptor),                                            \
        TS_ABI_MAJOR,                                                            \
        TS_ABI_MINOR,                                                            \
        NAME,                                                                    \
        VERSION,                                                                 \
        static_cast<int32_t>(sizeof(PROVIDERS) / sizeof((PROVIDERS)[0])),        \
        PROVIDERS};                                                              \
    return &d;                                                                   \
  }
