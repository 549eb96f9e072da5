// A naive SwiGLU FFN with training entries and one deliberate bug: backward takes the
// derivative of the gate's SiLU to be 1, i.e. dg = dh * u instead of dh * u * silu'(g).
// Everything else (forward, dx through up, every other gradient) is right.
#include <tessera/plugin.hpp>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace {

using tessera::sdk::Params;

class WrongBackwardSwiglu {
 public:
  explicit WrongBackwardSwiglu(const ts_block_config& c) : hidden_(c.hidden), inter_(width(c)) {
    gate_ = weight(c, "gate_proj.weight", inter_, hidden_);
    up_ = weight(c, "up_proj.weight", inter_, hidden_);
    down_ = weight(c, "down_proj.weight", hidden_, inter_);
  }

  static tessera::sdk::BlockLayout describe(const ts_block_config& c) {
    const int64_t inter = width(c);
    constexpr uint32_t f32 = 1u << TS_F32;
    tessera::sdk::BlockLayout layout;
    layout.weights = {
        {"gate_proj.weight", {inter, c.hidden}, TS_SPLIT_ROWS, TS_INIT_LINEAR, 0.0f, f32},
        {"up_proj.weight", {inter, c.hidden}, TS_SPLIT_ROWS, TS_INIT_LINEAR, 0.0f, f32},
        {"down_proj.weight", {c.hidden, inter}, TS_SPLIT_COLUMNS, TS_INIT_LINEAR, 0.0f, f32}};
    return layout;
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.kv_dtype = TS_F32;
    i.parameters = 3 * inter_ * hidden_;
    return i;
  }

  void forward(const ts_block_io& io) {
    const auto* x = static_cast<const float*>(io.x->data);
    auto* y = static_cast<float*>(io.y->data);
    const int64_t n = io.x->shape[0];
    std::vector<float> g, u, h;
    project(x, n, g, u, h);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t o = 0; o < hidden_; ++o) {
        double s = 0;
        for (int64_t i = 0; i < inter_; ++i) s += double(h[t * inter_ + i]) * down_[o * inter_ + i];
        y[t * hidden_ + o] = static_cast<float>(s);
      }
  }

  uint64_t train_workspace(const ts_batch&, ts_recompute) { return 0; }
  void forward_train(const ts_block_io& io, ts_recompute, void*) { forward(io); }

  void backward(const ts_backward_io& io) {
    const auto* x = static_cast<const float*>(io.x->data);
    const auto* dy = static_cast<const float*>(io.grad_y->data);
    const int64_t n = io.x->shape[0];
    const ts_tensor gg = tessera::sdk::get_grad(io.grads, "gate_proj.weight", {inter_, hidden_});
    const ts_tensor gu = tessera::sdk::get_grad(io.grads, "up_proj.weight", {inter_, hidden_});
    const ts_tensor gd = tessera::sdk::get_grad(io.grads, "down_proj.weight", {hidden_, inter_});
    std::vector<float> g, u, h;
    project(x, n, g, u, h);
    std::vector<double> dg(g.size()), du(g.size());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < inter_; ++i) {
        double dh = 0;
        for (int64_t o = 0; o < hidden_; ++o)
          dh += double(dy[t * hidden_ + o]) * down_[o * inter_ + i];
        const double gv = g[t * inter_ + i], sig = 1.0 / (1.0 + std::exp(-gv));
        du[t * inter_ + i] = dh * gv * sig;
        dg[t * inter_ + i] = dh * u[t * inter_ + i];  // the bug: silu'(g) is missing
      }
    if (gd.data != nullptr)
      for (int64_t o = 0; o < hidden_; ++o)
        for (int64_t i = 0; i < inter_; ++i) {
          double s = 0;
          for (int64_t t = 0; t < n; ++t) s += double(dy[t * hidden_ + o]) * h[t * inter_ + i];
          static_cast<float*>(gd.data)[o * inter_ + i] += static_cast<float>(s);
        }
    for (const auto& [grad, d] : {std::pair{gg, &dg}, std::pair{gu, &du}}) {
      if (grad.data == nullptr) continue;
      for (int64_t i = 0; i < inter_; ++i)
        for (int64_t c = 0; c < hidden_; ++c) {
          double s = 0;
          for (int64_t t = 0; t < n; ++t) s += (*d)[t * inter_ + i] * x[t * hidden_ + c];
          static_cast<float*>(grad.data)[i * hidden_ + c] += static_cast<float>(s);
        }
    }
    if (io.grad_x == nullptr) return;
    auto* dx = static_cast<float*>(io.grad_x->data);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < hidden_; ++c) {
        double s = 0;
        for (int64_t i = 0; i < inter_; ++i)
          s += dg[t * inter_ + i] * gate_[i * hidden_ + c] +
               du[t * inter_ + i] * up_[i * hidden_ + c];
        dx[t * hidden_ + c] = static_cast<float>(s);
      }
  }

 private:
  static int64_t width(const ts_block_config& c) {
    const int64_t inter = Params(c.params).get_int("intermediate_size");
    if (inter <= 0 || c.hidden <= 0) throw std::invalid_argument("wrong-backward: bad sizes");
    return inter;
  }

  static const float* weight(const ts_block_config& c, const char* name, int64_t rows,
                             int64_t cols) {
    const ts_tensor t = tessera::sdk::get_weight(c.weights, name, {rows, cols});
    if (t.dtype != TS_F32) throw std::invalid_argument("wrong-backward: weights must be f32");
    return static_cast<const float*>(t.data);
  }

  // g = x gate^T, u = x up^T, h = silu(g) * u.
  void project(const float* x, int64_t n, std::vector<float>& g, std::vector<float>& u,
               std::vector<float>& h) const {
    g.assign(static_cast<size_t>(n * inter_), 0.0f);
    u = g;
    h = g;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < inter_; ++i) {
        double sg = 0, su = 0;
        for (int64_t c = 0; c < hidden_; ++c) {
          sg += double(x[t * hidden_ + c]) * gate_[i * hidden_ + c];
          su += double(x[t * hidden_ + c]) * up_[i * hidden_ + c];
        }
        const size_t k = static_cast<size_t>(t * inter_ + i);
        g[k] = static_cast<float>(sg);
        u[k] = static_cast<float>(su);
        h[k] = static_cast<float>(sg / (1.0 + std::exp(-sg)) * su);
      }
  }

  int64_t hidden_, inter_;
  const float *gate_ = nullptr, *up_ = nullptr, *down_ = nullptr;
};

const ts_block_vtable kVtable = tessera::sdk::block_vtable<WrongBackwardSwiglu>();
const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_FFN, "swiglu", TS_DEVICE_CPU, &kVtable)};

}  // namespace

TESSERA_PLUGIN("fixture-wrong-backward", "0.1.0", kProviders)
