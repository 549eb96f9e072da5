// Trainable fixture blocks: every entry of ABI 2.1's training (train_workspace, forward_train,
// backward) written naively, so that the host's trainer can be tested end to end before the
// real plugins have their backward passes.
//
//   attention "train-attention"  y = o(softmax(q k^T / sqrt(d), causal per sequence) v), num_heads
//                                heads of head_dim, no RoPE, no KV cache (whole sequences only).
//                                Workspace: NONE keeps q, k, v, the probabilities and the
//                                context; CORE keeps q, k, v and the context and recomputes the
//                                probabilities; ALL keeps nothing.
//   ffn "train-mlp"              y = down(tanh(up(x))), intermediate_size wide. NONE and CORE keep
//                                up(x) and its tanh; ALL keeps nothing.
//   ffn "train-mlp-partial"      train-mlp without backward (a plugin that trains in part)
//   ffn "train-mlp-fails"        train-mlp whose backward reports an error
//
// Weights are read in f32, bf16 or f16 (converted element by element); gradients go to the
// host's f32 buffers, added (+=), skipped for frozen weights (NULL data).
#include <tessera/cpu/matmul.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace sdk = tessera::sdk;
using tessera::cpu::MatrixView;

MatrixView weight(const ts_block_config& config, const char* name, int64_t rows, int64_t cols) {
  const ts_tensor t = sdk::get_weight(config.weights, name, {rows, cols});
  if (t.dtype != TS_F32 && t.dtype != TS_BF16 && t.dtype != TS_F16)
    throw std::invalid_argument(std::string("weight '") + name + "' must be f32, bf16 or f16");
  return {t.data, t.dtype, rows, cols, cols};
}

float at(const MatrixView& w, int64_t i, int64_t j) {
  return tessera::cpu::matrix_element(w, i, j);
}

// y[n, w.rows] = x[n, w.cols] w^T
void linear(const float* x, int64_t n, const MatrixView& w, float* y) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < w.rows; ++o) {
      float s = 0;
      for (int64_t i = 0; i < w.cols; ++i) s += x[t * w.cols + i] * at(w, o, i);
      y[t * w.rows + o] = s;
    }
}

// gx[n, w.cols] (+)= gy[n, w.rows] w
void linear_grad_x(const float* gy, int64_t n, const MatrixView& w, float* gx, bool add) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < w.cols; ++i) {
      float s = add ? gx[t * w.cols + i] : 0.0f;
      for (int64_t o = 0; o < w.rows; ++o) s += gy[t * w.rows + o] * at(w, o, i);
      gx[t * w.cols + i] = s;
    }
}

// gw[w.rows, w.cols] += gy^T x, unless the weight is frozen.
void linear_grad_w(const float* gy, const float* x, int64_t n, int64_t rows, int64_t cols,
                   const ts_tensor& gw) {
  if (gw.data == nullptr) return;
  auto* g = static_cast<float*>(gw.data);
  for (int64_t o = 0; o < rows; ++o)
    for (int64_t i = 0; i < cols; ++i) {
      float s = 0;
      for (int64_t t = 0; t < n; ++t) s += gy[t * rows + o] * x[t * cols + i];
      g[o * cols + i] += s;
    }
}

void check_io(const ts_block_io& io, int64_t hidden) {
  if (io.x == nullptr || io.y == nullptr || io.batch == nullptr)
    throw std::invalid_argument("fixture-train: io needs x, y and batch");
  if (io.x->dtype != TS_F32 || io.x->ndim != 2 || io.x->shape[1] != hidden ||
      io.x->shape[0] != io.batch->n_tokens)
    throw std::invalid_argument("fixture-train: x must be f32 [n_tokens, hidden]");
}

// ------------------------------------------------------------------ attention

