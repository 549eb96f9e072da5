// CPU feed-forward blocks: SwiGLU ("swiglu"), a plain linear map ("linear") and
// the identity ("noop").
//
// swiglu: y = down(silu(gate(x)) * up(x)). Sharded over the intermediate rows:
// each rank holds gate/up rows and down columns [rank*inter/world, ...), and the
// partial outputs sum (all_reduce_sum) to the full y.
//
// Training (forward_train / backward): the gate and up pre-activations g and u are what
// backward needs; recompute none or core keeps them in the workspace (there is no attention
// core to recompute), all keeps nothing and projects x again. h = silu(g) * u is rebuilt by
// the forward's own gating, then
//   dW_down += dy^T h,  dh = dy W_down,  dg = dh u silu'(g),  du = dh silu(g),
//   dW_gate += dg^T x,  dW_up += du^T x,  dx = dg W_gate + du W_up (summed over the ranks).
#include <tessera/abi.h>
#include <tessera/cpu/backward_ops.hpp>
#include <tessera/cpu/block_support.hpp>
#include <tessera/cpu/dense_blocks.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/matmul_grad.hpp>
#include <tessera/cpu/ops.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using tessera::cpu::MatrixView;
using tessera::cpu::ShardRange;

void ensure_size(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

// Floats rounded up to a whole number of 64-byte lines: workspace segments stay aligned.
int64_t aligned_floats(int64_t n) {
  return (n + 15) / 16 * 16;
}

// --------------------------------------------------------------- swiglu

// intermediate_size, checked: the one parameter a swiglu block needs.
int64_t swiglu_width(const ts_block_config& config, const std::string& label) {
  int64_t inter = 0;
  try {
    inter = tessera::sdk::Params(config.params).get_int("intermediate_size");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(label + ": " + e.what());
  }
  if (inter <= 0)
    throw std::invalid_argument(label + ": intermediate_size must be positive, got " +
                                std::to_string(inter) + " (give it in the block or in [model])");
  if (config.hidden <= 0)
    throw std::invalid_argument(label + ": hidden size must be positive, got " +
                                std::to_string(config.hidden));
  return inter;
}

class SwigluFfn {
 public:
  explicit SwigluFfn(const ts_block_config& config)
      : label_(tessera::cpu::block_label(config, "ffn swiglu")),
        host_(config.host),
        comm_(config.comm) {
    tessera::cpu::check_block_config(config, label_);
    hidden_ = config.hidden;
    inter_ = swiglu_width(config, label_);
    int32_t rank = 0, world = 1;
    tessera::cpu::comm_rank_world(config, label_, rank, world);
    if (inter_ < world)
      throw std::invalid_argument(label_ + ": intermediate_size " + std::to_string(inter_) +
                                  " cannot be split over " + std::to_string(world) + " ranks");
    rows_ = tessera::cpu::shard_range(inter_, rank, world);
    const ts_weights* w = config.weights;
    gate_ = tessera::cpu::fetch_weight(w, label_, "gate_proj.weight", inter_, hidden_)
                .row_slice(rows_.begin, rows_.end);
    up_ = tessera::cpu::fetch_weight(w, label_, "up_proj.weight", inter_, hidden_)
              .row_slice(rows_.begin, rows_.end);
    down_ = tessera::cpu::fetch_weight(w, label_, "down_proj.weight", hidden_, inter_)
                .col_slice(rows_.begin, rows_.end);
  }

  // gate and up split by rows, down by columns: each rank holds a slice of the
  // intermediate width.
  static tessera::sdk::BlockLayout describe(const ts_block_config& config) {
    const int64_t inter = swiglu_width(config, tessera::cpu::block_label(config, "ffn swiglu"));
    const int64_t hidden = config.hidden;
    tessera::sdk::BlockLayout layout;
    layout.weights = {{"gate_proj.weight", {inter, hidden}, TS_SPLIT_ROWS},
                      {"up_proj.weight", {inter, hidden}, TS_SPLIT_ROWS},
                      {"down_proj.weight", {hidden, inter}, TS_SPLIT_COLUMNS}};
    int32_t rank = 0, world = 1;
    tessera::cpu::comm_rank_world(config, "ffn swiglu", rank, world);
    for (tessera::sdk::WeightDecl& w : layout.weights)
      w.dtypes = tessera::cpu::matrix_dtypes(world);
    return layout;
  }

  // The cpu, f32 activations, and at least one intermediate row per rank.
  static void supports(const ts_block_config& config) {
    const std::string label = tessera::cpu::block_label(config, "ffn swiglu");
    tessera::cpu::check_block_config(config, label);
    const int64_t inter = swiglu_width(config, label);
    int32_t rank = 0, world = 1;
    tessera::cpu::comm_rank_world(config, label, rank, world);
    if (inter < world)
      throw tessera::sdk::Unsupported(label + ": intermediate_size " + std::to_string(inter) +
                                      " cannot be split over " + std::to_string(world) + " ranks");
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.flags = TS_BLOCK_ROW_INVARIANT;
    i.kv_dtype = TS_F32;
    i.parameters = 3 * rows_.size() * hidden_;
    return i;
  }

  void forward(const ts_block_io& io) {
    const int64_t n = tessera::cpu::checked_rows(io, label_, hidden_);
    if (n == 0) return;
    const int64_t width = rows_.size();
    ensure_size(gate_out_, n * width);
    ensure_size(up_out_, n * width);
    // gate and up rows of the same range, then the gating on that range: one
    // parallel region, and the gated values are still in cache.
    const float* x = static_cast<const float*>(io.x->data);
    const auto rows = tessera::cpu::row_reduction(tessera::sdk::row_invariant(io.batch));
    const int64_t split = tessera::cpu::matmul_split_rows();
    const int64_t units = (width + split - 1) / split;
    const int64_t grain = std::max<int64_t>(1, tessera::cpu::matmul_grain(n, hidden_) / 2);
    // Each claim covers rows of two matrices (gate and up): half the usual units.
    const int64_t step = std::max<int64_t>(1, tessera::cpu::matmul_claim_units() / 2);
    tessera::cpu::parallel_claims(host_, units, step, grain, [&](int64_t u0, int64_t u1) {
      const int64_t r0 = u0 * split, r1 = std::min(width, u1 * split);
      tessera::cpu::matmul_nt_range(x, n, hidden_, gate_, r0, r1, gate_out_.data(), width, rows);
      tessera::cpu::matmul_nt_range(x, n, hidden_, up_, r0, r1, up_out_.data(), width, rows);
      for (int64_t t = 0; t < n; ++t)
        tessera::cpu::swiglu_gate(gate_out_.data() + t * width + r0,
                                  up_out_.data() + t * width + r0, r1 - r0);
    });
    tessera::cpu::matmul_nt(host_, gate_out_.data(), n, width, down_,
                            static_cast<float*>(io.y->data), hidden_, rows);
    tessera::cpu::all_reduce_partial(comm_, label_, *io.y);
  }

  // g and u ([n, width] each) unless the whole block is recomputed.
  uint64_t train_workspace(const ts_batch& batch, ts_recompute recompute) const {
    tessera::cpu::check_batch(&batch, label_, batch.n_tokens);
    if (recompute == TS_RECOMPUTE_ALL) return 0;
    return static_cast<uint64_t>(2 * aligned_floats(batch.n_tokens * rows_.size())) * sizeof(float);
  }

  void forward_train(const ts_block_io& io, ts_recompute recompute, void* workspace) {
    const int64_t n = tessera::cpu::checked_rows(io, label_, hidden_);
    if (io.batch == nullptr) throw std::invalid_argument(label_ + ": no batch was given");
    const uint64_t bytes = train_workspace(*io.batch, recompute);
    tessera::cpu::check_workspace(workspace, bytes, label_);
    if (n == 0) return;
    float *g = nullptr, *u = nullptr;
    kept_activations(n, recompute, workspace, g, u);
    const float* x = static_cast<const float*>(io.x->data);
    project(x, n, g, u);
    const int64_t width = rows_.size();
    ensure_size(h_, n * width);
    gate(g, u, n, h_.data());
    tessera::cpu::matmul_nt(host_, h_.data(), n, width, down_, static_cast<float*>(io.y->data),
                            hidden_);
    tessera::cpu::all_reduce_partial(comm_, label_, *io.y);
  }

  void backward(const ts_backward_io& io) {
    const int64_t n = tessera::cpu::checked_backward_rows(io, label_, hidden_);
    const auto recompute = static_cast<ts_recompute>(io.recompute);
    tessera::cpu::check_workspace(io.workspace, train_workspace(*io.batch, recompute), label_);
    const int64_t width = rows_.size();
    using tessera::cpu::GradMatrix;
    const GradMatrix g_gate =
        tessera::cpu::fetch_grad(io.grads, label_, "gate_proj.weight", inter_, hidden_);
    const GradMatrix g_up =
        tessera::cpu::fetch_grad(io.grads, label_, "up_proj.weight", inter_, hidden_);
    const GradMatrix g_down =
        tessera::cpu::fetch_grad(io.grads, label_, "down_proj.weight", hidden_, inter_);
    if (n == 0) return;
    const auto* x = static_cast<const float*>(io.x->data);
    const auto* dy = static_cast<const float*>(io.grad_y->data);
    float *g = nullptr, *u = nullptr;
    kept_activations(n, recompute, io.workspace, g, u);
    if (recompute == TS_RECOMPUTE_ALL) project(x, n, g, u);
    const ts_host* host = host_;
    if (g_down) {
      ensure_size(h_, n * width);
      gate(g, u, n, h_.data());
      tessera::cpu::matmul_tn_add(host, dy, hidden_, h_.data(), width, n, hidden_, width,
                                  g_down.data + rows_.begin, g_down.ld);
    }
    if (!g_gate && !g_up && io.grad_x == nullptr) return;
    ensure_size(dh_, n * width);
    ensure_size(dg_, n * width);
    ensure_size(du_, n * width);
    tessera::cpu::matmul_nn(host, dy, n, hidden_, down_, dh_.data(), width, false);
    tessera::sdk::parallel_for(host, n, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        tessera::cpu::swiglu_gate_backward(dh_.data() + t * width, g + t * width, u + t * width,
                                           dg_.data() + t * width, du_.data() + t * width, width);
    });
    if (g_gate)
      tessera::cpu::matmul_tn_add(host, dg_.data(), width, x, hidden_, n, width, hidden_,
                                  g_gate.data + rows_.begin * g_gate.ld, g_gate.ld);
    if (g_up)
      tessera::cpu::matmul_tn_add(host, du_.data(), width, x, hidden_, n, width, hidden_,
                                  g_up.data + rows_.begin * g_up.ld, g_up.ld);
    if (io.grad_x == nullptr) return;
    auto* dx = static_cast<float*>(io.grad_x->data);
    tessera::cpu::matmul_nn(host, dg_.data(), n, width, gate_, dx, hidden_, false);
    tessera::cpu::matmul_nn(host, du_.data(), n, width, up_, dx, hidden_, true);
    tessera::cpu::all_reduce_partial(comm_, label_, *io.grad_x);
  }

 private:
  // Where g and u live: the workspace (policies none and core) or the block's scratch (all).
  void kept_activations(int64_t n, ts_recompute recompute, void* workspace, float*& g, float*& u) {
    const int64_t width = rows_.size();
    if (recompute == TS_RECOMPUTE_ALL) {
      ensure_size(gate_out_, n * width);
      ensure_size(up_out_, n * width);
      g = gate_out_.data();
      u = up_out_.data();
      return;
    }
    g = static_cast<float*>(workspace);
    u = g + aligned_floats(n * width);
  }

  // g = x W_gate^T and u = x W_up^T for this rank's rows, in one parallel region.
  void project(const float* x, int64_t n, float* g, float* u) const {
    const int64_t width = rows_.size();
    const tessera::cpu::MatmulTarget targets[2] = {{gate_, g, width}, {up_, u, width}};
    tessera::cpu::matmul_nt_many(host_, x, n, hidden_, targets, 2);
  }

  // h = silu(g) * u, one token row per call of the forward's gating: the same lanes whatever
  // the threads, so that recomputing h gives the same bits.
  void gate(const float* g, const float* u, int64_t n, float* h) const {
    const int64_t width = rows_.size();
    tessera::sdk::parallel_for(host_, n, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* ht = h + t * width;
        std::memcpy(ht, g + t * width, static_cast<size_t>(width) * sizeof(float));
        tessera::cpu::swiglu_gate(ht, u + t * width, width);
      }
    });
  }

  std::string label_;
  const ts_host* host_ = nullptr;
  const ts_comm* comm_ = nullptr;
  int64_t hidden_ = 0, inter_ = 0;
  ShardRange rows_;
  MatrixView gate_, up_, down_;
  std::vector<float> gate_out_, up_out_;
  std::vector<float> h_, dh_, dg_, du_;  // training scratch
};

