// CPU attention blocks: grouped-query attention with RoPE and a KV cache ("gqa"),
// a plain linear map ("linear") and the identity ("noop").
//
// gqa forward for a batch of sequences:
//   q, k, v projections (one GEMM/GEMV each over all tokens of the batch)
//   -> RoPE on q and k at each token's position
//   -> new K/V rows written to the cache at rows length .. length + n_new - 1,
//      in the block's kv_dtype (f32 by default; bf16 or f16 halve the cache)
//   -> per (sequence, query head, tile of 64 new tokens): the queries attend the
//      cached rows plus the visible new rows (causal, or the sequence's tree
//      mask); see tessera/cpu/attention.hpp. When every sequence brings at most
//      three tokens (decode, small verifications), split-KV instead: items of
//      (sequence, KV head, chunk of rows) merged afterwards (attention_split.hpp)
//   -> o projection, then all-reduce of the partial sum when sharded.
#include <tessera/abi.h>
#include <tessera/cpu/attention.hpp>
#include <tessera/cpu/attention_split.hpp>
#include <tessera/cpu/backward_ops.hpp>
#include <tessera/cpu/block_support.hpp>
#include <tessera/cpu/dense_blocks.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/matmul_grad.hpp>
#include <tessera/cpu/ops.hpp>
#include <tessera/kv_rows.hpp>
#include <tessera/plugin.hpp>
#include <tessera/rope_scaling.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using tessera::cpu::MatrixView;
using tessera::cpu::ShardRange;