class Attention {
 public:
  explicit Attention(const ts_block_config& config)
      : hidden_(config.hidden),
        heads_(sdk::Params(config.params).get_int("num_heads")),
        head_dim_(sdk::Params(config.params).get_int("head_dim", hidden_ / heads_)) {
    const int64_t qd = heads_ * head_dim_;
    q_ = weight(config, "q_proj.weight", qd, hidden_);
    k_ = weight(config, "k_proj.weight", qd, hidden_);
    v_ = weight(config, "v_proj.weight", qd, hidden_);
    o_ = weight(config, "o_proj.weight", hidden_, qd);
  }

  static sdk::BlockLayout describe(const ts_block_config& config) {
    const sdk::Params p(config.params);
    const int64_t h = config.hidden, heads = p.get_int("num_heads");
    const int64_t qd = heads * p.get_int("head_dim", h / heads);
    sdk::BlockLayout layout;
    layout.weights = {{"q_proj.weight", {qd, h}},
                      {"k_proj.weight", {qd, h}},
                      {"v_proj.weight", {qd, h}},
                      {"o_proj.weight", {h, qd}}};
    return layout;
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.kv_dtype = TS_F32;
    i.parameters = 4 * hidden_ * heads_ * head_dim_;
    return i;
  }

  void forward(const ts_block_io& io) {
    if (io.kv != nullptr) throw std::invalid_argument("train-attention has no KV cache");
    check_io(io, hidden_);
    const Sizes s = sizes(*io.batch);
    std::vector<float> scratch(static_cast<size_t>(s.total));
    run(io, scratch.data(), s);
  }

  uint64_t train_workspace(const ts_batch& batch, ts_recompute policy) const {
    const Sizes s = sizes(batch);
    if (policy == TS_RECOMPUTE_ALL) return 0;
    const int64_t floats = policy == TS_RECOMPUTE_NONE ? s.total : s.total - s.probs;
    return static_cast<uint64_t>(floats) * sizeof(float);
  }

  void forward_train(const ts_block_io& io, ts_recompute policy, void* workspace) {
    check_io(io, hidden_);
    const Sizes s = sizes(*io.batch);
    if (policy == TS_RECOMPUTE_ALL) {
      std::vector<float> scratch(static_cast<size_t>(s.total));
      run(io, scratch.data(), s);
    } else if (policy == TS_RECOMPUTE_CORE) {
      std::vector<float> probs(static_cast<size_t>(s.probs));
      run_into(io, static_cast<float*>(workspace), probs.data());
    } else {
      run(io, static_cast<float*>(workspace), s);
    }
  }

