// Model assembly and the forward loop: embedding, per-layer norm + block +
// residual, final norm, lm head. The blocks come from plugins; the rest is here.
#include <tessera/cpu/matmul.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/memory_check.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/parallel.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/kv_rows.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <utility>

namespace tessera {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w. Accumulates in double like the reference.
void rmsnorm_rows(const float* x, const float* w, double eps, int64_t rows, int64_t dim, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double sum = 0;
    for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(dim) + eps));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

bool is_float_dtype(ts_dtype d) {
  return d == TS_F32 || d == TS_F16 || d == TS_BF16;
}

KvLayerShape kv_shape_of(const Block& block) {
  const ts_block_info& info = block.info();
  if (info.kv_heads == 0) return {};
  const auto dtype = static_cast<ts_dtype>(info.kv_dtype);
  if (dtype_size(dtype) == 0)
    throw Error(block.label() + ": info reports kv_dtype " + std::to_string(info.kv_dtype) +
                ", which is not a known dtype");
  return {info.kv_heads, info.head_dim, dtype};
}

bool same_kv_shape(const KvLayerShape& a, const KvLayerShape& b) {
  if (a.kv_heads == 0 || b.kv_heads == 0) return a.kv_heads == b.kv_heads;
  return a.kv_heads == b.kv_heads && a.head_dim == b.head_dim && a.dtype == b.dtype;
}

}  // namespace

// ------------------------------------------------------------------ Impl

namespace {

// What a block's ts_weights points at. Lives as long as the block; the tensors
// handed out are held here so that replacing a weight in the store later does
// not pull memory from under a block still using it.
struct WeightsContext {
  const WeightStore* store = nullptr;
  std::string prefix;  // "model.layers.3.self_attn.", or the block's own
  std::string owner;   // "layer 3 attention"
  std::string source;  // where the weights came from
  // Why a missing weight may be missing: set for a block that declared nothing.
  std::string note;
  std::vector<Tensor> held;
  ts_weights c{};
};

int weights_get(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
  auto* w = static_cast<WeightsContext*>(ctx);
  try {
    if (name == nullptr || out == nullptr) {
      sdk::set_error(err, w->owner + ": weights.get called with a NULL name or output");
      return TS_ERROR;
    }
    const std::string full = w->prefix + name;
    if (!w->store->has(full)) {
      sdk::set_error(err, "missing weight '" + full + "' (local name '" + name + "', " + w->owner +
                              ") in " + w->source + w->note);
      return TS_ERROR;
    }
    const Tensor& t = w->store->get(full);
    w->held.push_back(t);
    *out = t.view();
    return TS_OK;
  } catch (const std::exception& e) {
    sdk::set_error(err, w->owner + ": " + e.what());
    return TS_ERROR;
  }
}

struct SubBlock {
  // Declared first so that it is destroyed last: the block may use its tensors.
  std::unique_ptr<WeightsContext> weights;
  std::unique_ptr<Block> block;
  Tensor norm;  // f32 [hidden]; empty for identity blocks
  KvLayerShape kv;
};

}  // namespace

struct Model::Impl {
  std::vector<SubBlock> attention;
  std::vector<SubBlock> ffn;
  std::vector<KvLayerShape> kv_shapes;
  Tensor embed, final_norm, lm_head;
  std::unique_ptr<Parallel> parallel;  // [runtime.parallel], when ModelOptions gives no comm
  const ts_comm* comm = nullptr;
  ts_device device = TS_DEVICE_CPU;
  std::string source;
  // Scratch, grown on demand so that decode steps do not allocate.
  std::vector<float> x, normed, y, last_rows, head_hidden;
  std::vector<int32_t> positions;