// Grows a scratch buffer when needed; never shrinks, so steady state allocates nothing.
void ensure_size(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

std::string num(int64_t v) {
  return std::to_string(v);
}

// ------------------------------------------------------------------ gqa

// The parameters of a gqa block, read and checked once for describe, supports and create.
struct GqaShape {
  int64_t hidden = 0, n_heads = 0, kv_heads = 0, head_dim = 0;
  double rope_theta = 10000.0;
  tessera::sdk::RopeScalingParams rope_scaling;
  ts_dtype kv_dtype = TS_F32;
};

// "f32" | "bf16" | "f16": the dtype the block keeps its KV cache in.
ts_dtype parse_kv_dtype(const std::string& name) {
  if (name == "f32") return TS_F32;
  if (name == "bf16") return TS_BF16;
  if (name == "f16") return TS_F16;
  throw std::invalid_argument("kv_dtype must be \"f32\", \"bf16\" or \"f16\", got \"" + name +
                              "\"");
}

// Query heads per KV head the split-KV kernel handles (checked at create).
constexpr int64_t kMaxGroup = 256;

GqaShape gqa_shape(const ts_block_config& config, const std::string& label) {
  const tessera::sdk::Params params(config.params);
  GqaShape s;
  s.hidden = config.hidden;
  try {
    s.n_heads = params.get_int("num_heads");
    s.head_dim = params.get_int("head_dim", s.n_heads > 0 ? s.hidden / s.n_heads : 0);
    s.kv_heads = params.get_int("kv_heads", s.n_heads);
    s.rope_theta = params.get_float("rope_theta", 10000.0);
    s.rope_scaling = tessera::sdk::rope_scaling_from_params(params);
    s.kv_dtype = parse_kv_dtype(params.get_string("kv_dtype", "f32"));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(label + ": " + e.what());
  }
  if (s.hidden <= 0)
    throw std::invalid_argument(label + ": hidden size must be positive, got " + num(s.hidden));
  if (s.n_heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0)
    throw std::invalid_argument(label + ": num_heads " + num(s.n_heads) + ", kv_heads " +
                                num(s.kv_heads) + " and head_dim " + num(s.head_dim) +
                                " must all be positive");
  if (s.head_dim % 2 != 0)
    throw std::invalid_argument(label + ": head_dim " + num(s.head_dim) + " must be even for RoPE");
  if (s.n_heads % s.kv_heads != 0)
    throw std::invalid_argument(label + ": kv_heads " + num(s.kv_heads) +
                                " does not divide num_heads " + num(s.n_heads) +
                                "; each KV head must serve a whole group of query heads");
  if (!(s.rope_theta > 0.0)) throw std::invalid_argument(label + ": rope_theta must be positive");
  if (s.n_heads / s.kv_heads > kMaxGroup)
    throw std::invalid_argument(label + ": " + num(s.n_heads / s.kv_heads) +
                                " query heads per KV head; at most " + num(kMaxGroup) +
                                " are supported");
  return s;
}

// The query heads and KV heads rank `rank` of `world` holds. Throws sdk::Unsupported when
// the heads do not split over the ranks (another provider, or fewer ranks, may do).
void gqa_shards(const GqaShape& s, int32_t rank, int32_t world, const std::string& label,
                ShardRange& heads, ShardRange& kv) {
  if (s.n_heads % world != 0)
    throw tessera::sdk::Unsupported(label + ": num_heads " + num(s.n_heads) +
                                    " cannot be split over " + num(world) + " ranks");
  if (s.kv_heads % world != 0 && world % s.kv_heads != 0)
    throw tessera::sdk::Unsupported(label + ": kv_heads " + num(s.kv_heads) +
                                    " cannot be split over " + num(world) + " ranks");
  heads = tessera::cpu::shard_range(s.n_heads, rank, world);
  if (s.kv_heads >= world) {
    kv = tessera::cpu::shard_range(s.kv_heads, rank, world);
  } else {  // several ranks share one KV head: each holds the one its query heads use
    kv.begin = heads.begin / (s.n_heads / s.kv_heads);
    kv.end = kv.begin + 1;
  }
}

class GqaAttention {
 public:
  explicit GqaAttention(const ts_block_config& config)
      : label_(tessera::cpu::block_label(config, "attention gqa")),
        host_(config.host),
        comm_(config.comm) {
    tessera::cpu::check_block_config(config, label_);
    const GqaShape s = gqa_shape(config, label_);
    hidden_ = s.hidden;
    n_heads_ = s.n_heads;
    kv_heads_ = s.kv_heads;
    head_dim_ = s.head_dim;
    rope_theta_ = s.rope_theta;
    rope_scaling_ = s.rope_scaling;
    kv_dtype_ = s.kv_dtype;
    tessera::cpu::comm_rank_world(config, label_, rank_, world_);
    gqa_shards(s, rank_, world_, label_, heads_, kv_);
    group_ = n_heads_ / kv_heads_;

    const int64_t q_rows = n_heads_ * head_dim_, kv_rows = kv_heads_ * head_dim_;
    const ts_weights* w = config.weights;
    wq_ = tessera::cpu::fetch_weight(w, label_, "q_proj.weight", q_rows, hidden_)
              .row_slice(heads_.begin * head_dim_, heads_.end * head_dim_);
    wk_ = tessera::cpu::fetch_weight(w, label_, "k_proj.weight", kv_rows, hidden_)
              .row_slice(kv_.begin * head_dim_, kv_.end * head_dim_);
    wv_ = tessera::cpu::fetch_weight(w, label_, "v_proj.weight", kv_rows, hidden_)
              .row_slice(kv_.begin * head_dim_, kv_.end * head_dim_);
    wo_ = tessera::cpu::fetch_weight(w, label_, "o_proj.weight", hidden_, q_rows)
              .col_slice(heads_.begin * head_dim_, heads_.end * head_dim_);
    inv_freq_ = tessera::cpu::rope_inv_freq(head_dim_, rope_theta_);
    tessera::sdk::apply_rope_scaling(inv_freq_, rope_scaling_);
  }

  // The four projections (q/k/v split by rows, o by columns over the ranks) and the KV
  // heads this rank caches, as info() will report them.
  static tessera::sdk::BlockLayout describe(const ts_block_config& config) {
    const std::string label = tessera::cpu::block_label(config, "attention gqa");
    const GqaShape s = gqa_shape(config, label);
    int32_t rank = 0, world = 1;
    tessera::cpu::comm_rank_world(config, label, rank, world);
    ShardRange heads, kv;
    gqa_shards(s, rank, world, label, heads, kv);
    const int64_t q_rows = s.n_heads * s.head_dim, kv_rows = s.kv_heads * s.head_dim;
    tessera::sdk::BlockLayout layout;
    layout.kv_heads = static_cast<int32_t>(kv.size());
    layout.head_dim = static_cast<int32_t>(s.head_dim);
    layout.kv_dtype = s.kv_dtype;
    layout.weights = {{"q_proj.weight", {q_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"k_proj.weight", {kv_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"v_proj.weight", {kv_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"o_proj.weight", {s.hidden, q_rows}, TS_SPLIT_COLUMNS}};
    for (tessera::sdk::WeightDecl& w : layout.weights)
      w.dtypes = tessera::cpu::matrix_dtypes(world);
    return layout;
  }

  // The cpu, f32 activations, and heads that split over the communicator's ranks.
  static void supports(const ts_block_config& config) {
    const std::string label = tessera::cpu::block_label(config, "attention gqa");
    tessera::cpu::check_block_config(config, label);
    const GqaShape s = gqa_shape(config, label);
    int32_t rank = 0, world = 1;
    tessera::cpu::comm_rank_world(config, label, rank, world);
    ShardRange heads, kv;
    gqa_shards(s, rank, world, label, heads, kv);
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.flags = TS_BLOCK_ROW_INVARIANT;
    i.kv_heads = static_cast<int32_t>(kv_.size());
    i.head_dim = static_cast<int32_t>(head_dim_);
    i.kv_dtype = kv_dtype_;
    i.parameters = 2 * heads_.size() * head_dim_ * hidden_ + 2 * kv_.size() * head_dim_ * hidden_;
    return i;
  }

  void forward(const ts_block_io& io) {
    if (io.x == nullptr) throw std::invalid_argument(label_ + ": tensor x is missing");
    const int64_t n = io.x->ndim >= 1 ? io.x->shape[0] : 0;
    tessera::cpu::check_activation(io.x, label_, "x", n, hidden_);
    tessera::cpu::check_activation(io.y, label_, "y", n, hidden_);
    tessera::cpu::check_batch(io.batch, label_, n);
    const ts_batch& batch = *io.batch;
    Cache cache;
    if (io.kv != nullptr) {
      cache = check_cache(io.kv);
      check_sequences(batch, cache, io.kv->lengths);
    } else {
      check_positions(batch);
    }
    if (n == 0) return;

    const int64_t q_width = heads_.size() * head_dim_, kv_width = kv_.size() * head_dim_;
    ensure_size(q_, n * q_width);
    ensure_size(k_, n * kv_width);
    ensure_size(v_, n * kv_width);
    ensure_size(attn_, n * q_width);
    const auto rows = tessera::cpu::row_reduction(tessera::sdk::row_invariant(io.batch));
    project_qkv(batch, static_cast<const float*>(io.x->data), n, q_.data(), k_.data(), v_.data(),
                rows);

    // The new K/V rows into the cache; a cache-free run reads them where they are.
    KvSource src;
    if (io.kv != nullptr) {
      for (int32_t s = 0; s < batch.n_seqs; ++s) {
        const int64_t slot = batch.slots[s], len = io.kv->lengths[slot];
        const int64_t first = batch.offsets[s], count = batch.offsets[s + 1] - first;
        const int64_t row = (slot * cache.capacity + len) * kv_width;
        if (count == 0) continue;
        store_rows(k_.data() + first * kv_width, count * kv_width, cache.k, row);
        store_rows(v_.data() + first * kv_width, count * kv_width, cache.v, row);
      }
      src = KvSource{cache.k, cache.v, kv_dtype_, cache.capacity, io.kv->lengths};
    } else {
      src = KvSource{reinterpret_cast<const char*>(k_.data()),
                     reinterpret_cast<const char*>(v_.data()), TS_F32, 0, nullptr};
    }

    // Decode (every sequence brings a few tokens): split-KV work items. Otherwise
    // one work item per (sequence, query head, tile of queries), so that a long
    // prefill spreads evenly over the threads.
    bool few_new = true;
    for (int32_t s = 0; s < batch.n_seqs; ++s)
      few_new = few_new && batch.offsets[s + 1] - batch.offsets[s] <= kSplitMaxNew;
    if (rows == tessera::cpu::RowReduction::each_row) {
      attend_row_invariant(batch, src);
    } else if (few_new) {
      attend_split(batch, src);
    } else {
      const int64_t hl = heads_.size(), tiles = query_tiles(batch);
      const int64_t items = static_cast<int64_t>(batch.n_seqs) * hl * tiles;
      tessera::sdk::parallel_for(host_, items, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t item = i0; item < i1; ++item)
          attend(batch, src, static_cast<int32_t>(item / (hl * tiles)), item / tiles % hl,
                 item % tiles * kQueryTile);
      });
    }

    tessera::cpu::matmul_nt(host_, attn_.data(), n, q_width, wo_, static_cast<float*>(io.y->data),
                            hidden_, rows);
    tessera::cpu::all_reduce_partial(comm_, label_, *io.y);
  }

  // ------------------------------------------------------------- training

  // Bytes of workspace forward_train keeps for `batch` under `recompute`.
  uint64_t train_workspace(const ts_batch& batch, ts_recompute recompute) const {
    tessera::cpu::check_batch(&batch, label_, batch.n_tokens);
    return train_layout(batch.n_tokens, recompute).bytes;
  }

  // A cache-free forward that also keeps, in the workspace, what backward needs under
  // `recompute` (see the top of this file).
  void forward_train(const ts_block_io& io, ts_recompute recompute, void* workspace) {
    if (io.kv != nullptr)
      throw std::invalid_argument(label_ +
                                  ": forward_train runs whole sequences without a cache; "
                                  "io->kv must be NULL");
    if (io.x == nullptr) throw std::invalid_argument(label_ + ": tensor x is missing");
    const int64_t n = io.x->ndim >= 1 ? io.x->shape[0] : 0;
    tessera::cpu::check_activation(io.x, label_, "x", n, hidden_);
    tessera::cpu::check_activation(io.y, label_, "y", n, hidden_);
    tessera::cpu::check_batch(io.batch, label_, n);
    const ts_batch& batch = *io.batch;
    check_positions(batch);
    const TrainLayout layout = train_layout(n, recompute);
    tessera::cpu::check_workspace(workspace, layout.bytes, label_);
    if (n == 0) return;
    const Activations a = activations(layout, n, workspace);
    project_qkv(batch, static_cast<const float*>(io.x->data), n, a.q, a.k, a.v);
    attend_train(batch, a);
    tessera::cpu::matmul_nt(host_, a.o, n, heads_.size() * head_dim_, wo_,
                            static_cast<float*>(io.y->data), hidden_);
    tessera::cpu::all_reduce_partial(comm_, label_, *io.y);
  }

  void backward(const ts_backward_io& io) {
    const int64_t n = tessera::cpu::checked_backward_rows(io, label_, hidden_);
    const ts_batch& batch = *io.batch;
    check_positions(batch);
    const auto recompute = static_cast<ts_recompute>(io.recompute);
    const TrainLayout layout = train_layout(n, recompute);
    tessera::cpu::check_workspace(io.workspace, layout.bytes, label_);
    const int64_t q_rows = n_heads_ * head_dim_, kv_rows = kv_heads_ * head_dim_;
    using tessera::cpu::fetch_grad;
    const tessera::cpu::GradMatrix gq =
        fetch_grad(io.grads, label_, "q_proj.weight", q_rows, hidden_);
    const tessera::cpu::GradMatrix gk =
        fetch_grad(io.grads, label_, "k_proj.weight", kv_rows, hidden_);
    const tessera::cpu::GradMatrix gv =
        fetch_grad(io.grads, label_, "v_proj.weight", kv_rows, hidden_);
    const tessera::cpu::GradMatrix go =
        fetch_grad(io.grads, label_, "o_proj.weight", hidden_, q_rows);
    if (n == 0) return;

    const int64_t hl = heads_.size(), kvl = kv_.size(), hd = head_dim_;
    const int64_t q_width = hl * hd, kv_width = kvl * hd;
    const auto* x = static_cast<const float*>(io.x->data);
    const auto* dy = static_cast<const float*>(io.grad_y->data);

    // What forward_train did not keep, recomputed by the same code.
    const Activations a = activations(layout, n, io.workspace);
    if (recompute == TS_RECOMPUTE_ALL)
      project_qkv(batch, x, n, a.q, a.k, a.v);
    else
      rope_table(batch, n);
    if (recompute != TS_RECOMPUTE_NONE) attend_train(batch, a);

    if (go)
      tessera::cpu::matmul_tn_add(host_, dy, hidden_, a.o, q_width, n, hidden_, q_width,
                                  go.data + heads_.begin * hd, go.ld);
    if (!gq && !gk && !gv && io.grad_x == nullptr) return;

    // d loss / d o, then the attention core per (sequence, query head), each head adding into
    // its own dK and dV rows; the heads of a KV head are summed afterwards in a fixed order.
    ensure_size(d_o_, n * q_width);
    ensure_size(dq_, n * q_width);
    ensure_size(dk_heads_, n * q_width);
    ensure_size(dv_heads_, n * q_width);
    ensure_size(dk_, n * kv_width);
    ensure_size(dv_, n * kv_width);
    tessera::cpu::matmul_nn(host_, dy, n, hidden_, wo_, d_o_.data(), q_width, false);
    std::fill(dk_heads_.begin(), dk_heads_.begin() + n * q_width, 0.0f);
    std::fill(dv_heads_.begin(), dv_heads_.begin() + n * q_width, 0.0f);
    const KvSource src{reinterpret_cast<const char*>(a.k), reinterpret_cast<const char*>(a.v),
                       TS_F32, 0, nullptr};
    tessera::sdk::parallel_for(
        host_, static_cast<int64_t>(batch.n_seqs) * hl, 1, [&](int64_t i0, int64_t i1) {
          for (int64_t item = i0; item < i1; ++item) {
            const auto s = static_cast<int32_t>(item / hl);
            const int64_t head = item % hl, t0 = batch.offsets[s];
            if (batch.offsets[s + 1] == t0) continue;
            const tessera::cpu::AttentionHead h = head_view(batch, src, s, head);
            const int64_t off = t0 * q_width + head * hd;
            tessera::cpu::attention_backward_head(
                h, a.q + off, a.o + off, d_o_.data() + off, q_width, a.stats + head * n + t0,
                dq_.data() + off, dk_heads_.data() + off, dv_heads_.data() + off, q_width);
          }
        });
    const int64_t half = hd / 2;
    tessera::sdk::parallel_for(host_, n, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        for (int64_t j = 0; j < kvl; ++j) {
          float* dk = dk_.data() + t * kv_width + j * hd;
          float* dv = dv_.data() + t * kv_width + j * hd;
          std::fill(dk, dk + hd, 0.0f);
          std::fill(dv, dv + hd, 0.0f);
          for (int64_t head = 0; head < hl; ++head) {
            if ((heads_.begin + head) / group_ - kv_.begin != j) continue;
            tessera::cpu::axpy(1.0f, dk_heads_.data() + t * q_width + head * hd, dk, hd);
            tessera::cpu::axpy(1.0f, dv_heads_.data() + t * q_width + head * hd, dv, hd);
          }
        }
        const float* cos_t = rope_cs_.data() + t * hd;
        tessera::cpu::rope_apply(dq_.data() + t * q_width, hl, hd, cos_t, cos_t + half, true);
        tessera::cpu::rope_apply(dk_.data() + t * kv_width, kvl, hd, cos_t, cos_t + half, true);
      }
    });

    // Weight gradients. A KV head shared by several ranks got only this rank's query heads'
    // part: the ranks sum their parts so that each adds the whole gradient of its rows.
    const float *dk_all = dk_.data(), *dv_all = dv_.data();
    int64_t ld_kv = kv_width;
    if (world_ > kv_heads_ && (gk || gv)) {
      ld_kv = 2 * kv_heads_ * hd;
      ensure_size(dkv_shared_, n * ld_kv);
      std::fill(dkv_shared_.begin(), dkv_shared_.begin() + n * ld_kv, 0.0f);
      for (int64_t t = 0; t < n; ++t) {
        std::memcpy(dkv_shared_.data() + t * ld_kv + kv_.begin * hd, dk_.data() + t * kv_width,
                    static_cast<size_t>(kv_width) * sizeof(float));
        std::memcpy(dkv_shared_.data() + t * ld_kv + (kv_heads_ + kv_.begin) * hd,
                    dv_.data() + t * kv_width, static_cast<size_t>(kv_width) * sizeof(float));
      }
      ts_tensor shared = f32_matrix(dkv_shared_.data(), n, ld_kv);
      tessera::cpu::all_reduce_partial(comm_, label_, shared);
      dk_all = dkv_shared_.data() + kv_.begin * hd;
      dv_all = dkv_shared_.data() + (kv_heads_ + kv_.begin) * hd;
    }
    if (gq)
      tessera::cpu::matmul_tn_add(host_, dq_.data(), q_width, x, hidden_, n, q_width, hidden_,
                                  gq.data + heads_.begin * hd * gq.ld, gq.ld);
    if (gk)
      tessera::cpu::matmul_tn_add(host_, dk_all, ld_kv, x, hidden_, n, kv_width, hidden_,
                                  gk.data + kv_.begin * hd * gk.ld, gk.ld);
    if (gv)
      tessera::cpu::matmul_tn_add(host_, dv_all, ld_kv, x, hidden_, n, kv_width, hidden_,
                                  gv.data + kv_.begin * hd * gv.ld, gv.ld);

    // d loss / d x from this rank's heads (its own part of a shared KV head), summed over ranks.
    if (io.grad_x == nullptr) return;
    auto* dx = static_cast<float*>(io.grad_x->data);
    tessera::cpu::matmul_nn(host_, dq_.data(), n, q_width, wq_, dx, hidden_, false);
    tessera::cpu::matmul_nn(host_, dk_.data(), n, kv_width, wk_, dx, hidden_, true);
    tessera::cpu::matmul_nn(host_, dv_.data(), n, kv_width, wv_, dx, hidden_, true);
    tessera::cpu::all_reduce_partial(comm_, label_, *io.grad_x);
  }

  void compact_kv(ts_kv_layer& kv, int32_t slot, int32_t first_row, const int32_t* keep,
                  int32_t n_keep) {
    const Cache cache = check_cache(&kv);
    if (slot < 0 || slot >= cache.slots)
      throw std::invalid_argument(label_ + ": compact_kv slot " + num(slot) +
                                  " is out of range (the cache has " + num(cache.slots) +
                                  " slots)");
    if (n_keep < 0 || first_row < 0 || (n_keep > 0 && keep == nullptr))
      throw std::invalid_argument(label_ + ": compact_kv got first_row " + num(first_row) +
                                  " and " + num(n_keep) + " rows to keep");
    for (int32_t i = 0; i < n_keep; ++i) {
      if (keep[i] < 0 || (i > 0 && keep[i] <= keep[i - 1]))
        throw std::invalid_argument(label_ +
                                    ": compact_kv keep list must be ascending and >= 0 "
                                    "(keep[" +
                                    num(i) + "] = " + num(keep[i]) + ")");
      if (static_cast<int64_t>(first_row) + keep[i] >= cache.capacity)
        throw std::invalid_argument(label_ + ": compact_kv row " + num(first_row + keep[i]) +
                                    " of slot " + num(slot) + " is beyond the capacity " +
                                    num(cache.capacity));
    }
    tessera::sdk::move_kv_rows(kv.k, slot, first_row, keep, n_keep);
    tessera::sdk::move_kv_rows(kv.v, slot, first_row, keep, n_keep);
  }

 private:
  // n floats from src into the cache tensor at element `offset`, in the cache's dtype.
  void store_rows(const float* src, int64_t n, char* base, int64_t offset) const {
    if (kv_dtype_ == TS_F32) {
      std::memcpy(base + offset * sizeof(float), src, static_cast<size_t>(n) * sizeof(float));
      return;
    }
    auto* dst = reinterpret_cast<uint16_t*>(base) + offset;
    if (kv_dtype_ == TS_BF16)
      for (int64_t i = 0; i < n; ++i) dst[i] = tessera::f32_to_bf16(src[i]);
    else
      for (int64_t i = 0; i < n; ++i) dst[i] = tessera::f32_to_f16(src[i]);
  }

  struct Cache {
    char* k = nullptr;  // elements of kv_dtype_
    char* v = nullptr;
    int64_t slots = 0;
    int64_t capacity = 0;
    int64_t kv_heads = 0;
    int64_t head_dim = 0;
  };

  Cache check_cache(const ts_kv_layer* kv) const {
    if (kv == nullptr) throw std::invalid_argument(label_ + ": no KV cache was given");
    if (kv->lengths == nullptr)
      throw std::invalid_argument(label_ + ": the KV cache has no lengths table");
    const ts_tensor* tensors[2] = {&kv->k, &kv->v};
    const char* names[2] = {"k cache", "v cache"};
    for (int i = 0; i < 2; ++i) {
      const ts_tensor& t = *tensors[i];
      if (t.dtype != kv_dtype_)
        throw tessera::sdk::Unsupported(label_ + ": " + names[i] + " has dtype " +
                                        tessera::dtype_name(t.dtype) + ", expected " +
                                        tessera::dtype_name(kv_dtype_));
      if (t.device != TS_DEVICE_CPU)
        throw tessera::sdk::Unsupported(label_ + ": " + names[i] + " is on device " +
                                        tessera::device_name(t.device) + ", expected cpu");
      if (t.data == nullptr || t.ndim != 4 || t.shape[2] != kv_.size() || t.shape[3] != head_dim_ ||
          !tessera::sdk::is_contiguous(t))
        throw std::invalid_argument(label_ + ": " + names[i] + " has shape " +
                                    tessera::sdk::shape_string(t) +
                                    ", expected a contiguous [slots, capacity, " + num(kv_.size()) +
                                    ", " + num(head_dim_) + "]");
    }
    if (kv->k.shape[0] != kv->v.shape[0] || kv->k.shape[1] != kv->v.shape[1])
      throw std::invalid_argument(label_ + ": k cache " + tessera::sdk::shape_string(kv->k) +
                                  " and v cache " + tessera::sdk::shape_string(kv->v) +
                                  " differ in shape");
    return Cache{static_cast<char*>(kv->k.data),
                 static_cast<char*>(kv->v.data),
                 kv->k.shape[0],
                 kv->k.shape[1],
                 kv_.size(),
                 head_dim_};
  }

  void check_sequences(const ts_batch& batch, const Cache& cache, const int32_t* lengths) const {
    if (batch.n_seqs > 0 && (batch.slots == nullptr || batch.positions == nullptr))
      throw std::invalid_argument(label_ + ": batch has no slots or no positions");
    if (batch.n_seqs > 0 && cache.slots > 0 && batch.n_seqs > cache.slots)
      throw std::invalid_argument(label_ + ": batch has " + num(batch.n_seqs) +
                                  " sequences but the cache has " + num(cache.slots) + " slots");
    for (int32_t s = 0; s < batch.n_seqs; ++s) {
      const int32_t slot = batch.slots[s];
      if (slot < 0 || slot >= cache.slots)
        throw std::invalid_argument(label_ + ": sequence " + num(s) + " uses slot " + num(slot) +
                                    ", out of range (the cache has " + num(cache.slots) +
                                    " slots)");
      for (int32_t o = 0; o < s; ++o)
        if (batch.slots[o] == slot)
          throw std::invalid_argument(label_ + ": sequences " + num(o) + " and " + num(s) +
                                      " both use slot " + num(slot));
      const int64_t len = lengths[slot];
      const int64_t n_new = batch.offsets[s + 1] - batch.offsets[s];
      if (len < 0 || len + n_new > cache.capacity)
        throw std::invalid_argument(
            label_ + ": slot " + num(slot) + " holds " + num(len) + " rows, and " + num(n_new) +
            " new tokens would exceed the cache capacity of " + num(cache.capacity) + " rows");
      for (int64_t t = batch.offsets[s]; t < batch.offsets[s + 1]; ++t)
        if (batch.positions[t] < 0)
          throw std::invalid_argument(label_ + ": token " + num(t) + " has negative position " +
                                      num(batch.positions[t]));
    }
  }

  // Positions of a batch run without a cache (the cached path checks them with the slots).
  void check_positions(const ts_batch& batch) const {
    if (batch.n_seqs > 0 && batch.positions == nullptr)
      throw std::invalid_argument(label_ + ": batch has no positions");
    for (int64_t t = 0; t < batch.n_tokens; ++t)
      if (batch.positions[t] < 0)
        throw std::invalid_argument(label_ + ": token " + num(t) + " has negative position " +
                                    num(batch.positions[t]));
  }

  // Where the keys and values a forward reads live: the KV cache (rows of slot s from
  // slot * capacity, lengths[slot] of them cached), or, in a cache-free run, the batch's own
  // rows (sequence s from its first token's row, nothing cached).
  struct KvSource {
    const char* k = nullptr;  // elements of dtype
    const char* v = nullptr;
    ts_dtype dtype = TS_F32;
    int64_t capacity = 0;
    const int32_t* lengths = nullptr;  // NULL: cache-free

    int64_t first_row(const ts_batch& b, int32_t s) const {
      return lengths != nullptr ? b.slots[s] * capacity : b.offsets[s];
    }
    int64_t cached(const ts_batch& b, int32_t s) const {
      return lengths != nullptr ? lengths[b.slots[s]] : 0;
    }
  };

  // The rows query head `head` (local index) of sequence s attends to.
  tessera::cpu::AttentionHead head_view(const ts_batch& batch, const KvSource& src, int32_t s,
                                        int64_t head) const {
    const int64_t hd = head_dim_, kvl = kv_.size();
    const int64_t kv_local = (heads_.begin + head) / group_ - kv_.begin;
    tessera::cpu::AttentionHead h;
    const auto head_offset = static_cast<size_t>((src.first_row(batch, s) * kvl + kv_local) * hd) *
                             tessera::dtype_size(src.dtype);
    h.k = src.k + head_offset;
    h.v = src.v + head_offset;
    h.kv_dtype = src.dtype;
    h.row_stride = kvl * hd;
    h.head_dim = hd;
    h.cached = src.cached(batch, s);
    h.n_new = batch.offsets[s + 1] - batch.offsets[s];
    h.mask = batch.tree_masks != nullptr ? batch.tree_masks[s] : nullptr;
    h.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    return h;
  }

  // Tiles of kQueryTile new tokens the longest sequence of the batch needs (at least one).
  static int64_t query_tiles(const ts_batch& batch) {
    int64_t tiles = 1;
    for (int32_t s = 0; s < batch.n_seqs; ++s)
      tiles = std::max<int64_t>(
          tiles, (batch.offsets[s + 1] - batch.offsets[s] + kQueryTile - 1) / kQueryTile);
    return tiles;
  }

  // Query head `head` (local index) of sequence s, for its new tokens
  // [first, first + kQueryTile) (none when the sequence has fewer).
  void attend(const ts_batch& batch, const KvSource& src, int32_t s, int64_t head, int64_t first) {
    const int64_t hd = head_dim_, hl = heads_.size();
    const int64_t t0 = batch.offsets[s], n_new = batch.offsets[s + 1] - t0;
    if (first >= n_new) return;
    const tessera::cpu::AttentionHead h = head_view(batch, src, s, head);
    const int64_t offset = (t0 + first) * hl * hd + head * hd;
    tessera::cpu::attention_queries(h, q_.data() + offset, hl * hd, first,
                                    std::min(kQueryTile, n_new - first), attn_.data() + offset,
                                    hl * hd);
  }

  // TS_BATCH_ROW_INVARIANT: one work item per (sequence, query head, new token), each
  // reduced in its logical row order (attention_row_invariant).
  void attend_row_invariant(const ts_batch& batch, const KvSource& src) {
    const int64_t hd = head_dim_, hl = heads_.size();
    const int64_t n_tokens = batch.offsets[batch.n_seqs];
    tessera::sdk::parallel_for(host_, n_tokens * hl, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t item = i0; item < i1; ++item) {
        const int64_t token = item / hl, head = item % hl;
        int32_t s = 0;
        while (batch.offsets[s + 1] <= token) ++s;
        const tessera::cpu::AttentionHead h = head_view(batch, src, s, head);
        const int64_t offset = token * hl * hd + head * hd;
        tessera::cpu::attention_row_invariant(h, q_.data() + offset, token - batch.offsets[s],
                                              attn_.data() + offset);
      }
    });
  }

  // Split-KV attention for sequences of at most kSplitMaxNew new tokens: work
  // items (sequence, local KV head, chunk of rows), each running every query
  // head of that KV head over its chunk (so the group reads each K/V row from
  // memory once), then one merge per (sequence, head, token) into attn_.
  void attend_split(const ts_batch& batch, const KvSource& src) {
    const int64_t hd = head_dim_, hl = heads_.size(), kvl = kv_.size();
    const int64_t threads = host_ != nullptr ? std::max<int32_t>(1, host_->n_threads) : 1;
    split_items_.clear();
    split_seqs_.clear();
    int64_t partials = 0;
    const int64_t per_seq_kv = std::max<int64_t>(1, batch.n_seqs * kvl);
    const int64_t wanted = (kItemsPerThread * threads + per_seq_kv - 1) / per_seq_kv;
    for (int32_t s = 0; s < batch.n_seqs; ++s) {
      const int64_t n_new = batch.offsets[s + 1] - batch.offsets[s];
      const int64_t rows = src.cached(batch, s) + n_new;
      const int64_t chunks =
          std::clamp<int64_t>(wanted, 1, (rows + kMinChunkRows - 1) / kMinChunkRows);
      const int64_t size = (rows + chunks - 1) / chunks;
      split_seqs_.push_back({partials, chunks});
      for (int64_t j = 0; j < kvl; ++j)
        for (int64_t c = 0; c < chunks; ++c)
          split_items_.push_back({s, j, c, c * size, std::min(rows, (c + 1) * size)});
      partials += hl * n_new * chunks;
    }
    if (parts_.size() < static_cast<size_t>(partials)) parts_.resize(static_cast<size_t>(partials));
    ensure_size(part_out_, partials * hd);

    // Partial (s, head h, token t, chunk c) at split_seqs_[s].base + (h * n_new + t) * chunks + c.
    auto partial_index = [&](int32_t s, int64_t h, int64_t t, int64_t c) {
      const SplitSeq& q = split_seqs_[static_cast<size_t>(s)];
      const int64_t n_new = batch.offsets[s + 1] - batch.offsets[s];
      return q.base + (h * n_new + t) * q.chunks + c;
    };
    const auto n_items = static_cast<int64_t>(split_items_.size());
    tessera::sdk::parallel_for(host_, n_items, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t it = i0; it < i1; ++it) {
        const SplitItem& item = split_items_[static_cast<size_t>(it)];
        const int64_t t0 = batch.offsets[item.seq];
        const int64_t n_new = batch.offsets[item.seq + 1] - t0;
        // The local query heads of this KV head: they see the same rows.
        int64_t group[kMaxLocalHeads];
        int g = 0;
        for (int64_t h = 0; h < hl && g < kMaxLocalHeads; ++h)
          if ((heads_.begin + h) / group_ - kv_.begin == item.kv) group[g++] = h;
        if (g == 0) continue;
        const tessera::cpu::AttentionHead view = head_view(batch, src, item.seq, group[0]);
        for (int64_t t = 0; t < n_new; ++t) {
          const float* queries[kMaxLocalHeads];
          float* outs[kMaxLocalHeads];
          tessera::cpu::AttentionPartial parts[kMaxLocalHeads];
          for (int j = 0; j < g; ++j) {
            queries[j] = q_.data() + (t0 + t) * hl * hd + group[j] * hd;
            outs[j] = part_out_.data() + partial_index(item.seq, group[j], t, item.chunk) * hd;
          }
          tessera::cpu::attention_chunk_group(view, queries, g, t, item.r0, item.r1, outs, parts);
          for (int j = 0; j < g; ++j)
            parts_[static_cast<size_t>(partial_index(item.seq, group[j], t, item.chunk))] =
                parts[j];
        }
      }
    });
    for (int32_t s = 0; s < batch.n_seqs; ++s) {
      const int64_t t0 = batch.offsets[s], n_new = batch.offsets[s + 1] - t0;
      const int64_t chunks = split_seqs_[static_cast<size_t>(s)].chunks;
      for (int64_t h = 0; h < hl; ++h)
        for (int64_t t = 0; t < n_new; ++t) {
          const int64_t p = partial_index(s, h, t, 0);
          tessera::cpu::combine_partials(parts_.data() + p, part_out_.data() + p * hd, hd, chunks,
                                         hd, attn_.data() + (t0 + t) * hl * hd + h * hd);
        }
    }
  }

  // q, k and v projections in one parallel region, then RoPE on q and k at each token's
  // position (threaded only for long prefills); rope_cs_ keeps each token's cos and sin.
  void project_qkv(const ts_batch& batch, const float* x, int64_t n, float* q, float* k, float* v,
                   tessera::cpu::RowReduction rows = tessera::cpu::RowReduction::fastest) {
    const int64_t q_width = heads_.size() * head_dim_, kv_width = kv_.size() * head_dim_;
    const tessera::cpu::MatmulTarget qkv[3] = {
        {wq_, q, q_width}, {wk_, k, kv_width}, {wv_, v, kv_width}};
    tessera::cpu::matmul_nt_many(host_, x, n, hidden_, qkv, 3, rows);
    rope_table(batch, n);
    const int64_t half = head_dim_ / 2;
    tessera::sdk::parallel_for(host_, n, 64, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const float* cos_t = rope_cs_.data() + t * head_dim_;
        tessera::cpu::rope_apply(q + t * q_width, heads_.size(), head_dim_, cos_t, cos_t + half);
        tessera::cpu::rope_apply(k + t * kv_width, kv_.size(), head_dim_, cos_t, cos_t + half);
      }
    });
  }

  // cos and sin of every token's angles: rope_cs_[t * head_dim ...] (cos, then sin).
  void rope_table(const ts_batch& batch, int64_t n) {
    const int64_t hd = head_dim_, half = hd / 2;
    ensure_size(rope_cs_, n * hd);
    tessera::sdk::parallel_for(host_, n, 64, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        tessera::cpu::rope_angles(batch.positions[t], inv_freq_.data(), half,
                                  rope_cs_.data() + t * hd, rope_cs_.data() + t * hd + half);
    });
  }

  // Where forward_train keeps each activation: byte offsets into the workspace, npos for one
  // kept in the block's scratch instead (recomputed by backward).
  struct TrainLayout {
    static constexpr uint64_t npos = ~uint64_t{0};
    uint64_t q = npos, k = npos, v = npos, o = npos, stats = npos;
    uint64_t bytes = 0;
  };

  // none: q, k, v (after RoPE), the attention output o and each row's softmax max and sum;
  // core: q, k and v; all: nothing. Segments start on 64-byte lines.
  TrainLayout train_layout(int64_t n, ts_recompute recompute) const {
    const auto tokens = static_cast<uint64_t>(std::max<int64_t>(n, 0));
    const auto q_bytes = tokens * static_cast<uint64_t>(heads_.size() * head_dim_) * sizeof(float);
    const auto kv_bytes = tokens * static_cast<uint64_t>(kv_.size() * head_dim_) * sizeof(float);
    TrainLayout l;
    auto take = [&](uint64_t bytes) {
      const uint64_t at = l.bytes;
      l.bytes += (bytes + 63) / 64 * 64;
      return at;
    };
    if (recompute == TS_RECOMPUTE_ALL) return l;
    l.q = take(q_bytes);
    l.k = take(kv_bytes);
    l.v = take(kv_bytes);
    if (recompute == TS_RECOMPUTE_CORE) return l;
    l.o = take(q_bytes);
    l.stats = take(tokens * static_cast<uint64_t>(heads_.size()) *
                   sizeof(tessera::cpu::AttentionPartial));
    return l;
  }

  // The activations of a training run: q, k, v [n, width], o [n, q width] and the softmax
  // statistics [local head][token].
  struct Activations {
    float *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
    tessera::cpu::AttentionPartial* stats = nullptr;
  };

  Activations activations(const TrainLayout& l, int64_t n, void* workspace) {
    const int64_t q_width = heads_.size() * head_dim_, kv_width = kv_.size() * head_dim_;
    auto* base = static_cast<char*>(workspace);
    auto place = [&](uint64_t at, std::vector<float>& scratch, int64_t floats) {
      if (at != TrainLayout::npos) return reinterpret_cast<float*>(base + at);
      ensure_size(scratch, floats);
      return scratch.data();
    };
    Activations a;
    a.q = place(l.q, q_, n * q_width);
    a.k = place(l.k, k_, n * kv_width);
    a.v = place(l.v, v_, n * kv_width);
    a.o = place(l.o, attn_, n * q_width);
    if (l.stats != TrainLayout::npos) {
      a.stats = reinterpret_cast<tessera::cpu::AttentionPartial*>(base + l.stats);
    } else {
      if (stats_.size() < static_cast<size_t>(n * heads_.size()))
        stats_.resize(static_cast<size_t>(n * heads_.size()));
      a.stats = stats_.data();
    }
    return a;
  }

  // The training forward's attention core: a.o and a.stats from a.q, a.k and a.v, one work
  // item per (sequence, query head, tile of queries), each query on its own (attention_chunk).
  void attend_train(const ts_batch& batch, const Activations& a) {
    const int64_t hl = heads_.size(), hd = head_dim_, q_width = hl * hd, n = batch.n_tokens;
    const int64_t tiles = query_tiles(batch);
    const KvSource src{reinterpret_cast<const char*>(a.k), reinterpret_cast<const char*>(a.v),
                       TS_F32, 0, nullptr};
    const int64_t items = static_cast<int64_t>(batch.n_seqs) * hl * tiles;
    tessera::sdk::parallel_for(host_, items, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t item = i0; item < i1; ++item) {
        const auto s = static_cast<int32_t>(item / (hl * tiles));
        const int64_t head = item / tiles % hl, first = item % tiles * kQueryTile;
        const int64_t t0 = batch.offsets[s], n_new = batch.offsets[s + 1] - t0;
        if (first >= n_new) continue;
        const tessera::cpu::AttentionHead h = head_view(batch, src, s, head);
        const int64_t offset = (t0 + first) * q_width + head * hd;
        tessera::cpu::attention_forward_stats(h, a.q + offset, q_width, first,
                                              std::min(kQueryTile, n_new - first), a.o + offset,
                                              q_width, a.stats + head * n + t0 + first);
      }
    });
  }

  static ts_tensor f32_matrix(float* data, int64_t rows, int64_t cols) {
    ts_tensor t{};
    t.data = data;
    t.dtype = TS_F32;
    t.device = TS_DEVICE_CPU;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.stride[0] = cols;
    t.stride[1] = 1;
    return t;
  }

  static constexpr int64_t kQueryTile = 64;      // queries per work item (prefill)
  static constexpr int64_t kSplitMaxNew = 3;     // below attention.hpp's tile threshold
  static constexpr int64_t kItemsPerThread = 4;  // split-KV items per thread, for balance
  static constexpr int64_t kMinChunkRows = 64;   // rows per split-KV chunk at least
  static constexpr int kMaxLocalHeads = static_cast<int>(kMaxGroup);  // query heads per KV head

  std::string label_;
  const ts_host* host_ = nullptr;
  const ts_comm* comm_ = nullptr;
  int64_t hidden_ = 0, n_heads_ = 0, kv_heads_ = 0, head_dim_ = 0, group_ = 1;
  double rope_theta_ = 10000.0;
  tessera::sdk::RopeScalingParams rope_scaling_;
  int32_t rank_ = 0, world_ = 1;
  ts_dtype kv_dtype_ = TS_F32;
  ShardRange heads_, kv_;
  MatrixView wq_, wk_, wv_, wo_;
  std::vector<double> inv_freq_;
  std::vector<float> q_, k_, v_, attn_, rope_cs_;
  // Training scratch: softmax statistics not kept in the workspace, and the gradients.
  std::vector<tessera::cpu::AttentionPartial> stats_;
  std::vector<float> d_o_, dq_, dk_heads_, dv_heads_, dk_, dv_, dkv_shared_;
  // Split-KV scratch, kept between calls.
  struct SplitItem {
    int32_t seq;
    int64_t kv, chunk, r0, r1;
  };
  struct SplitSeq {
    int64_t base, chunks;
  };
  std::vector<SplitItem> split_items_;
  std::vector<SplitSeq> split_seqs_;
  std::vector<tessera::cpu::AttentionPartial> parts_;
  std::vector<float> part_out_;
};