  void backward(const ts_backward_io& io) {
    const int64_t n = io.batch->n_tokens, qd = heads_ * head_dim_;
    const Sizes s = sizes(*io.batch);
    const auto* x = static_cast<const float*>(io.x->data);
    const auto* gy = static_cast<const float*>(io.grad_y->data);
    // q, k, v, ctx (in that order) and the probabilities.
    std::vector<float> recomputed;
    float* base = nullptr;
    float* probs = nullptr;
    if (io.recompute == TS_RECOMPUTE_ALL) {
      recomputed.resize(static_cast<size_t>(s.total));
      base = recomputed.data();
      probs = base + 4 * n * qd;
      ts_tensor yv{};  // y itself is not needed, only what forward keeps
      std::vector<float> y(static_cast<size_t>(n * hidden_));
      yv.data = y.data();
      ts_block_io fio{};
      fio.x = io.x;
      fio.y = &yv;
      fio.batch = io.batch;
      run(fio, base, s);
    } else if (io.recompute == TS_RECOMPUTE_CORE) {
      base = static_cast<float*>(io.workspace);
      recomputed.resize(static_cast<size_t>(s.probs));
      probs = recomputed.data();
      softmax_probs(*io.batch, base, base + n * qd, probs);
    } else {
      base = static_cast<float*>(io.workspace);
      probs = base + 4 * n * qd;
    }
    const float* q = base;
    const float* k = base + n * qd;
    const float* v = base + 2 * n * qd;
    const float* ctx = base + 3 * n * qd;

    linear_grad_w(gy, ctx, n, hidden_, qd, sdk::get_grad(io.grads, "o_proj.weight", {hidden_, qd}));
    std::vector<float> gctx(static_cast<size_t>(n * qd));
    linear_grad_x(gy, n, o_, gctx.data(), false);

    std::vector<float> gq(static_cast<size_t>(n * qd), 0.0f), gk(gq.size(), 0.0f),
        gv(gq.size(), 0.0f);
    const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(head_dim_));
    int64_t p_off = 0;
    for (int32_t sq = 0; sq < io.batch->n_seqs; ++sq) {
      const int64_t b = io.batch->offsets[sq], len = io.batch->offsets[sq + 1] - b;
      for (int64_t hh = 0; hh < heads_; ++hh) {
        const float* P = probs + p_off + hh * len * len;
        for (int64_t i = 0; i < len; ++i) {
          const float* gc = gctx.data() + (b + i) * qd + hh * head_dim_;
          std::vector<float> gp(static_cast<size_t>(i + 1));
          float dot = 0;
          for (int64_t j = 0; j <= i; ++j) {
            const float* vj = v + (b + j) * qd + hh * head_dim_;
            float g = 0;
            for (int64_t d = 0; d < head_dim_; ++d) g += gc[d] * vj[d];
            gp[static_cast<size_t>(j)] = g;
            dot += P[i * len + j] * g;
            float* gvj = gv.data() + (b + j) * qd + hh * head_dim_;
            for (int64_t d = 0; d < head_dim_; ++d) gvj[d] += P[i * len + j] * gc[d];
          }
          const float* qi = q + (b + i) * qd + hh * head_dim_;
          float* gqi = gq.data() + (b + i) * qd + hh * head_dim_;
          for (int64_t j = 0; j <= i; ++j) {
            const float gs = P[i * len + j] * (gp[static_cast<size_t>(j)] - dot) * inv_sqrt_d;
            const float* kj = k + (b + j) * qd + hh * head_dim_;
            float* gkj = gk.data() + (b + j) * qd + hh * head_dim_;
            for (int64_t d = 0; d < head_dim_; ++d) {
              gqi[d] += gs * kj[d];
              gkj[d] += gs * qi[d];
            }
          }
        }
      }
      p_off += heads_ * len * len;
    }
    linear_grad_w(gq.data(), x, n, qd, hidden_,
                  sdk::get_grad(io.grads, "q_proj.weight", {qd, hidden_}));
    linear_grad_w(gk.data(), x, n, qd, hidden_,
                  sdk::get_grad(io.grads, "k_proj.weight", {qd, hidden_}));
    linear_grad_w(gv.data(), x, n, qd, hidden_,
                  sdk::get_grad(io.grads, "v_proj.weight", {qd, hidden_}));
    if (io.grad_x != nullptr) {
      auto* gx = static_cast<float*>(io.grad_x->data);
      linear_grad_x(gq.data(), n, q_, gx, false);
      linear_grad_x(gk.data(), n, k_, gx, true);
      linear_grad_x(gv.data(), n, v_, gx, true);
    }
  }

 private:
  struct Sizes {
    int64_t probs = 0;  // floats of the probabilities: heads * len^2 per sequence
    int64_t total = 0;  // q, k, v, ctx and the probabilities
  };

  Sizes sizes(const ts_batch& batch) const {
    Sizes s;
    for (int32_t i = 0; i < batch.n_seqs; ++i) {
      const int64_t len = batch.offsets[i + 1] - batch.offsets[i];
      s.probs += heads_ * len * len;
    }
    s.total = 4 * batch.n_tokens * heads_ * head_dim_ + s.probs;
    return s;
  }

  // P[h][i][j] for each sequence: softmax over j <= i of q_i . k_j / sqrt(d); 0 above.
  void softmax_probs(const ts_batch& batch, const float* q, const float* k, float* probs) const {
    const int64_t qd = heads_ * head_dim_;
    const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(head_dim_));
    int64_t p_off = 0;
    for (int32_t sq = 0; sq < batch.n_seqs; ++sq) {
      const int64_t b = batch.offsets[sq], len = batch.offsets[sq + 1] - b;
      for (int64_t hh = 0; hh < heads_; ++hh) {
        float* P = probs + p_off + hh * len * len;
        for (int64_t i = 0; i < len; ++i) {
          const float* qi = q + (b + i) * qd + hh * head_dim_;
          float mx = -INFINITY;
          for (int64_t j = 0; j < len; ++j) {
            float sc = 0;
            if (j <= i) {
              const float* kj = k + (b + j) * qd + hh * head_dim_;
              for (int64_t d = 0; d < head_dim_; ++d) sc += qi[d] * kj[d];
              sc *= inv_sqrt_d;
              mx = std::max(mx, sc);
            }
            P[i * len + j] = sc;
          }
          float sum = 0;
          for (int64_t j = 0; j <= i; ++j) {
            P[i * len + j] = std::exp(P[i * len + j] - mx);
            sum += P[i * len + j];
          }
          for (int64_t j = 0; j < len; ++j) P[i * len + j] = j <= i ? P[i * len + j] / sum : 0.0f;
        }
      }
      p_off += heads_ * len * len;
    }
  }

  // q, k, v, ctx at `base` (4 * n * qd floats), the probabilities at `probs`, and y.
  void run_into(const ts_block_io& io, float* base, float* probs) const {
    const int64_t n = io.batch->n_tokens, qd = heads_ * head_dim_;
    const auto* x = static_cast<const float*>(io.x->data);
    float* q = base;
    float* k = base + n * qd;
    float* v = base + 2 * n * qd;
    float* ctx = base + 3 * n * qd;
    linear(x, n, q_, q);
    linear(x, n, k_, k);
    linear(x, n, v_, v);
    softmax_probs(*io.batch, q, k, probs);
    int64_t p_off = 0;
    for (int32_t sq = 0; sq < io.batch->n_seqs; ++sq) {
      const int64_t b = io.batch->offsets[sq], len = io.batch->offsets[sq + 1] - b;
      for (int64_t hh = 0; hh < heads_; ++hh) {
        const float* P = probs + p_off + hh * len * len;
        for (int64_t i = 0; i < len; ++i) {
          float* c = ctx + (b + i) * qd + hh * head_dim_;
          for (int64_t d = 0; d < head_dim_; ++d) c[d] = 0;
          for (int64_t j = 0; j <= i; ++j) {
            const float* vj = v + (b + j) * qd + hh * head_dim_;
            for (int64_t d = 0; d < head_dim_; ++d) c[d] += P[i * len + j] * vj[d];
          }
        }
      }
      p_off += heads_ * len * len;
    }
    linear(ctx, n, o_, static_cast<float*>(io.y->data));
  }

  // Everything at `base`: q, k, v, ctx, then the probabilities.
  void run(const ts_block_io& io, float* base, const Sizes& s) const {
    run_into(io, base, base + (s.total - s.probs));
  }

  int64_t hidden_, heads_, head_dim_;
  MatrixView q_{}, k_{}, v_{}, o_{};
};