  // A host-owned weight, already in the dtype stored_dtype chose (check_weights has checked
  // that dtype against what the host reads).
  const Tensor& require(const WeightStore& store, const std::string& name,
                        const std::vector<int64_t>& shape, const std::string& purpose) const {
    if (!store.has(name))
      throw ModelError("missing weight '" + name + "' (" + purpose + ") in " + source);
    const Tensor& t = store.get(name);
    if (shape.size() == 1 && t.dtype() != TS_F32)
      throw ModelError("weight '" + name + "' (" + purpose + ") in " + source + " has dtype " +
                       dtype_name(t.dtype()) + ", expected f32");
    if (t.shape() != shape)
      throw ModelError("weight '" + name + "' (" + purpose + ") in " + source + " has shape " +
                       t.shape_string() + ", expected " + shape_text(shape));
    return t;
  }

  PlanOptions plan_options(const Model& m) const { return {device, comm, m.pool_.host()}; }

  // The block from the first candidate that accepts it: supports and describe first, then
  // the weights it declares are checked, then create (TS_UNSUPPORTED hands over to the next).
  SubBlock build(Model& m, int32_t layer, ts_kind kind, const BlockSpec& spec) const {
    const bool is_attention = kind == TS_KIND_ATTENTION;
    const std::string owner = "layer " + std::to_string(layer) + " " +
                              (is_attention ? std::string("attention") : std::string("ffn"));
    const std::vector<ProviderRef> candidates =
        block_candidates(m.registry_, layer, kind, spec, device);
    const PlanOptions options = plan_options(m);
    const std::string manifest_name = manifest_display_name(m.manifest_);

    SubBlock sub;
    sub.weights = std::make_unique<WeightsContext>();
    WeightsContext& w = *sub.weights;
    w.store = &m.weights_;
    w.owner = owner;
    w.source = source;
    w.c.ctx = &w;
    w.c.get = &weights_get;

    const ParamList params = m.manifest_.block_params(spec);  // alive during create
    ts_block_config config{};
    config.struct_size = sizeof(ts_block_config);
    config.kind = kind;
    config.layer = layer;
    config.hidden = m.hidden();
    config.dtype = TS_F32;
    config.device = device;
    config.device_index = 0;
    config.params = params.c_params();
    config.weights = &w.c;
    config.comm = comm;
    config.host = m.pool_.host();

    std::vector<std::string> declined;
    PlannedBlock chosen;  // the plan of the provider whose block was made
    for (const ProviderRef& provider : candidates) {
      std::string reason;
      std::optional<PlannedBlock> planned =
          plan_block_with(m.manifest_, layer, kind, spec, provider, options, &reason);
      if (!planned) {
        declined.push_back(reason);
        continue;
      }
      check_block_weights(*planned, m.weights_, manifest_name);
      w.prefix = planned->prefix;
      w.note = planned->declared()
                   ? ""
                   : "; " + planned->label +
                         " declares no weights (its provider has no describe), so random weights "
                         "and the checks at load know none of its tensors";
      try {
        w.held.clear();
        sub.block = std::make_unique<Block>(provider, config, planned->label);
        chosen = std::move(*planned);
        break;
      } catch (const PluginUnsupported& e) {
        declined.push_back(provider.plugin_name() + " (" + provider.path().string() +
                           "): " + e.what());
      }
    }
    if (!sub.block) throw_all_declined(layer, kind, spec, candidates.size(), declined);
    const Block& block = *sub.block;
    // "layer 3 attention gqa (plugin) (m.toml:14:1)": the block and where the manifest chose it.
    const std::string label = spec.where.file.empty() || spec.where.line <= 0
                                  ? block.label()
                                  : block.label() + " (" + spec.where.file + ":" +
                                        std::to_string(spec.where.line) + ":" +
                                        std::to_string(spec.where.column) + ")";

    // What the block reports must be what its provider declared: the cache was sized and
    // the norms planned from the declaration.
    if (chosen.layout) {
      const BlockLayout& layout = *chosen.layout;
      const ts_block_info& info = block.info();
      const bool flags_agree = block.identity() == layout.identity();
      const bool kv_agrees = info.kv_heads == layout.kv.kv_heads &&
                             (info.kv_heads == 0 || (info.head_dim == layout.kv.head_dim &&
                                                     info.kv_dtype == layout.kv.dtype));
      if (!flags_agree || !kv_agrees)
        throw Error(label + ": info() reports flags " + std::to_string(info.flags) + ", kv_heads " +
                    std::to_string(info.kv_heads) + ", head_dim " + std::to_string(info.head_dim) +
                    " and kv_dtype " + std::to_string(info.kv_dtype) +
                    ", but describe declared flags " + std::to_string(layout.flags) +
                    ", kv_heads " + std::to_string(layout.kv.kv_heads) + ", head_dim " +
                    std::to_string(layout.kv.head_dim) + " and kv_dtype " +
                    std::to_string(layout.kv.dtype) + "; expected the same");
    }

    if (!block.identity()) {
      const std::string norm_name = block_norm_name(layer, kind);
      sub.norm = require(m.weights_, norm_name, {m.hidden()}, owner + " norm");
    }
    if (is_attention) {
      // The cache as declared (checked above against info()); from info() for a block
      // whose provider declares nothing.
      sub.kv = chosen.declared() ? chosen.kv() : kv_shape_of(block);
      // A plugin that ignores kv_dtype would otherwise go unnoticed.
      const ParamValue* asked = params.find("kv_dtype");
      const std::string* asked_name = asked ? std::get_if<std::string>(asked) : nullptr;
      if (sub.kv.kv_heads > 0 && asked_name != nullptr && *asked_name != dtype_name(sub.kv.dtype))
        throw Error(label + ": keeps its KV cache in " + dtype_name(sub.kv.dtype) +
                    ", but kv_dtype \"" + *asked_name + "\" was asked for");
    } else if (block.info().kv_heads != 0) {
      throw Error(label + ": an FFN block asks for a KV cache (kv_heads " +
                  std::to_string(block.info().kv_heads) + "); expected 0");
    }
    return sub;
  }
};

