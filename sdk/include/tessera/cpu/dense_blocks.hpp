// The two block variants that attention and FFN plugins share: a single linear
// map (Puzzle's "replace with linear") and the no-op. A plugin derives a named
// block from them, e.g.
//   struct LinearAttention : tessera::cpu::LinearBlock {
//     explicit LinearAttention(const ts_block_config& c)
//         : LinearBlock(c, "attention linear", "linear_attn.weight") {}
//     static sdk::BlockLayout describe(const ts_block_config& c) {
//       return layout(c, "linear_attn.weight");
//     }
//   };
#pragma once

#include <tessera/abi.h>
#include <tessera/cpu/block_support.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/matmul_grad.hpp>

#include <cstring>
#include <stdexcept>
#include <string>

namespace tessera::cpu {

// Checks x and y ([n, hidden], f32) and the batch layout; returns n.
inline int64_t checked_rows(const ts_block_io& io, const std::string& label, int64_t hidden) {
  if (io.x == nullptr) throw std::invalid_argument(label + ": tensor x is missing");
  const int64_t n = io.x->ndim >= 1 ? io.x->shape[0] : 0;
  check_activation(io.x, label, "x", n, hidden);
  check_activation(io.y, label, "y", n, hidden);
  if (io.batch != nullptr) check_batch(io.batch, label, n);
  return n;
}

// y = x W^T with W [hidden, hidden], sharded over W's input columns (each rank
// computes a partial sum, then the ranks all-reduce).
// Training: nothing to keep (backward reads x again), so every policy's workspace is empty.
// dW[:, cols] += dy^T x[:, cols] for the rank's columns; dx = dy W, each rank writing its
// columns and zeros elsewhere, summed over the ranks.
class LinearBlock {
 public:
  LinearBlock(const ts_block_config& config, const char* kind_and_name, const char* weight_name)
      : label_(block_label(config, kind_and_name)),
        weight_name_(weight_name),
        host_(config.host),
        comm_(config.comm) {
    check_block_config(config, label_);
    hidden_ = config.hidden;
    int32_t rank = 0, world = 1;
    comm_rank_world(config, label_, rank, world);
    cols_ = shard_range(hidden_, rank, world);
    w_ = fetch_weight(config.weights, label_, weight_name, hidden_, hidden_)
             .col_slice(cols_.begin, cols_.end);
  }

  // What a block reading `weight_name` declares: one [hidden, hidden] matrix whose input
  // columns are split over the ranks, and no cache.
  static sdk::BlockLayout layout(const ts_block_config& config, const char* weight_name) {
    if (config.hidden <= 0)
      throw std::invalid_argument(std::string(weight_name) +
                                  ": hidden size must be positive, got " +
                                  std::to_string(config.hidden));
    int32_t rank = 0, world = 1;
    comm_rank_world(config, weight_name, rank, world);
    sdk::BlockLayout out;
    out.weights = {{weight_name, {config.hidden, config.hidden}, TS_SPLIT_COLUMNS}};
    out.weights[0].dtypes = matrix_dtypes(world);
    return out;
  }

  // The cpu, f32 activations, and at least one column per rank.
  static void supports(const ts_block_config& config) {
    const std::string label = block_label(config, "linear block");
    check_block_config(config, label);
    int32_t rank = 0, world = 1;
    comm_rank_world(config, label, rank, world);
    if (config.hidden < world)
      throw sdk::Unsupported(label + ": hidden size " + std::to_string(config.hidden) +
                             " cannot be split over " + std::to_string(world) + " ranks");
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.flags = TS_BLOCK_ROW_INVARIANT;
    i.kv_dtype = TS_F32;
    i.parameters = hidden_ * cols_.size();
    return i;
  }

  void forward(const ts_block_io& io) {
    const int64_t n = checked_rows(io, label_, hidden_);
    matmul_nt(host_, static_cast<const float*>(io.x->data) + cols_.begin, n, hidden_, w_,
              static_cast<float*>(io.y->data), hidden_,
              row_reduction(sdk::row_invariant(io.batch)));
    all_reduce_partial(comm_, label_, *io.y);
  }

  uint64_t train_workspace(const ts_batch& batch, ts_recompute) const {
    check_batch(&batch, label_, batch.n_tokens);
    return 0;
  }

  void forward_train(const ts_block_io& io, ts_recompute, void*) { forward(io); }

  void backward(const ts_backward_io& io) {
    const int64_t n = checked_backward_rows(io, label_, hidden_);
    const GradMatrix g = fetch_grad(io.grads, label_, weight_name_, hidden_, hidden_);
    const auto* x = static_cast<const float*>(io.x->data);
    const auto* dy = static_cast<const float*>(io.grad_y->data);
    if (g)
      matmul_tn_add(host_, dy, hidden_, x + cols_.begin, hidden_, n, hidden_, cols_.size(),
                    g.data + cols_.begin, g.ld);
    if (io.grad_x == nullptr) return;
    auto* dx = static_cast<float*>(io.grad_x->data);
    if (cols_.size() < hidden_)  // the other ranks' columns: zero here, theirs after the sum
      std::memset(dx, 0, static_cast<size_t>(n * hidden_) * sizeof(float));
    matmul_nn(host_, dy, n, hidden_, w_, dx + cols_.begin, hidden_, false);
    all_reduce_partial(comm_, label_, *io.grad_x);
  }

 private:
  std::string label_;
  std::string weight_name_;
  const ts_host* host_ = nullptr;
  const ts_comm* comm_ = nullptr;
  int64_t hidden_ = 0;
  ShardRange cols_;
  MatrixView w_;
};

// Adds nothing to the residual stream; TS_BLOCK_IDENTITY lets the host skip it, in training
// too. Called anyway, it writes zeros: forward_train keeps nothing, and backward writes
// grad_x = 0 and adds to no gradient (it has no weights).
class NoopBlock {
 public:
  NoopBlock(const ts_block_config& config, const char* kind_and_name)
      : label_(block_label(config, kind_and_name)), hidden_(config.hidden) {
    check_block_config(config, label_);
  }

  // No weights, no cache: an identity.
  static sdk::BlockLayout describe(const ts_block_config&) {
    sdk::BlockLayout out;
    out.flags = TS_BLOCK_IDENTITY;
    return out;
  }

  static void supports(const ts_block_config& config) {
    check_block_config(config, block_label(config, "noop block"));
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.flags = TS_BLOCK_IDENTITY | TS_BLOCK_ROW_INVARIANT;
    i.kv_dtype = TS_F32;
    return i;
  }

  void forward(const ts_block_io& io) {
    if (io.y == nullptr) throw std::invalid_argument(label_ + ": tensor y is missing");
    const int64_t n = io.y->ndim >= 1 ? io.y->shape[0] : 0;
    check_activation(io.y, label_, "y", n, hidden_);
    std::memset(io.y->data, 0, static_cast<size_t>(n * hidden_) * sizeof(float));
  }

  uint64_t train_workspace(const ts_batch& batch, ts_recompute) const {
    check_batch(&batch, label_, batch.n_tokens);
    return 0;
  }

  void forward_train(const ts_block_io& io, ts_recompute, void*) { forward(io); }

  void backward(const ts_backward_io& io) {
    const int64_t n = checked_backward_rows(io, label_, hidden_);
    if (io.grad_x != nullptr)
      std::memset(io.grad_x->data, 0, static_cast<size_t>(n * hidden_) * sizeof(float));
  }

 private:
  std::string label_;
  int64_t hidden_ = 0;
};

}  // namespace tessera::cpu