// ------------------------------------------------------------------------ mlp

enum class MlpVariant { full, partial, fails };

template <MlpVariant V>
class Mlp {
 public:
  explicit Mlp(const ts_block_config& config)
      : hidden_(config.hidden), inter_(sdk::Params(config.params).get_int("intermediate_size")) {
    up_ = weight(config, "up_proj.weight", inter_, hidden_);
    down_ = weight(config, "down_proj.weight", hidden_, inter_);
  }

  static sdk::BlockLayout describe(const ts_block_config& config) {
    const int64_t h = config.hidden,
                  inter = sdk::Params(config.params).get_int("intermediate_size");
    sdk::BlockLayout layout;
    layout.weights = {{"up_proj.weight", {inter, h}}, {"down_proj.weight", {h, inter}}};
    return layout;
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.kv_dtype = TS_F32;
    i.parameters = 2 * hidden_ * inter_;
    return i;
  }

  void forward(const ts_block_io& io) {
    check_io(io, hidden_);
    std::vector<float> scratch(static_cast<size_t>(2 * io.batch->n_tokens * inter_));
    run(io, scratch.data());
  }

  uint64_t train_workspace(const ts_batch& batch, ts_recompute policy) const {
    if (policy == TS_RECOMPUTE_ALL) return 0;
    return static_cast<uint64_t>(2 * batch.n_tokens * inter_) * sizeof(float);
  }