// ------------------------------------------------------------------ Model

Model::Model(const Manifest& manifest, const PluginRegistry& registry, WeightStore weights,
             ThreadPool& pool, ModelOptions options)
    : manifest_(manifest),
      registry_(registry),
      weights_(std::move(weights)),
      pool_(pool),
      options_(options),
      impl_(std::make_unique<Impl>()) {
  const ModelSpec& spec = manifest_.model;
  const std::string name = !manifest_.source.empty() ? manifest_.source.string()
                           : spec.name.empty()       ? std::string("the manifest")
                                                     : "manifest '" + spec.name + "'";
  if (manifest_.runtime.dtype != TS_F32)
    throw Error(name + ": runtime dtype " + dtype_name(manifest_.runtime.dtype) +
                " is not supported yet: the CPU blocks compute activations in f32; set [runtime] "
                "dtype = \"f32\"");
  if (!is_float_dtype(manifest_.runtime.weight_dtype))
    throw Error(name + ": runtime weight_dtype " + dtype_name(manifest_.runtime.weight_dtype) +
                " is not supported; expected f32, f16 or bf16");
  if (manifest_.runtime.device != "cpu")
    throw Error(name + ": runtime device '" + manifest_.runtime.device +
                "': whole models run on the CPU only for now (CUDA blocks are plugins that "
                "`tessera plugin-check` runs on a GPU); expected \"cpu\"");
  if (spec.hidden_size <= 0 || spec.vocab_size <= 0 || spec.num_layers < 0)
    throw Error(name + ": hidden_size " + std::to_string(spec.hidden_size) + ", vocab_size " +
                std::to_string(spec.vocab_size) + ", num_layers " +
                std::to_string(spec.num_layers) + "; expected positive sizes");
  if (manifest_.layers.size() != static_cast<size_t>(spec.num_layers))
    throw Error(name + ": " + std::to_string(manifest_.layers.size()) +
                " layer entries, expected num_layers = " + std::to_string(spec.num_layers));
  if (options_.slots < 1)
    throw Error("model options: slots is " + std::to_string(options_.slots) +
                ", expected at least 1");
  if (options_.capacity < 0)
    throw Error("model options: capacity is " + std::to_string(options_.capacity) +
                ", expected >= 0 (0: the manifest's max_seq_len)");
  const int32_t capacity = options_.capacity > 0 ? options_.capacity : spec.max_seq_len;
  if (capacity <= 0)
    throw Error(name + ": max_seq_len is " + std::to_string(spec.max_seq_len) +
                " and no capacity was given; expected a positive capacity");

  Impl& im = *impl_;
  im.device = TS_DEVICE_CPU;
  if (!weights_.source.empty())
    im.source = weights_.source;
  else if (manifest_.weights.format == "random")
    im.source = "random weights (seed " + std::to_string(manifest_.weights.seed) + ")";
  else if (!manifest_.weights.path.empty())
    im.source = manifest_.weights.path.string();
  else
    im.source = "the weight store";

  if (options_.comm != nullptr) {
    im.comm = options_.comm;
  } else {
    im.parallel = make_parallel(registry_, manifest_.runtime.parallel, pool_.host());
    im.comm = &im.parallel->comm();
  }

  // Every block's provider and what it declares, before anything is made.
  const WeightPlan plan = plan_weights(manifest_, registry_, im.plan_options(*this));
  // A random-weights manifest given no weights gets them drawn from the declarations.
  if (manifest_.weights.format == "random" && weights_.all().empty()) {
    weights_ = init_random_weights(plan, manifest_.weights.seed);
    im.source = weights_.source;
  }

  // Activations are f32; the matrices the blocks, the embedding and the lm head
  // read are kept in weight_dtype (decode reads every one of them per token).
  if (weights_.refuse_unread) check_no_unread_weights(plan, weights_);
  WeightStore converted;
  converted.source = im.source;
  for (const auto& [tensor_name, t] : weights_.all()) {
    const ts_dtype want = run_dtype(plan, tensor_name, t);
    converted.add(tensor_name, t.dtype() == want ? t : t.to(want));
  }
  for (const auto& [tensor_name, origin] : weights_.origins())
    converted.set_origin(tensor_name, origin);
  weights_ = std::move(converted);

  // Every declared tensor is there with its declared shape before any block is made.
  check_weights(plan, weights_);
  const int64_t vocab_rows = spec.vocab_size, hidden_size = spec.hidden_size;
  im.embed = im.require(weights_, "model.embed_tokens.weight", {vocab_rows, hidden_size},
                        "token embedding");
  im.final_norm = im.require(weights_, "model.norm.weight", {hidden_size}, "final norm");
  im.lm_head = spec.tie_embeddings
                   ? im.embed
                   : im.require(weights_, "lm_head.weight", {vocab_rows, hidden_size}, "lm head");

  for (int32_t layer = 0; layer < spec.num_layers; ++layer) {
    const LayerSpec& ls = manifest_.layers[static_cast<size_t>(layer)];
    im.attention.push_back(im.build(*this, layer, TS_KIND_ATTENTION, ls.attention));
    im.ffn.push_back(im.build(*this, layer, TS_KIND_FFN, ls.ffn));
    im.kv_shapes.push_back(im.attention.back().kv);
  }
  uint64_t kv_per_token = 0;
  for (const KvLayerShape& k : im.kv_shapes)
    kv_per_token += 2 * static_cast<uint64_t>(k.kv_heads) * static_cast<uint64_t>(k.head_dim) *
                    dtype_size(k.dtype);
  require_memory(kv_per_token * static_cast<uint64_t>(capacity) *
                     static_cast<uint64_t>(std::max(options_.slots, 1)),
                 name + ": the KV cache (" + std::to_string(options_.slots) + " sequences x " +
                     std::to_string(capacity) + " tokens x " + byte_text(kv_per_token) +
                     " per token)");
  kv_ = KvCache(im.kv_shapes, options_.slots, capacity);
}

