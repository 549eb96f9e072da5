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
#include <tessera/cpu/block_support.hpp>
#include <tessera/cpu/dense_blocks.hpp>
#include <tessera/cpu/matmul.hpp>
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
    i.flags = 0;
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
    const Cache cache = check_cache(io.kv);
    check_sequences(batch, cache, io.kv->lengths);
    if (n == 0) return;

    const int64_t hl = heads_.size(), kvl = kv_.size(), hd = head_dim_;
    const int64_t q_width = hl * hd, kv_width = kvl * hd;
    ensure_size(q_, n * q_width);
    ensure_size(k_, n * kv_width);
    ensure_size(v_, n * kv_width);
    ensure_size(attn_, n * q_width);
    ensure_size(rope_cs_, n * hd);

    // q, k and v projections in one parallel region.
    const float* x = static_cast<const float*>(io.x->data);
    const tessera::cpu::MatmulTarget qkv[3] = {
        {wq_, q_.data(), q_width}, {wk_, k_.data(), kv_width}, {wv_, v_.data(), kv_width}};
    tessera::cpu::matmul_nt_many(host_, x, n, hidden_, qkv, 3);

    // RoPE on q and k (threaded only for long prefills), then the new K/V rows
    // into the cache.
    const int64_t half = hd / 2;
    tessera::sdk::parallel_for(host_, n, 64, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* cos_t = rope_cs_.data() + t * hd;
        float* sin_t = cos_t + half;
        tessera::cpu::rope_angles(batch.positions[t], inv_freq_.data(), half, cos_t, sin_t);
        tessera::cpu::rope_apply(q_.data() + t * q_width, hl, hd, cos_t, sin_t);
        tessera::cpu::rope_apply(k_.data() + t * kv_width, kvl, hd, cos_t, sin_t);
      }
    });
    for (int32_t s = 0; s < batch.n_seqs; ++s) {
      const int64_t slot = batch.slots[s], len = io.kv->lengths[slot];
      const int64_t first = batch.offsets[s], count = batch.offsets[s + 1] - first;
      const int64_t row = (slot * cache.capacity + len) * kv_width;
      if (count == 0) continue;
      store_rows(k_.data() + first * kv_width, count * kv_width, cache.k, row);
      store_rows(v_.data() + first * kv_width, count * kv_width, cache.v, row);
    }

    // Decode (every sequence brings a few tokens): split-KV work items. Otherwise
    // one work item per (sequence, query head, tile of queries), so that a long
    // prefill spreads evenly over the threads.
    bool few_new = true;
    for (int32_t s = 0; s < batch.n_seqs; ++s)
      few_new = few_new && batch.offsets[s + 1] - batch.offsets[s] <= kSplitMaxNew;
    if (few_new) {
      attend_split(batch, cache, io.kv->lengths);
    } else {
      int64_t tiles = 1;
      for (int32_t s = 0; s < batch.n_seqs; ++s)
        tiles = std::max<int64_t>(
            tiles, (batch.offsets[s + 1] - batch.offsets[s] + kQueryTile - 1) / kQueryTile);
      const int64_t items = static_cast<int64_t>(batch.n_seqs) * hl * tiles;
      tessera::sdk::parallel_for(host_, items, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t item = i0; item < i1; ++item)
          attend(batch, cache, io.kv->lengths, static_cast<int32_t>(item / (hl * tiles)),
                 item / tiles % hl, item % tiles * kQueryTile);
      });
    }

    tessera::cpu::matmul_nt(host_, attn_.data(), n, q_width, wo_, static_cast<float*>(io.y->data),
                            hidden_);
    tessera::cpu::all_reduce_partial(comm_, label_, *io.y);
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

  // The cache rows query head `head` (local index) of sequence s attends to.
  tessera::cpu::AttentionHead head_view(const ts_batch& batch, const Cache& cache,
                                        const int32_t* lengths, int32_t s, int64_t head) const {
    const int64_t hd = head_dim_, kvl = kv_.size();
    const int64_t kv_local = (heads_.begin + head) / group_ - kv_.begin;
    const int64_t slot = batch.slots[s];
    tessera::cpu::AttentionHead h;
    const auto head_offset = static_cast<size_t>((slot * cache.capacity * kvl + kv_local) * hd) *
                             tessera::dtype_size(kv_dtype_);
    h.k = cache.k + head_offset;
    h.v = cache.v + head_offset;
    h.kv_dtype = kv_dtype_;
    h.row_stride = kvl * hd;
    h.head_dim = hd;
    h.cached = lengths[slot];
    h.n_new = batch.offsets[s + 1] - batch.offsets[s];
    h.mask = batch.tree_masks != nullptr ? batch.tree_masks[s] : nullptr;
    h.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    return h;
  }

  // Query head `head` (local index) of sequence s, for its new tokens
  // [first, first + kQueryTile) (none when the sequence has fewer).
  void attend(const ts_batch& batch, const Cache& cache, const int32_t* lengths, int32_t s,
              int64_t head, int64_t first) {
    const int64_t hd = head_dim_, hl = heads_.size();
    const int64_t t0 = batch.offsets[s], n_new = batch.offsets[s + 1] - t0;
    if (first >= n_new) return;
    const tessera::cpu::AttentionHead h = head_view(batch, cache, lengths, s, head);
    const int64_t offset = (t0 + first) * hl * hd + head * hd;
    tessera::cpu::attention_queries(h, q_.data() + offset, hl * hd, first,
                                    std::min(kQueryTile, n_new - first), attn_.data() + offset,
                                    hl * hd);
  }

  // Split-KV attention for sequences of at most kSplitMaxNew new tokens: work
  // items (sequence, local KV head, chunk of rows), each running every query
  // head of that KV head over its chunk (so the group reads each K/V row from
  // memory once), then one merge per (sequence, head, token) into attn_.
  void attend_split(const ts_batch& batch, const Cache& cache, const int32_t* lengths) {
    const int64_t hd = head_dim_, hl = heads_.size(), kvl = kv_.size();
    const int64_t threads = host_ != nullptr ? std::max<int32_t>(1, host_->n_threads) : 1;
    split_items_.clear();
    split_seqs_.clear();
    int64_t partials = 0;
    const int64_t per_seq_kv = std::max<int64_t>(1, batch.n_seqs * kvl);
    const int64_t wanted = (kItemsPerThread * threads + per_seq_kv - 1) / per_seq_kv;
    for (int32_t s = 0; s < batch.n_seqs; ++s) {
      const int64_t n_new = batch.offsets[s + 1] - batch.offsets[s];
      const int64_t rows = lengths[batch.slots[s]] + n_new;
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
        const tessera::cpu::AttentionHead view =
            head_view(batch, cache, lengths, item.seq, group[0]);
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