  void forward_train(const ts_block_io& io, ts_recompute policy, void* workspace) {
    if (policy == TS_RECOMPUTE_ALL) {
      forward(io);
    } else {
      check_io(io, hidden_);
      run(io, static_cast<float*>(workspace));
    }
  }

  void backward(const ts_backward_io& io) {
    if constexpr (V == MlpVariant::fails) throw std::runtime_error("deliberate backward failure");
    const int64_t n = io.batch->n_tokens;
    const auto* x = static_cast<const float*>(io.x->data);
    const auto* gy = static_cast<const float*>(io.grad_y->data);
    std::vector<float> recomputed;
    const float* kept = static_cast<const float*>(io.workspace);
    if (io.recompute == TS_RECOMPUTE_ALL) {
      recomputed.resize(static_cast<size_t>(2 * n * inter_));
      std::vector<float> y(static_cast<size_t>(n * hidden_));
      ts_tensor yv{};
      yv.data = y.data();
      ts_block_io fio{};
      fio.x = io.x;
      fio.y = &yv;
      fio.batch = io.batch;
      run(fio, recomputed.data());
      kept = recomputed.data();
    }
    const float* t = kept + n * inter_;  // tanh(up x)
    linear_grad_w(gy, t, n, hidden_, inter_,
                  sdk::get_grad(io.grads, "down_proj.weight", {hidden_, inter_}));
    std::vector<float> ga(static_cast<size_t>(n * inter_));
    linear_grad_x(gy, n, down_, ga.data(), false);
    for (size_t i = 0; i < ga.size(); ++i) ga[i] *= 1.0f - t[i] * t[i];
    linear_grad_w(ga.data(), x, n, inter_, hidden_,
                  sdk::get_grad(io.grads, "up_proj.weight", {inter_, hidden_}));
    if (io.grad_x != nullptr)
      linear_grad_x(ga.data(), n, up_, static_cast<float*>(io.grad_x->data), false);
  }

 private:
  // a = up(x) and tanh(a) at `kept`, y = down(tanh(a)).
  void run(const ts_block_io& io, float* kept) const {
    const int64_t n = io.batch->n_tokens;
    float* a = kept;
    float* t = kept + n * inter_;
    linear(static_cast<const float*>(io.x->data), n, up_, a);
    for (int64_t i = 0; i < n * inter_; ++i) t[i] = std::tanh(a[i]);
    linear(t, n, down_, static_cast<float*>(io.y->data));
  }

  int64_t hidden_, inter_;
  MatrixView up_{}, down_{};
};

const ts_block_vtable kAttention = sdk::block_vtable<Attention>();
const ts_block_vtable kMlp = sdk::block_vtable<Mlp<MlpVariant::full>>();
const ts_block_vtable kMlpPartial = [] {
  ts_block_vtable v = sdk::block_vtable<Mlp<MlpVariant::partial>>();
  v.backward = nullptr;
  return v;
}();
const ts_block_vtable kMlpFails = sdk::block_vtable<Mlp<MlpVariant::fails>>();

const ts_provider kProviders[] = {
    sdk::provider(TS_KIND_ATTENTION, "train-attention", TS_DEVICE_CPU, &kAttention),
    sdk::provider(TS_KIND_FFN, "train-mlp", TS_DEVICE_CPU, &kMlp),
    sdk::provider(TS_KIND_FFN, "train-mlp-partial", TS_DEVICE_CPU, &kMlpPartial),
    sdk::provider(TS_KIND_FFN, "train-mlp-fails", TS_DEVICE_CPU, &kMlpFails),
};

}  // namespace

TESSERA_PLUGIN("fixture-train", "0.1.0", kProviders)
