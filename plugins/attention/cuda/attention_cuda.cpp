// CUDA attention blocks: grouped-query attention with RoPE and a bf16 KV cache ("gqa"), a
// plain linear map ("linear") and the identity ("noop"). bf16 activations on the device,
// bf16 weights, f32 accumulation.
//
// gqa forward for a batch of sequences, all on the host's stream:
//   q, k, v projections: three cuBLASLt GEMMs over all tokens (f32 out)
//   -> RoPE on q and k (rotate-half, angles in double as the CPU plugin), new K/V rows
//      into the cache                                                    (rope_kv.cu)
//   -> attention per sequence, by size:
//        few new tokens (decode, small trees): split-KV kernel, each KV head read once
//                                              for its whole query group (decode_splitkv.cu)
//        many (prefill): flash-style tensor-core kernel                  (flash_prefill.cu)
//        head sizes neither covers, or attention_kernels = "reference":
//                                              the naive kernel           (reference_attention.cu)
//   -> o projection: one cuBLASLt GEMM into y.
// Sequence tables (slots, lengths, masks, tiles) go up in one copy per call from pinned
// memory.
#include "attention_kernels.hpp"

#include <tessera/abi.h>
#include <tessera/cuda/block_support.hpp>
#include <tessera/cuda/cublaslt.hpp>
#include <tessera/cuda/dense_blocks.hpp>
#include <tessera/cuda/runtime.hpp>
#include <tessera/plugin.hpp>
#include <tessera/rope_scaling.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace cu = tessera::cuda;
namespace attn = tessera::cuda::attention;

std::string num(int64_t v) {
  return std::to_string(v);
}

// Sequences with at most this many packed query rows (new tokens x query heads per KV
// head) take the split-KV kernel; larger ones the prefill kernel.
constexpr int64_t kDecodeMaxPackedRows = 64;
// The naive kernel keeps every score: it runs in chunks of tokens within this budget.
constexpr size_t kReferenceScoreBytes = size_t{256} << 20;

// Appends arrays to one host table, each at a 16-byte aligned offset, for a single upload.
class TableBuilder {
 public:
  void clear() { bytes_.clear(); }
  template <class T>
  size_t append(const T* data, size_t count) {
    const size_t offset = (bytes_.size() + 15) / 16 * 16;
    bytes_.resize(offset + count * sizeof(T));
    if (count > 0) std::memcpy(bytes_.data() + offset, data, count * sizeof(T));
    return offset;
  }
  const unsigned char* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }

 private:
  std::vector<unsigned char> bytes_;
};

// The parameters of a gqa block, read and checked once for describe, supports and create.
struct GqaShape {
  int64_t hidden = 0, n_heads = 0, kv_heads = 0, head_dim = 0, decode_splits = 0;
  double theta = 10000.0;
  tessera::sdk::RopeScalingParams scaling;
  std::string kernels;
};