// --------------------------------------------------------------- linear

// y = x W^T with W [hidden, hidden] (Puzzle's linear replacement of attention).
struct LinearAttention : tessera::cpu::LinearBlock {
  explicit LinearAttention(const ts_block_config& c)
      : LinearBlock(c, "attention linear", "linear_attn.weight") {}
  static tessera::sdk::BlockLayout describe(const ts_block_config& c) {
    return layout(c, "linear_attn.weight");
  }
};

// ----------------------------------------------------------------- noop

struct NoopAttention : tessera::cpu::NoopBlock {
  explicit NoopAttention(const ts_block_config& c) : NoopBlock(c, "attention noop") {}
};

const ts_block_vtable kGqaVtable = tessera::sdk::block_vtable<GqaAttention>();
const ts_block_vtable kLinearVtable = tessera::sdk::block_vtable<LinearAttention>();
const ts_block_vtable kNoopVtable = tessera::sdk::block_vtable<NoopAttention>();

const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_ATTENTION, "gqa", TS_DEVICE_CPU, &kGqaVtable),
    tessera::sdk::provider(TS_KIND_ATTENTION, "linear", TS_DEVICE_CPU, &kLinearVtable),
    tessera::sdk::provider(TS_KIND_ATTENTION, "noop", TS_DEVICE_CPU, &kNoopVtable),
};

}  // namespace

TESSERA_PLUGIN("tessera-attention-cpu", "0.1.0", kProviders)
