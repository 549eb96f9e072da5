// Attention kind "sliding-gqa": grouped-query attention with RoPE (as gqa) in which each
// token attends to at most the last `window` rows of its sequence's cache, itself included
// (causal among new tokens, or the sequence's tree mask). With a window at least as long as
// the sequence it is gqa. Naive, f32 KV cache, one rank; written against the SDK alone, and
// declares its weights and cache through describe, so the core needs no change to load it
// with random weights, from safetensors, in generate and in plugin-check.
//
// Parameters: num_heads, kv_heads (default num_heads), head_dim (default hidden/num_heads),
// rope_theta and the RoPE scaling of the model, window (>= 1, default 4).
#include <tessera/abi.h>
#include <tessera/cpu/block_support.hpp>
#include <tessera/cpu/dense_blocks.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/ops.hpp>
#include <tessera/plugin.hpp>
#include <tessera/rope_scaling.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace cpu = tessera::cpu;
namespace sdk = tessera::sdk;

std::string num(int64_t v) {
  return std::to_string(v);
}

struct Shape {
  int64_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, window = 0;
  double theta = 10000.0;
  sdk::RopeScalingParams scaling;
};

Shape read_shape(const ts_block_config& config, const std::string& label) {
  const sdk::Params p(config.params);
  Shape s;
  s.hidden = config.hidden;
  try {
    s.heads = p.get_int("num_heads");
    s.kv_heads = p.get_int("kv_heads", s.heads);
    s.head_dim = p.get_int("head_dim", s.heads > 0 ? s.hidden / s.heads : 0);
    s.window = p.get_int("window", 4);
    s.theta = p.get_float("rope_theta", 10000.0);
    s.scaling = sdk::rope_scaling_from_params(p);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(label + ": " + e.what());
  }
  if (s.hidden <= 0 || s.heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0)
    throw std::invalid_argument(label + ": hidden " + num(s.hidden) + ", num_heads " +
                                num(s.heads) + ", kv_heads " + num(s.kv_heads) + " and head_dim " +
                                num(s.head_dim) + " must all be positive");
  if (s.head_dim % 2 != 0)
    throw std::invalid_argument(label + ": head_dim " + num(s.head_dim) + " must be even for RoPE");
  if (s.heads % s.kv_heads != 0)
    throw std::invalid_argument(label + ": kv_heads " + num(s.kv_heads) +
                                " does not divide num_heads " + num(s.heads));
  if (s.window < 1)
    throw std::invalid_argument(label + ": window " + num(s.window) + " must be >= 1");
  if (!(s.theta > 0.0)) throw std::invalid_argument(label + ": rope_theta must be positive");
  return s;
}

class SlidingGqa {
 public:
  explicit SlidingGqa(const ts_block_config& config)
      : label_(cpu::block_label(config, "attention sliding-gqa")), host_(config.host) {
    supports(config);
    s_ = read_shape(config, label_);
    const int64_t q_rows = s_.heads * s_.head_dim, kv_rows = s_.kv_heads * s_.head_dim;
    wq_ = cpu::fetch_weight(config.weights, label_, "q_proj.weight", q_rows, s_.hidden);
    wk_ = cpu::fetch_weight(config.weights, label_, "k_proj.weight", kv_rows, s_.hidden);
    wv_ = cpu::fetch_weight(config.weights, label_, "v_proj.weight", kv_rows, s_.hidden);
    wo_ = cpu::fetch_weight(config.weights, label_, "o_proj.weight", s_.hidden, q_rows);
    inv_freq_ = cpu::rope_inv_freq(s_.head_dim, s_.theta);
    sdk::apply_rope_scaling(inv_freq_, s_.scaling);
  }