GqaShape gqa_shape(const ts_block_config& config, const std::string& label) {
  const tessera::sdk::Params params(config.params);
  GqaShape s;
  s.hidden = config.hidden;
  try {
    s.n_heads = params.get_int("num_heads");
    s.head_dim = params.get_int("head_dim", s.n_heads > 0 ? s.hidden / s.n_heads : 0);
    s.kv_heads = params.get_int("kv_heads", s.n_heads);
    s.theta = params.get_float("rope_theta", 10000.0);
    s.scaling = tessera::sdk::rope_scaling_from_params(params);
    s.decode_splits = params.get_int("decode_splits", 0);
    s.kernels = params.get_string("attention_kernels", "fast");
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
  if (!(s.theta > 0.0)) throw std::invalid_argument(label + ": rope_theta must be positive");
  if (s.decode_splits < 0)
    throw std::invalid_argument(label + ": decode_splits must be >= 0 (0: automatic)");
  if (s.kernels != "fast" && s.kernels != "reference")
    throw std::invalid_argument(label + ": attention_kernels is '" + s.kernels +
                                "', expected \"fast\" or \"reference\"");
  return s;
}

class GqaAttention {
 public:
  explicit GqaAttention(const ts_block_config& config)
      : label_(cu::block_label(config, "attention gqa")),
        host_(config.host),
        device_(config.device_index) {
    cu::check_block_config(config, label_);
    const cu::DeviceScope scope(device_);
    const GqaShape s = gqa_shape(config, label_);
    hidden_ = s.hidden;
    n_heads_ = s.n_heads;
    head_dim_ = s.head_dim;
    kv_heads_ = s.kv_heads;
    decode_splits_ = s.decode_splits;
    reference_only_ = s.kernels == "reference";
    group_ = n_heads_ / kv_heads_;

    const int64_t q_rows = n_heads_ * head_dim_, kv_rows = kv_heads_ * head_dim_;
    const ts_weights* w = config.weights;
    wq_ = cu::fetch_weight(w, label_, "q_proj.weight", q_rows, hidden_, device_, owned_);
    wk_ = cu::fetch_weight(w, label_, "k_proj.weight", kv_rows, hidden_, device_, owned_);
    wv_ = cu::fetch_weight(w, label_, "v_proj.weight", kv_rows, hidden_, device_, owned_);
    wo_ = cu::fetch_weight(w, label_, "o_proj.weight", hidden_, q_rows, device_, owned_);

    // inv_freq[i] = theta^(-2i/head_dim), then the model's scaling: the CPU plugin's table.
    std::vector<double> inv_freq(static_cast<size_t>(head_dim_ / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i)
      inv_freq[i] =
          std::pow(s.theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim_));
    tessera::sdk::apply_rope_scaling(inv_freq, s.scaling);
    inv_freq_.reserve(inv_freq.size() * sizeof(double));
    cu::check(cudaMemcpy(inv_freq_.get(), inv_freq.data(), inv_freq.size() * sizeof(double),
                         cudaMemcpyHostToDevice),
              "cudaMemcpy (RoPE table)");
    cu::check(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device_),
              "cudaDeviceGetAttribute");
    gemm_ = std::make_unique<cu::Gemm>();
    uploaded_ = std::make_unique<cu::Event>();
  }

  // The four projections create reads (unsharded: the CUDA blocks refuse world > 1) and a
  // bf16 cache of every KV head.
  static tessera::sdk::BlockLayout describe(const ts_block_config& config) {
    const GqaShape s = gqa_shape(config, cu::block_label(config, "attention gqa"));
    const int64_t q_rows = s.n_heads * s.head_dim, kv_rows = s.kv_heads * s.head_dim;
    tessera::sdk::BlockLayout layout;
    layout.kv_heads = static_cast<int32_t>(s.kv_heads);
    layout.head_dim = static_cast<int32_t>(s.head_dim);
    layout.kv_dtype = TS_BF16;
    layout.weights = {{"q_proj.weight", {q_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"k_proj.weight", {kv_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"v_proj.weight", {kv_rows, s.hidden}, TS_SPLIT_ROWS},
                      {"o_proj.weight", {s.hidden, q_rows}, TS_SPLIT_COLUMNS}};
    return layout;
  }

  // A CUDA device, bf16 activations, one rank.
  static void supports(const ts_block_config& config) {
    const std::string label = cu::block_label(config, "attention gqa");
    cu::check_block_config(config, label);
    (void)gqa_shape(config, label);
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.kv_heads = static_cast<int32_t>(kv_heads_);
    i.head_dim = static_cast<int32_t>(head_dim_);
    i.kv_dtype = TS_BF16;
    i.parameters = 2 * n_heads_ * head_dim_ * hidden_ + 2 * kv_heads_ * head_dim_ * hidden_;
    return i;
  }

  void forward(const ts_block_io& io) {
    const cu::DeviceScope scope(device_);
    const int64_t n = cu::checked_rows(io, label_, hidden_, device_);
    cu::check_batch(io.batch, label_, n);
    const ts_batch& batch = *io.batch;
    const Cache cache = check_cache(io.kv);
    check_sequences(batch, cache, io.kv->lengths);
    if (n == 0) return;
    const cudaStream_t stream = cu::host_stream(host_);
    const int64_t q_width = n_heads_ * head_dim_, kv_width = kv_heads_ * head_dim_;

    // Projections, f32 out: RoPE rotates them before the one rounding to bf16.
    proj_.reserve(static_cast<size_t>(n * (q_width + 2 * kv_width)) * sizeof(float));
    float* q32 = proj_.get<float>();
    float* k32 = q32 + n * q_width;
    float* v32 = k32 + n * kv_width;
    project(io.x->data, n, wq_, q32, q_width, stream);
    project(io.x->data, n, wk_, k32, kv_width, stream);
    project(io.x->data, n, wv_, v32, kv_width, stream);

    const Tables tables = upload_tables(batch, cache, io.kv->lengths, n, stream);
    q_bf16_.reserve(static_cast<size_t>(2 * n * q_width) * sizeof(uint16_t));
    auto* q = q_bf16_.get<attn::bf16>();
    auto* out = q + n * q_width;

    attn::RopeArgs rope;
    rope.q_in = q32;
    rope.k_in = k32;
    rope.v_in = v32;
    rope.q_out = q;
    rope.k_cache = cache.k;
    rope.v_cache = cache.v;
    rope.positions = tables.positions;
    rope.cache_row = tables.cache_row;
    rope.inv_freq = inv_freq_.get<double>();
    rope.n_tokens = static_cast<int32_t>(n);
    rope.n_heads = static_cast<int32_t>(n_heads_);
    rope.kv_heads = static_cast<int32_t>(kv_heads_);
    rope.head_dim = static_cast<int32_t>(head_dim_);
    attn::launch_rope_store_kv(rope, stream);

    attn::AttentionArgs a;
    a.q = q;
    a.k_cache = cache.k;
    a.v_cache = cache.v;
    a.out = out;
    a.seqs = tables.seqs;
    a.masks = tables.masks;
    a.n_seqs = batch.n_seqs;
    a.n_heads = static_cast<int32_t>(n_heads_);
    a.kv_heads = static_cast<int32_t>(kv_heads_);
    a.head_dim = static_cast<int32_t>(head_dim_);
    a.capacity = static_cast<int32_t>(cache.capacity);
    a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim_)));
    if (plan_.n_work > 0) {
      const size_t floats =
          attn::decode_scratch_floats(plan_.n_work, a.kv_heads, plan_.n_splits, a.head_dim);
      decode_scratch_.reserve(floats * sizeof(float));
      const attn::DecodeScratch scratch = attn::decode_scratch_view(
          decode_scratch_.get<float>(), plan_.n_work, a.kv_heads, plan_.n_splits, a.head_dim);
      attn::launch_decode(a, tables.work, plan_.n_work, plan_.n_splits, plan_.keys_per_split,
                          scratch, stream);
    }
    attn::launch_prefill(a, tables.tiles, plan_.n_tiles, stream);
    run_reference(a, tables, stream);

    // y = attn W_o^T
    cu::GemmArgs g;
    g.x = out;
    g.w = wo_.data;
    g.y = io.y->data;
    g.m = n;
    g.n = hidden_;
    g.k = q_width;
    g.ldx = q_width;
    g.ldw = wo_.ld;
    g.ldy = hidden_;
    gemm_->run(g, stream);
  }

  void compact_kv(ts_kv_layer& kv, int32_t slot, int32_t first_row, const int32_t* keep,
                  int32_t n_keep) {
    const cu::DeviceScope scope(device_);
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
        throw std::invalid_argument(label_ + ": compact_kv keep list must be ascending and >= 0 " +
                                    "(keep[" + num(i) + "] = " + num(keep[i]) + ")");
      if (int64_t{first_row} + keep[i] >= cache.capacity)
        throw std::invalid_argument(label_ + ": compact_kv row " + num(first_row + keep[i]) +
                                    " of slot " + num(slot) + " is beyond the capacity " +
                                    num(cache.capacity));
    }
    if (n_keep == 0) return;
    const cudaStream_t stream = cu::host_stream(host_);
    const int64_t row_elems = kv_heads_ * head_dim_;
    compact_keep_.reserve(static_cast<size_t>(n_keep) * sizeof(int32_t));
    compact_rows_.reserve(static_cast<size_t>(2 * n_keep * row_elems) * sizeof(uint16_t));
    // From pageable memory: returns once `keep` has been read, so the caller may reuse it.
    cu::check(cudaMemcpyAsync(compact_keep_.get(), keep, static_cast<size_t>(n_keep) * 4,
                              cudaMemcpyHostToDevice, stream),
              "cudaMemcpyAsync (keep list)");
    attn::launch_compact_kv(cache.k, cache.v, int64_t{slot} * cache.capacity + first_row,
                            compact_keep_.get<int32_t>(), n_keep, static_cast<int32_t>(row_elems),
                            compact_rows_.get<attn::bf16>(), stream);
  }

 private:
  struct Cache {
    attn::bf16* k = nullptr;
    attn::bf16* v = nullptr;
    int64_t slots = 0;
    int64_t capacity = 0;
  };

  // Device pointers into the uploaded per-call tables.
  struct Tables {
    const int32_t* positions = nullptr;
    const int64_t* cache_row = nullptr;
    const int32_t* token_seq = nullptr;
    const attn::SeqDesc* seqs = nullptr;
    const attn::PrefillTile* tiles = nullptr;
    const attn::DecodeWork* work = nullptr;
    const int32_t* reference_tokens = nullptr;
    const uint8_t* masks = nullptr;
  };

  // Which kernel takes which sequence, decided on the host for every call.
  struct Plan {
    int32_t n_tiles = 0;
    int32_t n_work = 0, n_splits = 1, keys_per_split = 64;
    int32_t n_reference = 0, reference_max_keys = 0;
  };

  void project(const void* x, int64_t n, const cu::DeviceMatrix& w, float* y, int64_t width,
               cudaStream_t stream) {
    cu::GemmArgs g;
    g.x = x;
    g.w = w.data;
    g.y = y;
    g.m = n;
    g.n = width;
    g.k = hidden_;
    g.ldx = hidden_;
    g.ldw = w.ld;
    g.ldy = width;
    g.y_dtype = TS_F32;
    gemm_->run(g, stream);
  }

  Tables upload_tables(const ts_batch& batch, const Cache& cache, const int32_t* lengths, int64_t n,
                       cudaStream_t stream) {
    std::vector<int64_t> cache_row(static_cast<size_t>(n));
    std::vector<int32_t> token_seq(static_cast<size_t>(n)), reference_tokens;
    std::vector<attn::SeqDesc> seqs(static_cast<size_t>(batch.n_seqs));
    std::vector<attn::PrefillTile> tiles;
    std::vector<attn::DecodeWork> work;
    std::vector<uint8_t> masks;
    plan_ = Plan{};
    const bool decode_ok = !reference_only_ && attn::decode_supported(int32_t(head_dim_));
    const bool prefill_ok = !reference_only_ && attn::prefill_supported(int32_t(head_dim_));
    const int32_t rows_per_work = attn::decode_rows_per_block(static_cast<int32_t>(head_dim_));
    int32_t decode_max_keys = 0;
    for (int32_t s = 0; s < batch.n_seqs; ++s) {
      const int32_t first = batch.offsets[s], n_new = batch.offsets[s + 1] - first;
      const int32_t slot = batch.slots[s], cached = lengths[slot];
      attn::SeqDesc& d = seqs[static_cast<size_t>(s)];
      d = attn::SeqDesc{slot, cached, first, n_new, -1};
      const uint8_t* mask = batch.tree_masks != nullptr ? batch.tree_masks[s] : nullptr;
      if (mask != nullptr && n_new > 0) {
        d.mask_offset = static_cast<int32_t>(masks.size());
        masks.insert(masks.end(), mask, mask + int64_t{n_new} * n_new);
      }
      for (int32_t i = 0; i < n_new; ++i) {
        cache_row[static_cast<size_t>(first + i)] = int64_t{slot} * cache.capacity + cached + i;
        token_seq[static_cast<size_t>(first + i)] = s;
      }
      if (n_new == 0) continue;
      const int64_t packed = int64_t{n_new} * group_;
      if (decode_ok && (packed <= kDecodeMaxPackedRows || !prefill_ok)) {
        for (int32_t r = 0; r < packed; r += rows_per_work)
          work.push_back(
              {s, r, static_cast<int32_t>(std::min<int64_t>(rows_per_work, packed - r))});
        decode_max_keys = std::max(decode_max_keys, cached + n_new);
      } else if (prefill_ok) {
        for (int32_t i = 0; i < n_new; i += attn::kPrefillTileRows) tiles.push_back({s, i});
      } else {
        for (int32_t i = 0; i < n_new; ++i) reference_tokens.push_back(first + i);
        plan_.reference_max_keys = std::max(plan_.reference_max_keys, cached + n_new);
      }
    }
    // Longest causal tiles first, so that the last wave is short.
    std::stable_sort(
        tiles.begin(), tiles.end(),
        [](const attn::PrefillTile& a, const attn::PrefillTile& b) { return a.first > b.first; });
    plan_.n_tiles = static_cast<int32_t>(tiles.size());
    plan_.n_work = static_cast<int32_t>(work.size());
    plan_.n_reference = static_cast<int32_t>(reference_tokens.size());
    if (plan_.n_work > 0) {
      const attn::DecodeSplits splits = attn::choose_decode_splits(
          int64_t{plan_.n_work} * kv_heads_, decode_max_keys, multiprocessors_, decode_splits_);
      plan_.n_splits = splits.n_splits;
      plan_.keys_per_split = splits.keys_per_split;
    }

    table_.clear();
    const size_t o_positions = table_.append(batch.positions, static_cast<size_t>(n));
    const size_t o_cache_row = table_.append(cache_row.data(), cache_row.size());
    const size_t o_token_seq = table_.append(token_seq.data(), token_seq.size());
    const size_t o_seqs = table_.append(seqs.data(), seqs.size());
    const size_t o_tiles = table_.append(tiles.data(), tiles.size());
    const size_t o_work = table_.append(work.data(), work.size());
    const size_t o_reference = table_.append(reference_tokens.data(), reference_tokens.size());
    const size_t o_masks = table_.append(masks.data(), masks.size());

    // The previous call's upload must be done before its pinned staging is overwritten.
    uploaded_->wait_host();
    staging_.reserve(table_.size());
    tables_.reserve(table_.size());
    std::memcpy(staging_.get(), table_.data(), table_.size());
    cu::check(cudaMemcpyAsync(tables_.get(), staging_.get(), table_.size(), cudaMemcpyHostToDevice,
                              stream),
              "cudaMemcpyAsync (sequence tables)");
    uploaded_->record(stream);

    const auto* base = tables_.get<unsigned char>();
    Tables t;
    t.positions = reinterpret_cast<const int32_t*>(base + o_positions);
    t.cache_row = reinterpret_cast<const int64_t*>(base + o_cache_row);
    t.token_seq = reinterpret_cast<const int32_t*>(base + o_token_seq);
    t.seqs = reinterpret_cast<const attn::SeqDesc*>(base + o_seqs);
    t.tiles = reinterpret_cast<const attn::PrefillTile*>(base + o_tiles);
    t.work = reinterpret_cast<const attn::DecodeWork*>(base + o_work);
    t.reference_tokens = reinterpret_cast<const int32_t*>(base + o_reference);
    t.masks = masks.empty() ? nullptr : base + o_masks;
    return t;
  }

  // The naive kernel over the sequences no fast kernel took, in chunks of tokens.
  void run_reference(const attn::AttentionArgs& a, const Tables& t, cudaStream_t stream) {
    if (plan_.n_reference == 0) return;
    const size_t per_token = static_cast<size_t>(n_heads_) *
                             static_cast<size_t>(plan_.reference_max_keys) * sizeof(float);
    const auto chunk = static_cast<int32_t>(std::clamp<size_t>(
        kReferenceScoreBytes / per_token, 1, static_cast<size_t>(plan_.n_reference)));
    reference_scores_.reserve(static_cast<size_t>(chunk) * per_token);
    for (int32_t begin = 0; begin < plan_.n_reference; begin += chunk)
      attn::launch_reference_attention(
          a, t.token_seq, t.reference_tokens + begin, std::min(chunk, plan_.n_reference - begin),
          plan_.reference_max_keys, reference_scores_.get<float>(), stream);
  }

  Cache check_cache(const ts_kv_layer* kv) const {
    if (kv == nullptr) throw std::invalid_argument(label_ + ": no KV cache was given");
    if (kv->lengths == nullptr)
      throw std::invalid_argument(label_ + ": the KV cache has no lengths table");
    const ts_tensor* tensors[2] = {&kv->k, &kv->v};
    const char* names[2] = {"k cache", "v cache"};
    for (int i = 0; i < 2; ++i) {
      const ts_tensor& t = *tensors[i];
      if (t.dtype != TS_BF16)
        throw tessera::sdk::Unsupported(label_ + ": " + names[i] + " has dtype " +
                                        tessera::dtype_name(t.dtype) + ", expected bf16");
      if (t.device != TS_DEVICE_CUDA || t.device_index != device_)
        throw tessera::sdk::Unsupported(label_ + ": " + names[i] + " is on " +
                                        tessera::device_name(t.device) + " " + num(t.device_index) +
                                        ", expected cuda " + num(device_));
      if (t.data == nullptr || t.ndim != 4 || t.shape[2] != kv_heads_ || t.shape[3] != head_dim_ ||
          !tessera::sdk::is_contiguous(t))
        throw std::invalid_argument(label_ + ": " + names[i] + " has shape " +
                                    tessera::sdk::shape_string(t) +
                                    ", expected a contiguous [slots, capacity, " + num(kv_heads_) +
                                    ", " + num(head_dim_) + "]");
    }
    if (kv->k.shape[0] != kv->v.shape[0] || kv->k.shape[1] != kv->v.shape[1])
      throw std::invalid_argument(label_ + ": k cache " + tessera::sdk::shape_string(kv->k) +
                                  " and v cache " + tessera::sdk::shape_string(kv->v) +
                                  " differ in shape");
    return Cache{static_cast<attn::bf16*>(kv->k.data), static_cast<attn::bf16*>(kv->v.data),
                 kv->k.shape[0], kv->k.shape[1]};
  }

  void check_sequences(const ts_batch& batch, const Cache& cache, const int32_t* lengths) const {
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

  std::string label_;
  const ts_host* host_ = nullptr;
  int32_t device_ = 0;
  int64_t hidden_ = 0, n_heads_ = 0, kv_heads_ = 0, head_dim_ = 0, group_ = 1;
  int64_t decode_splits_ = 0;
  bool reference_only_ = false;
  int multiprocessors_ = 1;
  std::vector<cu::DeviceBuffer> owned_;
  cu::DeviceMatrix wq_, wk_, wv_, wo_;
  cu::DeviceBuffer inv_freq_;
  std::unique_ptr<cu::Gemm> gemm_;
  // Per-call scratch: grows, never shrinks.
  cu::DeviceBuffer proj_, q_bf16_, decode_scratch_, reference_scores_, tables_;
  cu::DeviceBuffer compact_keep_, compact_rows_;
  cu::PinnedBuffer staging_;
  std::unique_ptr<cu::Event> uploaded_;
  TableBuilder table_;
  Plan plan_;
};