Model::~Model() = default;

const Block& Model::attention(int32_t layer) const {
  if (layer < 0 || layer >= num_layers())
    throw Error("attention(" + std::to_string(layer) + "): layer out of range [0, " +
                std::to_string(num_layers()) + ")");
  return *impl_->attention[static_cast<size_t>(layer)].block;
}

const Block& Model::ffn(int32_t layer) const {
  if (layer < 0 || layer >= num_layers())
    throw Error("ffn(" + std::to_string(layer) + "): layer out of range [0, " +
                std::to_string(num_layers()) + ")");
  return *impl_->ffn[static_cast<size_t>(layer)].block;
}

Block& Model::attention(int32_t layer) {
  return const_cast<Block&>(std::as_const(*this).attention(layer));
}

Block& Model::ffn(int32_t layer) {
  return const_cast<Block&>(std::as_const(*this).ffn(layer));
}

void Model::embed(const std::vector<int32_t>& tokens, float* x) const {
  const int64_t h = hidden();
  const Tensor& table = impl_->embed;
  const size_t row_bytes = dtype_bytes(table.dtype(), h);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t token = tokens[i];
    if (token < 0 || token >= vocab())
      throw Error("token id " + std::to_string(token) + " at position " + std::to_string(i) +
                  " of the batch is out of range: expected 0 <= id < vocab_size " +
                  std::to_string(vocab()));
    convert(static_cast<const char*>(table.raw()) + static_cast<size_t>(token) * row_bytes,
            table.dtype(), x + static_cast<int64_t>(i) * h, TS_F32, h);
  }
}

