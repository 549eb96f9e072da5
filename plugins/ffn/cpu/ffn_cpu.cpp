// CPU feed-forward blocks: SwiGLU ("swiglu"), a plain linear map ("linear") and
// the identity ("noop").
//
// swiglu: y = down(silu(gate(x)) * up(x)). Sharded over the intermediate rows:
// each rank holds gate/up rows and down columns [rank*inter/world, ...), and the
// partial outputs sum (all_reduce_sum) to the full y.
#include <tessera/abi.h>
#include <tessera/cpu/block_support.hpp>
#include <tessera/cpu/dense_blocks.hpp>
#include <tessera/cpu/matmul.hpp>
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
    const int64_t split = tessera::cpu::matmul_split_rows();
    const int64_t units = (width + split - 1) / split;
    const int64_t grain = std::max<int64_t>(1, tessera::cpu::matmul_grain(n, hidden_) / 2);
    // Each claim covers rows of two matrices (gate and up): half the usual units.
    const int64_t step = std::max<int64_t>(1, tessera::cpu::matmul_claim_units() / 2);
    tessera::cpu::parallel_claims(host_, units, step, grain, [&](int64_t u0, int64_t u1) {
      const int64_t r0 = u0 * split, r1 = std::min(width, u1 * split);
      tessera::cpu::matmul_nt_range(x, n, hidden_, gate_, r0, r1, gate_out_.data(), width);
      tessera::cpu::matmul_nt_range(x, n, hidden_, up_, r0, r1, up_out_.data(), width);
      for (int64_t t = 0; t < n; ++t)
        tessera::cpu::swiglu_gate(gate_out_.data() + t * width + r0,
                                  up_out_.data() + t * width + r0, r1 - r0);
    });
    tessera::cpu::matmul_nt(host_, gate_out_.data(), n, width, down_,
                            static_cast<float*>(io.y->data), hidden_);
    tessera::cpu::all_reduce_partial(comm_, label_, *io.y);
  }

 private:
  std::string label_;
  const ts_host* host_ = nullptr;
  const ts_comm* comm_ = nullptr;
  int64_t hidden_ = 0, inter_ = 0;
  ShardRange rows_;
  MatrixView gate_, up_, down_;
  std::vector<float> gate_out_, up_out_;
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
