// A naive GQA block with one deliberate bug: tree masks are ignored.
#include <tessera/plugin.hpp>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace {

using tessera::sdk::Params;

class TreeBlindGqa {
 public:
  explicit TreeBlindGqa(const ts_block_config& c) {
    const Params p(c.params);
    hidden_ = c.hidden;
    heads_ = p.get_int("num_heads");
    kv_ = p.get_int("kv_heads");
    hd_ = p.get_int("head_dim");
    theta_ = p.get_float("rope_theta", 10000.0);
    q_ = tessera::sdk::get_weight(c.weights, "q_proj.weight", {heads_ * hd_, hidden_});
    k_ = tessera::sdk::get_weight(c.weights, "k_proj.weight", {kv_ * hd_, hidden_});
    v_ = tessera::sdk::get_weight(c.weights, "v_proj.weight", {kv_ * hd_, hidden_});
    o_ = tessera::sdk::get_weight(c.weights, "o_proj.weight", {hidden_, heads_ * hd_});
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.kv_heads = static_cast<int32_t>(kv_);
    i.head_dim = static_cast<int32_t>(hd_);
    i.kv_dtype = TS_F32;
    return i;
  }

  void forward(const ts_block_io& io) {
    const auto* x = static_cast<const float*>(io.x->data);
    auto* y = static_cast<float*>(io.y->data);
    auto* kc = static_cast<float*>(io.kv->k.data);
    auto* vc = static_cast<float*>(io.kv->v.data);
    const int64_t cap = io.kv->k.shape[1], row = kv_ * hd_;
    const ts_batch& b = *io.batch;
    for (int32_t s = 0; s < b.n_seqs; ++s) {
      const int32_t slot = b.slots[s], len = io.kv->lengths[slot];
      const int32_t first = b.offsets[s], n = b.offsets[s + 1] - first;
      float* ks = kc + slot * cap * row;
      float* vs = vc + slot * cap * row;
      std::vector<float> q(static_cast<size_t>(n * heads_ * hd_));
      for (int32_t t = 0; t < n; ++t) {
        const float* xt = x + (first + t) * hidden_;
        project(xt, q_, heads_ * hd_, &q[static_cast<size_t>(t * heads_ * hd_)]);
        project(xt, k_, row, ks + (len + t) * row);
        project(xt, v_, row, vs + (len + t) * row);
        rope(&q[static_cast<size_t>(t * heads_ * hd_)], heads_, b.positions[first + t]);
        rope(ks + (len + t) * row, kv_, b.positions[first + t]);
      }
      std::vector<float> attn(static_cast<size_t>(heads_ * hd_));
      for (int32_t t = 0; t < n; ++t) {
        const int32_t visible = len + t + 1;  // the bug: causal even under a tree mask
        for (int64_t h = 0; h < heads_; ++h) {
          const int64_t g = h / (heads_ / kv_);
          const float* qh = &q[static_cast<size_t>((t * heads_ + h) * hd_)];
          std::vector<double> w(static_cast<size_t>(visible));
          double mx = -INFINITY, sum = 0;
          for (int32_t j = 0; j < visible; ++j) {
            double d = 0;
            for (int64_t e = 0; e < hd_; ++e) d += double(qh[e]) * ks[j * row + g * hd_ + e];
            w[static_cast<size_t>(j)] = d / std::sqrt(double(hd_));
            mx = std::max(mx, w[static_cast<size_t>(j)]);
          }
          for (double& v : w) sum += (v = std::exp(v - mx));
          for (int64_t e = 0; e < hd_; ++e) {
            double acc = 0;
            for (int32_t j = 0; j < visible; ++j)
              acc += w[static_cast<size_t>(j)] * vs[j * row + g * hd_ + e];
            attn[static_cast<size_t>(h * hd_ + e)] = static_cast<float>(acc / sum);
          }
        }
        project(attn.data(), o_, hidden_, y + (first + t) * hidden_);
      }
    }
  }

 private:
  static void project(const float* x, const ts_tensor& w, int64_t rows, float* out) {
    const auto* wd = static_cast<const float*>(w.data);
    const int64_t cols = w.shape[1];
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < cols; ++c) acc += double(x[c]) * wd[r * cols + c];
      out[r] = static_cast<float>(acc);
    }
  }
  void rope(float* v, int64_t heads, int32_t pos) const {
    const int64_t half = hd_ / 2;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double a = pos * std::pow(theta_, -2.0 * double(i) / double(hd_));
        float* p = v + h * hd_;
        const double x0 = p[i], x1 = p[i + half];
        p[i] = static_cast<float>(x0 * std::cos(a) - x1 * std::sin(a));
        p[i + half] = static_cast<float>(x1 * std::cos(a) + x0 * std::sin(a));
      }
  }

  int64_t hidden_, heads_, kv_, hd_;
  double theta_;
  ts_tensor q_, k_, v_, o_;
};

const ts_block_vtable kGqa = tessera::sdk::block_vtable<TreeBlindGqa>();
const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_ATTENTION, "gqa", TS_DEVICE_CPU, &kGqa)};

}  // namespace

TESSERA_PLUGIN("tessera-fixture-wrong-attention", "0.0.1", kProviders)