void Model::run_layer(int32_t layer, const ts_batch& batch, float* x, int32_t n_tokens) {
  if (layer < 0 || layer >= num_layers())
    throw Error("run_layer(" + std::to_string(layer) + "): layer out of range [0, " +
                std::to_string(num_layers()) + ")");
  Impl& im = *impl_;
  const int64_t h = hidden();
  const size_t n = static_cast<size_t>(n_tokens * h);
  if (im.normed.size() < n) im.normed.resize(n);
  if (im.y.size() < n) im.y.resize(n);
  const double eps = manifest_.model.rms_norm_eps;

  // The norm and the residual add are row-wise: split long prefills over the
  // pool (a decode row stays on this thread, with no parallel region).
  constexpr int64_t kRowsPerChunk = 32;
  auto for_rows = [&](const auto& fn) {
    if (n_tokens <= kRowsPerChunk)
      fn(int64_t{0}, int64_t{n_tokens});
    else
      pool_.parallel_for(n_tokens, kRowsPerChunk, std::function<void(int64_t, int64_t)>(fn));
  };
  auto run = [&](SubBlock& sub, ts_kv_layer* kv) {
    if (sub.block->identity()) return;  // adds nothing: skip its norm, call and residual
    const float* norm = sub.norm.data<float>();
    for_rows([&](int64_t r0, int64_t r1) {
      rmsnorm_rows(x + r0 * h, norm, eps, r1 - r0, h, im.normed.data() + r0 * h);
    });
    const ts_tensor xv = f32_matrix_view(im.normed.data(), n_tokens, h);
    ts_tensor yv = f32_matrix_view(im.y.data(), n_tokens, h);
    ts_block_io io{};
    io.struct_size = sizeof(ts_block_io);
    io.x = &xv;
    io.y = &yv;
    io.batch = &batch;
    io.kv = kv;
    sub.block->forward(io);
    const float* y = im.y.data();
    for_rows([&](int64_t r0, int64_t r1) {
      for (int64_t i = r0 * h; i < r1 * h; ++i) x[i] += y[i];
    });
  };

  SubBlock& attention = im.attention[static_cast<size_t>(layer)];
  if (kv_.has_layer(layer)) {
    ts_kv_layer kv = kv_.layer_view(layer);
    run(attention, &kv);
  } else {
    run(attention, nullptr);
  }
  run(im.ffn[static_cast<size_t>(layer)], nullptr);
}