  // gqa's four projections under gqa's names, and an f32 cache of every KV head.
  static sdk::BlockLayout describe(const ts_block_config& config) {
    const Shape s = read_shape(config, cpu::block_label(config, "attention sliding-gqa"));
    const int64_t q_rows = s.heads * s.head_dim, kv_rows = s.kv_heads * s.head_dim;
    sdk::BlockLayout layout;
    layout.kv_heads = static_cast<int32_t>(s.kv_heads);
    layout.head_dim = static_cast<int32_t>(s.head_dim);
    layout.kv_dtype = TS_F32;
    layout.weights = {{"q_proj.weight", {q_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"k_proj.weight", {kv_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"v_proj.weight", {kv_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"o_proj.weight", {s.hidden, q_rows}, TS_SPLIT_COLUMNS}};
    return layout;
  }

  // The cpu, f32 activations and cache, one rank.
  static void supports(const ts_block_config& config) {
    const std::string label = cpu::block_label(config, "attention sliding-gqa");
    cpu::check_block_config(config, label);
    if (config.comm != nullptr && config.comm->world > 1)
      throw sdk::Unsupported(label + ": runs on one rank, not " + num(config.comm->world));
    const std::string kv_dtype = sdk::Params(config.params).get_string("kv_dtype", "f32");
    if (kv_dtype != "f32")
      throw sdk::Unsupported(label + ": keeps its cache in f32, not " + kv_dtype);
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.kv_heads = static_cast<int32_t>(s_.kv_heads);
    i.head_dim = static_cast<int32_t>(s_.head_dim);
    i.kv_dtype = TS_F32;
    i.parameters = 2 * (s_.heads + s_.kv_heads) * s_.head_dim * s_.hidden;
    return i;
  }

  void forward(const ts_block_io& io) {
    const int64_t n = cpu::checked_rows(io, label_, s_.hidden);
    cpu::check_batch(io.batch, label_, n);
    const ts_batch& b = *io.batch;
    if (io.kv == nullptr || io.kv->lengths == nullptr)
      throw std::invalid_argument(label_ + ": no KV cache was given");
    const int64_t hd = s_.head_dim, kv_width = s_.kv_heads * hd, q_width = s_.heads * hd;
    for (const ts_tensor* t : {&io.kv->k, &io.kv->v})
      if (t->dtype != TS_F32 || t->ndim != 4 || t->shape[2] != s_.kv_heads || t->shape[3] != hd)
        throw std::invalid_argument(label_ + ": the cache has shape " + sdk::shape_string(*t) +
                                    ", expected f32 [slots, capacity, " + num(s_.kv_heads) + ", " +
                                    num(hd) + "]");
    const int64_t slots = io.kv->k.shape[0], capacity = io.kv->k.shape[1];
    if (n == 0) return;

    const auto* x = static_cast<const float*>(io.x->data);
    q_.assign(static_cast<size_t>(n * q_width), 0.0f);
    k_.assign(static_cast<size_t>(n * kv_width), 0.0f);
    v_.assign(static_cast<size_t>(n * kv_width), 0.0f);
    out_.assign(static_cast<size_t>(n * q_width), 0.0f);
    cpu::matmul_nt(host_, x, n, s_.hidden, wq_, q_.data(), q_width);
    cpu::matmul_nt(host_, x, n, s_.hidden, wk_, k_.data(), kv_width);
    cpu::matmul_nt(host_, x, n, s_.hidden, wv_, v_.data(), kv_width);
    const int64_t half = hd / 2;
    std::vector<float> cs(static_cast<size_t>(hd));
    for (int64_t t = 0; t < n; ++t) {
      cpu::rope_angles(b.positions[t], inv_freq_.data(), half, cs.data(), cs.data() + half);
      cpu::rope_apply(q_.data() + t * q_width, s_.heads, hd, cs.data(), cs.data() + half);
      cpu::rope_apply(k_.data() + t * kv_width, s_.kv_heads, hd, cs.data(), cs.data() + half);
    }

    auto* kc = static_cast<float*>(io.kv->k.data);
    auto* vc = static_cast<float*>(io.kv->v.data);
    const int64_t group = s_.heads / s_.kv_heads;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    std::vector<double> p;
    for (int32_t s = 0; s < b.n_seqs; ++s) {
      const int64_t slot = b.slots[s], len = io.kv->lengths[slot];
      const int64_t first = b.offsets[s], n_new = b.offsets[s + 1] - first;
      if (slot < 0 || slot >= slots || len + n_new > capacity)
        throw std::invalid_argument(label_ + ": slot " + num(slot) + " with " + num(len) +
                                    " rows and " + num(n_new) + " new ones does not fit the cache");
      float* ks = kc + slot * capacity * kv_width;
      float* vs = vc + slot * capacity * kv_width;
      std::memcpy(ks + len * kv_width, k_.data() + first * kv_width,
                  static_cast<size_t>(n_new * kv_width) * sizeof(float));
      std::memcpy(vs + len * kv_width, v_.data() + first * kv_width,
                  static_cast<size_t>(n_new * kv_width) * sizeof(float));
      const uint8_t* mask = b.tree_masks != nullptr ? b.tree_masks[s] : nullptr;
      for (int64_t i = 0; i < n_new; ++i) {
        const int64_t row = len + i, lo = std::max<int64_t>(0, row - s_.window + 1);
        // Rows the token sees: cached ones in the window, new ones it may attend.
        auto visible = [&](int64_t r) {
          if (r < lo || r > len + n_new - 1) return false;
          if (r < len) return true;
          const int64_t j = r - len;
          return mask != nullptr ? mask[i * n_new + j] != 0 : j <= i;
        };
        for (int64_t h = 0; h < s_.heads; ++h) {
          const float* q = q_.data() + (first + i) * q_width + h * hd;
          const int64_t kvh = h / group;
          p.assign(static_cast<size_t>(len + n_new - lo), 0.0);
          double top = -INFINITY;
          for (int64_t r = lo; r < len + n_new; ++r) {
            if (!visible(r)) continue;
            const float* kr = ks + r * kv_width + kvh * hd;
            double dot = 0;
            for (int64_t d = 0; d < hd; ++d) dot += static_cast<double>(q[d]) * kr[d];
            p[static_cast<size_t>(r - lo)] = dot * scale;
            top = std::max(top, dot * scale);
          }
          double sum = 0;
          for (int64_t r = lo; r < len + n_new; ++r) {
            double& e = p[static_cast<size_t>(r - lo)];
            e = visible(r) ? std::exp(e - top) : 0.0;
            sum += e;
          }
          float* o = out_.data() + (first + i) * q_width + h * hd;
          for (int64_t d = 0; d < hd; ++d) {
            double acc = 0;
            for (int64_t r = lo; r < len + n_new; ++r)
              acc += p[static_cast<size_t>(r - lo)] * vs[r * kv_width + kvh * hd + d];
            o[d] = static_cast<float>(acc / sum);
          }
        }
      }
    }
    cpu::matmul_nt(host_, out_.data(), n, q_width, wo_, static_cast<float*>(io.y->data), s_.hidden);
  }

 private:
  std::string label_;
  const ts_host* host_ = nullptr;
  Shape s_;
  cpu::MatrixView wq_, wk_, wv_, wo_;
  std::vector<double> inv_freq_;
  std::vector<float> q_, k_, v_, out_;
};

const ts_block_vtable kVtable = sdk::block_vtable<SlidingGqa>();
const ts_provider kProviders[] = {
    sdk::provider(TS_KIND_ATTENTION, "sliding-gqa", TS_DEVICE_CPU, &kVtable)};

}  // namespace

TESSERA_PLUGIN("fixture-sliding-window", "0.1.0", kProviders)