// --------------------------------------------------------------- linear

// y = x W^T with W [hidden, hidden] (Puzzle's linear replacement of the FFN).
struct LinearFfn : tessera::cpu::LinearBlock {
  explicit LinearFfn(const ts_block_config& c)
      : LinearBlock(c, "ffn linear", "linear_mlp.weight") {}
  static tessera::sdk::BlockLayout describe(const ts_block_config& c) {
    return layout(c, "linear_mlp.weight");
  }
};

// ----------------------------------------------------------------- noop

struct NoopFfn : tessera::cpu::NoopBlock {
  explicit NoopFfn(const ts_block_config& c) : NoopBlock(c, "ffn noop") {}
};

const ts_block_vtable kSwigluVtable = tessera::sdk::block_vtable<SwigluFfn>();
const ts_block_vtable kLinearVtable = tessera::sdk::block_vtable<LinearFfn>();
const ts_block_vtable kNoopVtable = tessera::sdk::block_vtable<NoopFfn>();

const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_FFN, "swiglu", TS_DEVICE_CPU, &kSwigluVtable),
    tessera::sdk::provider(TS_KIND_FFN, "linear", TS_DEVICE_CPU, &kLinearVtable),
    tessera::sdk::provider(TS_KIND_FFN, "noop", TS_DEVICE_CPU, &kNoopVtable),
};

}  // namespace

TESSERA_PLUGIN("tessera-ffn-cpu", "0.1.0", kProviders)