std::string Model::row_invariant_unsupported() const {
  for (int32_t layer = 0; layer < num_layers(); ++layer)
    for (const Block* b : {&attention(layer), &ffn(layer)})
      if (!b->identity() && !b->row_invariant())
        return b->label() +
               " does not report TS_BLOCK_ROW_INVARIANT: its plugin cannot promise "
               "that a token's output is independent of the rest of the pass";
  return {};
}

void Model::final_norm_and_head(const float* x, int32_t n_tokens, float* logits, float* hidden_out,
                                bool row_invariant) const {
  if (logits == nullptr && hidden_out == nullptr) return;
  Impl& im = *impl_;
  const int64_t h = hidden();
  float* normed = hidden_out;
  if (normed == nullptr) {
    const size_t n = static_cast<size_t>(n_tokens * h);
    if (im.head_hidden.size() < n) im.head_hidden.resize(n);
    normed = im.head_hidden.data();
  }
  rmsnorm_rows(x, im.final_norm.data<float>(), manifest_.model.rms_norm_eps, n_tokens, h, normed);
  if (logits == nullptr) return;

  const int64_t v_rows = vocab();
  const cpu::MatrixView head{im.lm_head.raw(), im.lm_head.dtype(), v_rows, h, h};
  cpu::matmul_nt(pool_.host(), normed, n_tokens, h, head, logits, v_rows,
                 cpu::row_reduction(row_invariant));
}