struct LinearAttention : cu::LinearBlock {
  explicit LinearAttention(const ts_block_config& c)
      : LinearBlock(c, "attention linear", "linear_attn.weight") {}
  static tessera::sdk::BlockLayout describe(const ts_block_config& c) {
    return layout(c, "linear_attn.weight");
  }
};

struct NoopAttention : cu::NoopBlock {
  explicit NoopAttention(const ts_block_config& c) : NoopBlock(c, "attention noop") {}
};

int32_t score() {
  return cu::score_when_device_present();
}

const ts_block_vtable kGqaVtable = tessera::sdk::block_vtable<GqaAttention>();
const ts_block_vtable kLinearVtable = tessera::sdk::block_vtable<LinearAttention>();
const ts_block_vtable kNoopVtable = tessera::sdk::block_vtable<NoopAttention>();

const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_ATTENTION, "gqa", TS_DEVICE_CUDA, &kGqaVtable, score),
    tessera::sdk::provider(TS_KIND_ATTENTION, "linear", TS_DEVICE_CUDA, &kLinearVtable, score),
    tessera::sdk::provider(TS_KIND_ATTENTION, "noop", TS_DEVICE_CUDA, &kNoopVtable, score),
};

}  // namespace

TESSERA_PLUGIN("tessera-attention-cuda", "0.1.0", kProviders)