void Model::forward(const ForwardBatch& batch, float* logits, float* hidden_out) {
  Impl& im = *impl_;
  const size_t n_seqs = batch.slots.size();
  if (n_seqs == 0) throw Error("forward: the batch has no sequences");
  if (batch.offsets.size() != n_seqs + 1)
    throw Error("forward: offsets has " + std::to_string(batch.offsets.size()) +
                " entries, expected n_seqs + 1 = " + std::to_string(n_seqs + 1));
  if (batch.offsets[0] != 0)
    throw Error("forward: offsets[0] is " + std::to_string(batch.offsets[0]) + ", expected 0");
  if (batch.tokens.size() != static_cast<size_t>(batch.offsets.back()))
    throw Error("forward: " + std::to_string(batch.tokens.size()) + " tokens, but offsets end at " +
                std::to_string(batch.offsets.back()));
  const auto n_tokens = static_cast<int32_t>(batch.tokens.size());
  if (!batch.positions.empty() && batch.positions.size() != batch.tokens.size())
    throw Error("forward: " + std::to_string(batch.positions.size()) + " positions for " +
                std::to_string(n_tokens) + " tokens; expected one per token or none");
  if (!batch.tree_masks.empty() && batch.tree_masks.size() != n_seqs)
    throw Error("forward: " + std::to_string(batch.tree_masks.size()) + " tree masks for " +
                std::to_string(n_seqs) + " sequences; expected one per sequence or none");
  if (batch.row_invariant) {
    const std::string why = row_invariant_unsupported();
    if (!why.empty()) throw Error("forward: a row-invariant pass was asked for, but " + why);
  }
  for (size_t s = 0; s < n_seqs; ++s) {
    const int32_t slot = batch.slots[s];
    const int32_t n_new = batch.offsets[s + 1] - batch.offsets[s];
    if (slot < 0 || slot >= kv_.slots())
      throw Error("forward: sequence " + std::to_string(s) + " uses slot " + std::to_string(slot) +
                  ", expected 0 <= slot < " + std::to_string(kv_.slots()));
    if (n_new < 1)
      throw Error("forward: sequence " + std::to_string(s) + " (slot " + std::to_string(slot) +
                  ") has " + std::to_string(n_new) +
                  " new tokens; expected at least 1 (offsets must increase)");
    for (size_t r = 0; r < s; ++r)
      if (batch.slots[r] == slot)
        throw Error("forward: sequences " + std::to_string(r) + " and " + std::to_string(s) +
                    " both use slot " + std::to_string(slot) + "; expected distinct slots");
    const int32_t length = kv_.length(slot);
    if (static_cast<int64_t>(length) + n_new > kv_.capacity())
      throw Error("forward: slot " + std::to_string(slot) + " holds " + std::to_string(length) +
                  " tokens and gets " + std::to_string(n_new) +
                  " new ones, beyond its capacity of " + std::to_string(kv_.capacity()) +
                  " tokens");
  }

  const int32_t* positions = batch.positions.data();
  if (batch.positions.empty()) {
    im.positions.resize(batch.tokens.size());
    for (size_t s = 0; s < n_seqs; ++s) {
      const int32_t length = kv_.length(batch.slots[s]);
      for (int32_t i = batch.offsets[s]; i < batch.offsets[s + 1]; ++i)
        im.positions[static_cast<size_t>(i)] = length + (i - batch.offsets[s]);
    }
    positions = im.positions.data();
  }

  const int64_t h = hidden();
  im.x.resize(static_cast<size_t>(n_tokens * h));
  embed(batch.tokens, im.x.data());

  ts_batch b{};
  b.struct_size = sizeof(ts_batch);
  b.n_seqs = static_cast<int32_t>(n_seqs);
  b.n_tokens = n_tokens;
  b.slots = batch.slots.data();
  b.offsets = batch.offsets.data();
  b.positions = positions;
  b.tree_masks = batch.tree_masks.empty() ? nullptr : batch.tree_masks.data();
  b.flags = batch.row_invariant ? static_cast<uint32_t>(TS_BATCH_ROW_INVARIANT) : 0u;
  for (int32_t layer = 0; layer < num_layers(); ++layer) run_layer(layer, b, im.x.data(), n_tokens);

  // Only now: every layer has written its rows at the old lengths.
  for (size_t s = 0; s < n_seqs; ++s)
    kv_.set_length(batch.slots[s],
                   kv_.length(batch.slots[s]) + batch.offsets[s + 1] - batch.offsets[s]);

  if (logits == nullptr && hidden_out == nullptr) return;
  if (batch.last_only) {
    im.last_rows.resize(n_seqs * static_cast<size_t>(h));
    for (size_t s = 0; s < n_seqs; ++s)
      std::memcpy(im.last_rows.data() + s * static_cast<size_t>(h),
                  im.x.data() + static_cast<int64_t>(batch.offsets[s + 1] - 1) * h,
                  static_cast<size_t>(h) * sizeof(float));
    final_norm_and_head(im.last_rows.data(), static_cast<int32_t>(n_seqs), logits, hidden_out,
                        batch.row_invariant);
  } else {
    final_norm_and_head(im.x.data(), n_tokens, logits, hidden_out, batch.row_invariant);
  }
}

void Model::swap_block(int32_t layer, ts_kind kind, const BlockSpec& spec) {
  if (layer < 0 || layer >= num_layers())
    throw Error("swap_block: layer " + std::to_string(layer) + " out of range [0, " +
                std::to_string(num_layers()) + ")");
  if (kind != TS_KIND_ATTENTION && kind != TS_KIND_FFN)
    throw Error(std::string("swap_block: kind ") + kind_name(kind) +
                " cannot be swapped; expected attention or ffn");
  Impl& im = *impl_;
  const auto index = static_cast<size_t>(layer);

  // Everything that can fail happens before the first change.
  SubBlock fresh = im.build(*this, layer, kind, spec);
  BlockSpec spec_copy = spec;
  std::vector<KvLayerShape> shapes = im.kv_shapes;
  KvCache new_cache;
  bool kv_changed = false;
  if (kind == TS_KIND_ATTENTION && !same_kv_shape(shapes[index], fresh.kv)) {
    shapes[index] = fresh.kv;
    new_cache = KvCache(shapes, kv_.slots(), kv_.capacity());
    kv_changed = true;
  }

  // Commit (no-throw from here). The old block is destroyed with `fresh`.
  LayerSpec& ls = manifest_.layers[index];
  if (kind == TS_KIND_ATTENTION) {
    std::swap(im.attention[index], fresh);
    ls.attention = std::move(spec_copy);
  } else {
    std::swap(im.ffn[index], fresh);
    ls.ffn = std::move(spec_copy);
  }
  if (kv_changed) {
    im.kv_shapes = std::move(shapes);
    kv_ = std::move(new_cache);
  }
}

void Model::add_weights(const std::string& name, Tensor t) {
  // WeightStore::add replaces a tensor of the same name; blocks built earlier hold their
  // own reference to the old one, so it stays alive until they are swapped out.
  // A quantised tensor stays so only as "stored" weights; the block that reads it checks its
  // dtype when it is built.
  const ts_dtype want = run_dtype(manifest_.runtime, t, ~0u);
  if (t.dtype() != want) t = t.to(want);
  weights_.add(name, std::move(t));
}

void Model::reset(int32_t slot) {
  if (slot < 0 || slot >= kv_.slots())
    throw Error("reset: slot " + std::to_string(slot) + " out of range [0, " +
                std::to_string(kv_.slots()) + ")");
  kv_.set_length(slot, 0);
}

const Tensor& Model::lm_head() const {
  return impl_->lm_head;
}

void Model::compact_kv(int32_t slot, int32_t first_row, const int32_t* keep, int32_t n_keep) {
  if (slot < 0 || slot >= kv_.slots())
    throw Error("compact_kv: slot " + std::to_string(slot) + " out of range [0, " +
                std::to_string(kv_.slots()) + ")");
  const int32_t length = kv_.length(slot);
  if (first_row < 0 || first_row > length)
    throw Error("compact_kv: first_row " + std::to_string(first_row) + " of slot " +
                std::to_string(slot) + ", expected 0 <= first_row <= length " +
                std::to_string(length));
  if (n_keep < 0 || (n_keep > 0 && keep == nullptr))
    throw Error("compact_kv: n_keep is " + std::to_string(n_keep) +
                (keep == nullptr ? " with no keep list" : "") + "; expected n_keep >= 0");
  for (int32_t i = 0; i < n_keep; ++i) {
    if (keep[i] < 0 || first_row + keep[i] >= length || (i > 0 && keep[i] <= keep[i - 1]))
      throw Error("compact_kv: keep[" + std::to_string(i) + "] = " + std::to_string(keep[i]) +
                  " in slot " + std::to_string(slot) + "; expected ascending indices below " +
                  std::to_string(length - first_row) + " (length " + std::to_string(length) +
                  " - first_row " + std::to_string(first_row) + ")");
  }

  Impl& im = *impl_;
  bool any_plugin = false;
  for (int32_t layer = 0; layer < num_layers(); ++layer)
    any_plugin = any_plugin || (kv_.has_layer(layer) &&
                                im.attention[static_cast<size_t>(layer)].block->has_compact_kv());
  if (!any_plugin) {
    kv_.compact(slot, first_row, keep, n_keep);
    return;
  }
  for (int32_t layer = 0; layer < num_layers(); ++layer) {
    if (!kv_.has_layer(layer)) continue;
    ts_kv_layer kv = kv_.layer_view(layer);
    Block& block = *im.attention[static_cast<size_t>(layer)].block;
    if (block.has_compact_kv()) {
      block.compact_kv(kv, slot, first_row, keep, n_keep);
    } else {
      sdk::move_kv_rows(kv.k, slot, first_row, keep, n_keep);
      sdk::move_kv_rows(kv.v, slot, first_row, keep, n_keep);
    }
  }
  kv_.set_length(slot, first_row + n_keep);
}

}  // namespace tessera
