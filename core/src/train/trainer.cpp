// The trainer: forward through the model keeping what backward needs, the objective, backward
// in reverse, AdamW with clipping and the schedule.
#include <tessera/engine/error.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/formats/safetensors.hpp>
#include <tessera/tools/staging_folder.hpp>
#include <tessera/train/losses.hpp>
#include <tessera/train/ops.hpp>
#include <tessera/train/trainer.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>

namespace tessera::train {
namespace {

bool has_wildcard(const std::string& pattern) {
  return pattern.find_first_of("*?") != std::string::npos;
}

bool glob(const char* p, const char* s) {
  const char* star = nullptr;
  const char* resume = nullptr;
  while (*s != '\0') {
    if (*p == '*') {
      star = p++;
      resume = s;
    } else if (*p == '?' || *p == *s) {
      ++p;
      ++s;
    } else if (star != nullptr) {
      p = star + 1;
      s = ++resume;
    } else {
      return false;
    }
  }
  while (*p == '*') ++p;
  return *p == '\0';
}

// Bytes of activation memory in use, and their high-water mark.
struct Meter {
  uint64_t now = 0, peak = 0;
  void add(uint64_t bytes) {
    now += bytes;
    peak = std::max(peak, now);
  }
  void sub(uint64_t bytes) { now -= std::min(now, bytes); }
};

// Subs are kept attention, FFN, attention, FFN, ...: k 0 for the attention, 1 for the FFN.
size_t sub_index(int32_t layer, int k) {
  return 2 * static_cast<size_t>(layer) + static_cast<size_t>(k);
}

uint64_t float_bytes(int64_t n) {
  return static_cast<uint64_t>(n) * sizeof(float);
}

}  // namespace

bool name_matches(const std::string& pattern, const std::string& name) {
  if (!has_wildcard(pattern)) return name.compare(0, pattern.size(), pattern) == 0;
  return glob(pattern.c_str(), name.c_str());
}

// ------------------------------------------------------------------------ Impl

struct Trainer::Impl {
  struct Entry {
    ParamState state;
    Tensor model;  // the model's tensor (shares storage with the blocks' views)
    int32_t layer = -1;
    int32_t kind = -1;
  };

  // What a block's ts_grads points at.
  struct GradsContext {
    Impl* impl = nullptr;
    std::string prefix;
    std::string label;
    ts_grads c{};
  };

  // One attention or FFN block of one layer.
  struct Sub {
    int32_t layer = 0;
    ts_kind kind = TS_KIND_ATTENTION;
    int32_t position = 0;    // in the order of the forward: embedding 0, then 1, 2, ...
    Block* block = nullptr;  // nullptr: an identity (skipped with its norm)
    const float* norm = nullptr;
    Entry* norm_param = nullptr;
    std::unique_ptr<GradsContext> grads;
    bool needs_grad_x = false;  // its norm trains, or something before it
  };

  // A block's training workspace. The meter counts its bytes while it is held; the storage
  // stays from step to step, so that a step faults in no fresh pages (as the vectors keep
  // their capacity). Blocks write what they keep before reading it.
  struct Workspace {
    Tensor store;
    uint64_t bytes = 0;  // held now
    void* raw() const { return bytes == 0 ? nullptr : store.raw(); }
  };

  // What one sub-block keeps from the forward to the backward.
  struct SubTape {
    std::vector<float> x;  // its residual input (the FFN's; the attention's is the layer's)
    std::vector<float> normed, inv;
    Workspace workspace;
  };

  // A micro-batch laid out for the blocks.
  struct Prepared {
    std::vector<int32_t> slots, offsets, positions;
    ts_batch b{};
    int64_t n = 0;
  };

  Model& model;
  TrainerConfig config;
  std::unique_ptr<Objective> objective;
  const ts_host* host = nullptr;
  WeightPlan plan;
  int64_t hidden = 0, vocab = 0;
  int32_t layers = 0;
  double eps = 0;
  std::vector<std::unique_ptr<Entry>> entries;  // sorted by name
  std::map<std::string, Entry*> by_name;
  std::vector<Sub> subs;  // attention of layer l at 2l, its FFN at 2l + 1
  int32_t earliest = INT_MAX;
  int32_t head_position = 0;
  Tensor embed, head, final_norm;
  Entry* embed_param = nullptr;
  Entry* head_param = nullptr;  // the embedding's when tied
  Entry* final_norm_param = nullptr;
  int64_t step = 0, tokens_seen = 0;

  // Forward state of one micro-batch.
  Prepared prepared;
  std::vector<std::vector<float>> layer_in;  // each layer's residual input
  std::vector<SubTape> tape;                 // per sub
  std::vector<float> final_x, final_inv, final_h, logits;
  std::vector<float> stream, y, grad, grad_normed, grad_h, final_hidden_grad;
  std::vector<std::vector<float>> layer_grads;
  Workspace recompute_scratch;  // recompute_layer's run of an attention block
  Meter meter;
  MemoryReport current;  // of the micro-batch running
  MemoryReport memory;   // of the last one that ran backward

  // State of block_forward for block_backward.
  struct BlockRun {
    Sub* sub = nullptr;
    Prepared prepared;
    std::vector<float> x, normed, inv;
    Tensor workspace;
  } block_run;

  Impl(Model& m, const PluginRegistry& registry, TrainerConfig c, std::unique_ptr<Objective> o)
      : model(m), config(std::move(c)), objective(std::move(o)) {
    check_config();
    host = model.pool().host();
    hidden = model.hidden();
    vocab = model.vocab();
    layers = model.num_layers();
    eps = model.manifest().model.rms_norm_eps;
    plan = plan_weights(model.manifest(), registry, PlanOptions{TS_DEVICE_CPU, nullptr, host});
    make_entries();
    make_subs();
    const bool tied = model.manifest().model.tie_embeddings;
    embed = model.weights().get("model.embed_tokens.weight");
    final_norm = model.weights().get("model.norm.weight");
    head = tied ? embed : model.weights().get("lm_head.weight");
    embed_param = find("model.embed_tokens.weight");
    final_norm_param = find("model.norm.weight");
    head_param = tied ? embed_param : find("lm_head.weight");
    head_position = 2 * layers + 1;
    for (Sub& s : subs) s.needs_grad_x = s.norm_param != nullptr || earliest < s.position;
  }

  void check_config() const {
    if (!objective) throw Error("trainer: no objective was given");
    const AdamWConfig& a = config.adamw;
    if (!(a.lr > 0) || !std::isfinite(a.lr))
      throw Error("trainer: adamw lr " + std::to_string(a.lr) + "; expected > 0");
    if (!(a.beta1 >= 0 && a.beta1 < 1) || !(a.beta2 >= 0 && a.beta2 < 1))
      throw Error("trainer: adamw betas " + std::to_string(a.beta1) + ", " +
                  std::to_string(a.beta2) + "; expected each in [0, 1)");
    if (!(a.eps > 0)) throw Error("trainer: adamw eps " + std::to_string(a.eps) + "; expected > 0");
    if (!(a.weight_decay >= 0))
      throw Error("trainer: adamw weight_decay " + std::to_string(a.weight_decay) +
                  "; expected >= 0");
    if (!(config.clip_norm >= 0))
      throw Error("trainer: clip_norm " + std::to_string(config.clip_norm) +
                  "; expected >= 0 (0: no clipping)");
    if (config.recompute < TS_RECOMPUTE_NONE || config.recompute > TS_RECOMPUTE_ALL)
      throw Error("trainer: recompute " + std::to_string(config.recompute) +
                  "; expected 0 (none), 1 (core) or 2 (all)");
    const ScheduleConfig& s = config.schedule;
    if (s.warmup_steps < 0 || s.total_steps < 0)
      throw Error("trainer: schedule warmup_steps " + std::to_string(s.warmup_steps) +
                  " and total_steps " + std::to_string(s.total_steps) + "; expected >= 0");
    if (!(s.min_lr_ratio >= 0 && s.min_lr_ratio <= 1))
      throw Error("trainer: schedule min_lr_ratio " + std::to_string(s.min_lr_ratio) +
                  "; expected in [0, 1]");
  }

  Entry* find(const std::string& name) const {
    const auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  }

  bool trains(const std::string& name) const {
    bool yes = config.train_only.empty();
    for (const std::string& p : config.train_only) yes = yes || name_matches(p, name);
    for (const std::string& p : config.frozen) yes = yes && !name_matches(p, name);
    return yes;
  }

  void make_entries() {
    for (const auto* patterns : {&config.frozen, &config.train_only})
      for (const std::string& p : *patterns) {
        const bool any =
            std::any_of(plan.tensors.begin(), plan.tensors.end(),
                        [&](const PlannedTensor& t) { return name_matches(p, t.name); });
        if (!any)
          throw Error("trainer: the pattern '" + p + "' (" +
                      (patterns == &config.frozen ? "frozen" : "train_only") +
                      ") matches no tensor of the model");
      }
    for (const BlockRef& r : config.train_blocks)
      if (r.layer < 0 || r.layer >= model.num_layers() ||
          (r.kind != TS_KIND_ATTENTION && r.kind != TS_KIND_FFN))
        throw Error("trainer: train_blocks names layer " + std::to_string(r.layer) + " kind " +
                    std::to_string(r.kind) + "; expected a layer in [0, " +
                    std::to_string(model.num_layers()) + ") and attention or ffn");
    auto in_blocks = [&](const PlannedTensor& t) {
      if (config.train_blocks.empty()) return true;
      return std::any_of(config.train_blocks.begin(), config.train_blocks.end(),
                         [&](const BlockRef& r) { return r.layer == t.layer && r.kind == t.kind; });
    };
    for (const PlannedTensor& t : plan.tensors) {
      if (!trains(t.name) || !in_blocks(t)) continue;
      const Tensor& stored = model.weights().get(t.name);
      auto e = std::make_unique<Entry>();
      e->model = stored;
      e->layer = t.layer;
      e->kind = t.kind;
      ParamState& p = e->state;
      p.name = t.name;
      p.master = stored.dtype() == TS_F32 ? stored : stored.to(TS_F32);
      p.grad = Tensor(stored.shape(), TS_F32);
      p.m = Tensor(stored.shape(), TS_F32);
      p.v = Tensor(stored.shape(), TS_F32);
      p.grad.zero();
      p.m.zero();
      p.v.zero();
      p.decay = config.adamw.weight_decay > 0 && (stored.ndim() >= 2 || config.adamw.decay_vectors);
      const int32_t position =
          t.layer < 0 ? (t.name == "model.embed_tokens.weight" ? 0 : 2 * model.num_layers() + 1)
                      : 2 * t.layer + (t.kind == TS_KIND_FFN ? 2 : 1);
      earliest = std::min(earliest, position);
      by_name[t.name] = e.get();
      entries.push_back(std::move(e));
    }
    if (entries.empty())
      throw Error("trainer: every tensor of the model is frozen; nothing would train");
  }

  void make_subs() {
    for (int32_t layer = 0; layer < layers; ++layer)
      for (const ts_kind kind : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
        Sub s;
        s.layer = layer;
        s.kind = kind;
        s.position = 2 * layer + (kind == TS_KIND_FFN ? 2 : 1);
        Block& block = kind == TS_KIND_ATTENTION ? model.attention(layer) : model.ffn(layer);
        if (!block.identity()) {
          block.require_training();
          s.block = &block;
          const std::string norm_name = block_norm_name(layer, kind);
          s.norm = model.weights().get(norm_name).data<float>();
          s.norm_param = find(norm_name);
          s.grads = std::make_unique<GradsContext>();
          s.grads->impl = this;
          s.grads->prefix = plan.block(layer, kind).prefix;
          s.grads->label = block.label();
          s.grads->c.ctx = s.grads.get();
          s.grads->c.get = &grads_get;
        }
        subs.push_back(std::move(s));
      }
  }

  static int grads_get(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
    auto* g = static_cast<GradsContext*>(ctx);
    auto fail = [&](const std::string& message) {
      const size_t n = std::min(message.size(), sizeof(err->message) - 1);
      if (err != nullptr) {
        std::memcpy(err->message, message.data(), n);
        err->message[n] = '\0';
      }
      return TS_ERROR;
    };
    if (name == nullptr || out == nullptr)
      return fail(g->label + ": grads.get with NULL arguments");
    const std::string full = g->prefix + name;
    *out = ts_tensor{};
    if (Entry* e = g->impl->find(full)) {
      *out = e->state.grad.view();
      return TS_OK;
    }
    if (g->impl->plan.find(full) != nullptr) return TS_OK;  // frozen: data NULL
    return fail(g->label + ": grads.get('" + std::string(name) + "'): '" + full +
                "' is not a weight this block declared, so the trainer keeps no gradient for it");
  }

  // ------------------------------------------------------------------ batches

  void prepare_layout(Prepared& p, const std::vector<int32_t>& offsets,
                      const std::vector<int32_t>& positions) const {
    const auto n_seqs = static_cast<int32_t>(offsets.size() - 1);
    p.offsets = offsets;
    p.slots.resize(static_cast<size_t>(n_seqs));
    p.positions.clear();
    for (int32_t s = 0; s < n_seqs; ++s) {
      p.slots[static_cast<size_t>(s)] = s;
      for (int32_t i = offsets[s]; i < offsets[s + 1]; ++i) p.positions.push_back(i - offsets[s]);
    }
    if (!positions.empty()) p.positions = positions;
    p.n = offsets.back();
    p.b = ts_batch{};
    p.b.struct_size = sizeof(ts_batch);
    p.b.n_seqs = n_seqs;
    p.b.n_tokens = static_cast<int32_t>(p.n);
    p.b.slots = p.slots.data();
    p.b.offsets = p.offsets.data();
    p.b.positions = p.positions.data();
    p.b.tree_masks = nullptr;
  }

  void hold(std::vector<float>& v, int64_t n) {
    v.resize(static_cast<size_t>(n));
    meter.add(float_bytes(n));
  }
  void drop(std::vector<float>& v) {
    meter.sub(float_bytes(static_cast<int64_t>(v.size())));
    v.clear();
  }
  void hold(Workspace& w, Block& block, const ts_batch& b, ts_recompute policy) {
    const uint64_t bytes = block.train_workspace(b, policy);
    meter.add(bytes);
    w.bytes = bytes;
    if (bytes > w.store.bytes()) w.store = Tensor({static_cast<int64_t>(bytes)}, TS_U8);
  }
  void drop(Workspace& w) {
    meter.sub(w.bytes);
    w.bytes = 0;
  }

  // ------------------------------------------------------------------ forward

  // y = block(norm(x)) for one sub; keeps its normalised input, scales and workspace in `t`.
  void sub_forward(Sub& s, SubTape& t, const float* x, float* out, ts_recompute policy) {
    const int64_t n = prepared.n;
    hold(t.normed, n * hidden);
    hold(t.inv, n);
    rmsnorm_forward(host, x, s.norm, eps, n, hidden, t.normed.data(), t.inv.data());
    hold(t.workspace, *s.block, prepared.b, policy);
    const ts_tensor xv = f32_matrix_view(t.normed.data(), n, hidden);
    ts_tensor yv = f32_matrix_view(out, n, hidden);
    ts_block_io io{};
    io.struct_size = sizeof(ts_block_io);
    io.x = &xv;
    io.y = &yv;
    io.batch = &prepared.b;
    io.kv = nullptr;
    s.block->forward_train(io, policy, t.workspace.raw());
  }

  // Runs the micro-batch forward to the logits (in `logits`), keeping what backward needs.
  void forward(const TrainBatch& batch) {
    const ts_recompute policy = config.recompute;
    prepare_layout(prepared, batch.offsets, batch.positions);
    const int64_t n = prepared.n;
    meter = Meter{};
    current = MemoryReport{};
    current.policy = policy;
    current.layers.assign(static_cast<size_t>(layers), LayerMemory{});
    for (size_t s = 0; s + 1 < batch.offsets.size(); ++s)
      current.lengths.push_back(batch.offsets[s + 1] - batch.offsets[s]);
    layer_in.resize(static_cast<size_t>(layers));
    tape.resize(subs.size());

    hold(stream, n * hidden);
    hold(y, n * hidden);
    model.embed(batch.tokens, stream.data());
    for (int32_t l = 0; l < layers; ++l) {
      const uint64_t before = meter.now;
      hold(layer_in[static_cast<size_t>(l)], n * hidden);
      std::copy(stream.begin(), stream.end(), layer_in[static_cast<size_t>(l)].begin());
      uint64_t workspace = 0;
      for (int k = 0; k < 2; ++k) {
        Sub& s = subs[sub_index(l, k)];
        SubTape& t = tape[sub_index(l, k)];
        if (s.block == nullptr) continue;
        if (k == 1 && policy != TS_RECOMPUTE_ALL) {
          hold(t.x, n * hidden);
          std::copy(stream.begin(), stream.end(), t.x.begin());
        }
        sub_forward(s, t, stream.data(), y.data(), policy);
        workspace += t.workspace.bytes;
        if (policy == TS_RECOMPUTE_ALL) {  // only the workspace (of ALL) stays
          drop(t.normed);
          drop(t.inv);
        }
        residual_add(stream.data(), y.data(), n * hidden);
      }
      LayerMemory& lm = current.layers[static_cast<size_t>(l)];
      lm.workspace_bytes = workspace;
      lm.host_bytes = meter.now - before - workspace;
    }
    drop(y);
    const uint64_t before_head = meter.now;
    final_x.swap(stream);  // the residual stream's buffer becomes the final norm's input
    hold(final_inv, n);
    hold(final_h, n * hidden);
    rmsnorm_forward(host, final_x.data(), final_norm.data<float>(), eps, n, hidden, final_h.data(),
                    final_inv.data());
    hold(logits, n * vocab);
    const cpu::MatrixView w{head.raw(), head.dtype(), vocab, hidden, hidden};
    lm_head_forward(host, final_h.data(), n, w, logits.data());
    current.head_bytes = meter.now - before_head + float_bytes(n * hidden);
  }

  ModelOutputs outputs(const TrainBatch& batch) const {
    ModelOutputs out;
    out.batch = &batch;
    out.host = host;
    out.n_tokens = prepared.n;
    out.hidden = hidden;
    out.vocab = vocab;
    out.logits = logits.data();
    out.final_hidden = final_h.data();
    if (objective->uses_layer_outputs())
      for (int32_t l = 0; l < layers; ++l)
        out.layer_outputs.push_back(l + 1 < layers ? layer_in[static_cast<size_t>(l) + 1].data()
                                                   : final_x.data());
    return out;
  }

  // Frees the forward's buffers (evaluation, or the end of a backward).
  void release_forward() {
    for (auto& v : layer_in) drop(v);
    for (SubTape& t : tape) {
      drop(t.x);
      drop(t.normed);
      drop(t.inv);
      drop(t.workspace);
    }
    drop(final_x);
    drop(final_inv);
    drop(final_h);
    drop(logits);
  }

  // ----------------------------------------------------------------- backward

  // Given `grad` = d loss / d (the sub's output added to the stream), runs the block's and its
  // norm's backward and adds d loss / d x to `grad` (the residual path already carries it).
  void sub_backward(Sub& s, SubTape& t, const float* x, ts_recompute policy) {
    const int64_t n = prepared.n;
    const ts_tensor xv = f32_matrix_view(t.normed.data(), n, hidden);
    const ts_tensor gy = f32_matrix_view(grad.data(), n, hidden);
    ts_tensor gx = f32_matrix_view(grad_normed.data(), n, hidden);
    ts_backward_io io{};
    io.struct_size = sizeof(ts_backward_io);
    io.x = &xv;
    io.grad_y = &gy;
    io.grad_x = s.needs_grad_x ? &gx : nullptr;
    io.batch = &prepared.b;
    io.workspace = t.workspace.raw();
    io.recompute = policy;
    io.grads = &s.grads->c;
    s.block->backward(io);
    if (!s.needs_grad_x) return;
    rmsnorm_backward(host, x, s.norm, t.inv.data(), grad_normed.data(), n, hidden,
                     grad_normed.data(),
                     s.norm_param != nullptr ? s.norm_param->state.grad.data<float>() : nullptr);
    residual_add(grad.data(), grad_normed.data(), n * hidden);
  }

  // Layer l again from its input (ALL): the FFN's residual input and both norms' outputs.
  void recompute_layer(int32_t l) {
    const int64_t n = prepared.n;
    Sub& attention = subs[sub_index(l, 0)];
    Sub& ffn = subs[sub_index(l, 1)];
    SubTape& ta = tape[sub_index(l, 0)];
    SubTape& tf = tape[sub_index(l, 1)];
    const std::vector<float>& input = layer_in[static_cast<size_t>(l)];
    if (ffn.block != nullptr) {
      hold(tf.x, n * hidden);
      std::copy(input.begin(), input.end(), tf.x.begin());
    }
    if (attention.block != nullptr) {
      hold(ta.normed, n * hidden);
      hold(ta.inv, n);
      rmsnorm_forward(host, input.data(), attention.norm, eps, n, hidden, ta.normed.data(),
                      ta.inv.data());
      if (ffn.block != nullptr) {
        // The attention's output, from a run of its own (its kept workspace stays for its
        // backward).
        Workspace& scratch = recompute_scratch;
        hold(scratch, *attention.block, prepared.b, TS_RECOMPUTE_ALL);
        hold(y, n * hidden);
        const ts_tensor xv = f32_matrix_view(ta.normed.data(), n, hidden);
        ts_tensor yv = f32_matrix_view(y.data(), n, hidden);
        ts_block_io io{};
        io.struct_size = sizeof(ts_block_io);
        io.x = &xv;
        io.y = &yv;
        io.batch = &prepared.b;
        attention.block->forward_train(io, TS_RECOMPUTE_ALL, scratch.raw());
        drop(scratch);
        residual_add(tf.x.data(), y.data(), n * hidden);
        drop(y);
      }
    }
    if (ffn.block != nullptr) {
      hold(tf.normed, n * hidden);
      hold(tf.inv, n);
      rmsnorm_forward(host, tf.x.data(), ffn.norm, eps, n, hidden, tf.normed.data(), tf.inv.data());
    }
  }

  void backward(const TrainBatch& batch) {
    const ts_recompute policy = config.recompute;
    const int64_t n = prepared.n;
    // The head: logits now hold their gradient.
    const bool need_h = final_norm_param != nullptr || earliest < head_position;
    if (need_h) hold(grad_h, n * hidden);
    const cpu::MatrixView w{head.raw(), head.dtype(), vocab, hidden, hidden};
    lm_head_backward(host, final_h.data(), logits.data(), n, w, need_h ? grad_h.data() : nullptr,
                     head_param != nullptr ? head_param->state.grad.data<float>() : nullptr);
    drop(logits);
    if (!need_h) return;
    if (!final_hidden_grad.empty())
      residual_add(grad_h.data(), final_hidden_grad.data(), n * hidden);
    hold(grad, n * hidden);
    rmsnorm_backward(
        host, final_x.data(), final_norm.data<float>(), final_inv.data(), grad_h.data(), n, hidden,
        grad.data(),
        final_norm_param != nullptr ? final_norm_param->state.grad.data<float>() : nullptr);
    drop(grad_h);
    drop(final_h);
    drop(final_inv);
    if (earliest >= head_position) return;
    hold(grad_normed, n * hidden);
    for (int32_t l = layers - 1; l >= 0 && 2 * l + 2 >= earliest; --l) {
      if (!layer_grads.empty())
        residual_add(grad.data(), layer_grads[static_cast<size_t>(l)].data(), n * hidden);
      if (policy == TS_RECOMPUTE_ALL) recompute_layer(l);
      for (int k = 1; k >= 0; --k) {
        Sub& s = subs[sub_index(l, k)];
        SubTape& t = tape[sub_index(l, k)];
        if (s.block != nullptr && s.position >= earliest)
          sub_backward(s, t, k == 1 ? t.x.data() : layer_in[static_cast<size_t>(l)].data(), policy);
        drop(t.x);
        drop(t.normed);
        drop(t.inv);
        drop(t.workspace);
      }
      drop(layer_in[static_cast<size_t>(l)]);
    }
    if (embed_param != nullptr)
      embedding_backward(batch.tokens.data(), n, grad.data(), hidden,
                         embed_param->state.grad.data<float>());
  }

  // One micro-batch: forward, objective (sum, its gradient times scale), backward.
  double run_micro_batch(const TrainBatch& batch, double scale, bool with_grads) {
    objective->prepare(batch);
    forward(batch);
    const int64_t n = prepared.n;
    ModelOutputs out = outputs(batch);
    OutputGrads grads;
    OutputGrads* g = nullptr;
    layer_grads.clear();
    final_hidden_grad.clear();
    if (with_grads) {
      grads.logits = logits.data();  // in place
      hold(final_hidden_grad, n * hidden);
      std::fill(final_hidden_grad.begin(), final_hidden_grad.end(), 0.0f);
      grads.final_hidden = final_hidden_grad.data();
      if (objective->uses_layer_outputs()) {
        layer_grads.resize(static_cast<size_t>(layers));
        for (auto& v : layer_grads) {
          hold(v, n * hidden);
          std::fill(v.begin(), v.end(), 0.0f);
          grads.layer_outputs.push_back(v.data());
        }
      }
      g = &grads;
    }
    const double sum = objective->evaluate(out, g, scale);
    if (with_grads) {
      backward(batch);
      for (auto& v : layer_grads) drop(v);
      drop(final_hidden_grad);
      drop(grad);
      drop(grad_normed);
    }
    release_forward();
    if (with_grads) {
      memory = current;
      memory.peak_bytes = meter.peak;
    }
    return sum;
  }

  // Checks the batches and returns the step's normaliser.
  int64_t check_batches(const std::vector<TrainBatch>& micro_batches) const {
    if (micro_batches.empty()) throw Error("trainer: a step needs at least one micro-batch");
    int64_t count = 0;
    for (size_t i = 0; i < micro_batches.size(); ++i) {
      try {
        check_batch(micro_batches[i], static_cast<int32_t>(vocab));
      } catch (const Error& e) {
        throw Error("micro-batch " + std::to_string(i) + ": " + e.what());
      }
      count += objective->count(micro_batches[i]);
    }
    if (count <= 0)
      throw Error("trainer: the micro-batches have nothing to learn from (the objective '" +
                  objective->name() + "' counts 0 tokens with a target)");
    return count;
  }

  void zero_gradients() {
    for (auto& e : entries) e->state.grad.zero();
  }

  double compute_gradients(const std::vector<TrainBatch>& micro_batches, int64_t* count_out) {
    const int64_t count = check_batches(micro_batches);
    zero_gradients();
    const double scale = 1.0 / static_cast<double>(count);
    double sum = 0;
    for (const TrainBatch& b : micro_batches) sum += run_micro_batch(b, scale, true);
    if (count_out != nullptr) *count_out = count;
    return sum / static_cast<double>(count);
  }

  // Clips the gradients of `params` and applies AdamW to them.
  StepStats optimizer_step(const std::vector<Entry*>& params) {
    StepStats stats;
    const int64_t next = step + 1;
    std::vector<GradSpan> spans;
    spans.reserve(params.size());
    for (Entry* e : params) spans.push_back({e->state.grad.data<float>(), e->state.grad.numel()});
    stats.grad_norm = global_norm(host, spans);
    if (!std::isfinite(stats.grad_norm))
      throw Error("trainer: step " + std::to_string(next) + ": the gradient norm is " +
                  std::to_string(stats.grad_norm) + "; the weights were not updated");
    stats.clip_factor = clip_factor(stats.grad_norm, config.clip_norm);
    stats.lr = scheduled_lr(config.adamw.lr, config.schedule, next);
    for (Entry* e : params) {
      ParamState& p = e->state;
      adamw_update(host, config.adamw, stats.lr, next, p.decay, p.master.data<float>(),
                   p.grad.data<float>(), p.m.data<float>(), p.v.data<float>(), p.master.numel(),
                   static_cast<float>(stats.clip_factor));
      if (e->model.raw() != p.master.raw())
        convert(p.master.raw(), TS_F32, e->model.raw(), e->model.dtype(), p.master.numel());
    }
    step = next;
    stats.step = step;
    return stats;
  }

  std::vector<Entry*> all_params() const {
    std::vector<Entry*> out;
    for (const auto& e : entries) out.push_back(e.get());
    return out;
  }

  // ------------------------------------------------------------------- blocks

  Sub& sub_of(int32_t layer, ts_kind kind, const char* what) {
    if (layer < 0 || layer >= layers)
      throw Error(std::string(what) + ": layer " + std::to_string(layer) + " out of range [0, " +
                  std::to_string(layers) + ")");
    if (kind != TS_KIND_ATTENTION && kind != TS_KIND_FFN)
      throw Error(std::string(what) + ": expected an attention or ffn block");
    Sub& s = subs[sub_index(layer, kind == TS_KIND_FFN ? 1 : 0)];
    if (s.block == nullptr)
      throw Error(std::string(what) + ": layer " + std::to_string(layer) + " " +
                  (kind == TS_KIND_FFN ? "ffn" : "attention") +
                  " is an identity (no-op): it has nothing to train");
    return s;
  }

  void check_block_batch(const BlockBatch& b, const char* what) const {
    TrainBatch layout;
    layout.offsets = b.offsets;
    layout.positions = b.positions;
    if (!b.offsets.empty()) layout.tokens.assign(static_cast<size_t>(b.offsets.back()), 0);
    check_batch(layout, static_cast<int32_t>(vocab));
    const size_t want = static_cast<size_t>(b.offsets.back()) * static_cast<size_t>(hidden);
    if (b.input.size() != want || (!b.target.empty() && b.target.size() != want))
      throw Error(std::string(what) + ": input has " + std::to_string(b.input.size()) +
                  " and target " + std::to_string(b.target.size()) + " values; expected " +
                  std::to_string(want) + " (n_tokens * hidden) each");
  }

  std::vector<Entry*> params_of(const Sub& s) const {
    std::vector<Entry*> out;
    for (const auto& e : entries)
      if (e->layer == s.layer && e->kind == s.kind) out.push_back(e.get());
    return out;
  }

  void block_forward(int32_t layer, ts_kind kind, const BlockBatch& batch, float* output) {
    Sub& s = sub_of(layer, kind, "block_forward");
    check_block_batch(batch, "block_forward");
    BlockRun& r = block_run;
    r = BlockRun{};
    prepare_layout(r.prepared, batch.offsets, batch.positions);
    const int64_t n = r.prepared.n;
    r.sub = &s;
    r.x = batch.input;
    r.normed.resize(static_cast<size_t>(n * hidden));
    r.inv.resize(static_cast<size_t>(n));
    rmsnorm_forward(host, r.x.data(), s.norm, eps, n, hidden, r.normed.data(), r.inv.data());
    const uint64_t bytes = s.block->train_workspace(r.prepared.b, config.recompute);
    if (bytes > 0) r.workspace = Tensor({static_cast<int64_t>(bytes)}, TS_U8);
    const ts_tensor xv = f32_matrix_view(r.normed.data(), n, hidden);
    ts_tensor yv = f32_matrix_view(output, n, hidden);
    ts_block_io io{};
    io.struct_size = sizeof(ts_block_io);
    io.x = &xv;
    io.y = &yv;
    io.batch = &r.prepared.b;
    s.block->forward_train(io, config.recompute, r.workspace.raw());
  }

  void block_backward(const float* grad_output, float* grad_input) {
    BlockRun& r = block_run;
    if (r.sub == nullptr) throw Error("block_backward: no block_forward ran before it");
    Sub& s = *r.sub;
    const int64_t n = r.prepared.n;
    const bool need_x = grad_input != nullptr || s.norm_param != nullptr;
    std::vector<float> gn(need_x ? static_cast<size_t>(n * hidden) : 0);
    const ts_tensor xv = f32_matrix_view(r.normed.data(), n, hidden);
    const ts_tensor gy = f32_matrix_view(grad_output, n, hidden);
    ts_tensor gx = f32_matrix_view(gn.data(), n, hidden);
    ts_backward_io io{};
    io.struct_size = sizeof(ts_backward_io);
    io.x = &xv;
    io.grad_y = &gy;
    io.grad_x = need_x ? &gx : nullptr;
    io.batch = &r.prepared.b;
    io.workspace = r.workspace.raw();
    io.recompute = config.recompute;
    io.grads = &s.grads->c;
    s.block->backward(io);
    if (need_x) {
      float* out = grad_input != nullptr ? grad_input : gn.data();
      rmsnorm_backward(host, r.x.data(), s.norm, r.inv.data(), gn.data(), n, hidden, out,
                       s.norm_param != nullptr ? s.norm_param->state.grad.data<float>() : nullptr);
    }
    r = BlockRun{};
  }

  // The block's normalised MSE over the micro-batches; with `grads`, also its gradients (added
  // to the buffers, zeroed first when `zero`). Without, only forwards run and no gradient
  // buffer is touched (held-out evaluation).
  double block_loss(int32_t layer, ts_kind kind, const std::vector<BlockBatch>& micro_batches,
                    bool grads, bool zero) {
    const char* what = grads ? "step_block" : "evaluate_blocks";
    Sub& s = sub_of(layer, kind, what);
    if (grads && params_of(s).empty())
      throw Error("step_block: nothing of " + s.grads->label +
                  " trains (its weights and its norm are frozen)");
    if (micro_batches.empty())
      throw Error(std::string(what) + ": a step needs at least one micro-batch");
    double norm = 0;
    for (size_t i = 0; i < micro_batches.size(); ++i) {
      const BlockBatch& b = micro_batches[i];
      check_block_batch(b, what);
      if (b.target.empty())
        throw Error(std::string(what) + ": micro-batch " + std::to_string(i) + " has no target");
      norm += squared_norm(b.target.data(), static_cast<int64_t>(b.target.size()));
    }
    if (!(norm > 0))
      throw Error(std::string(what) +
                  ": the parent's outputs are all zeros; the normalised MSE is undefined");
    if (grads && zero) zero_gradients();
    double sum = 0;
    for (const BlockBatch& b : micro_batches) {
      const auto size = static_cast<int64_t>(b.target.size());
      std::vector<float> out(static_cast<size_t>(size)), g(grads ? static_cast<size_t>(size) : 0);
      block_forward(layer, kind, b, out.data());
      sum +=
          squared_error(out.data(), b.target.data(), size, grads ? g.data() : nullptr, 1.0 / norm);
      if (grads)
        block_backward(g.data(), nullptr);
      else
        block_run = BlockRun{};
    }
    return sum / norm;
  }
};

// ------------------------------------------------------------------- Trainer

Trainer::Trainer(Model& model, const PluginRegistry& registry, TrainerConfig config,
                 std::unique_ptr<Objective> objective)
    : impl_(std::make_unique<Impl>(model, registry, std::move(config), std::move(objective))) {}

Trainer::~Trainer() = default;

StepStats Trainer::step(const std::vector<TrainBatch>& micro_batches) {
  Impl& im = *impl_;
  int64_t count = 0;
  const double loss = im.compute_gradients(micro_batches, &count);
  StepStats stats = im.optimizer_step(im.all_params());
  stats.loss = loss;
  stats.count = count;
  for (const TrainBatch& b : micro_batches) stats.tokens += static_cast<int64_t>(b.tokens.size());
  im.tokens_seen += stats.tokens;
  return stats;
}

double Trainer::compute_gradients(const std::vector<TrainBatch>& micro_batches) {
  return impl_->compute_gradients(micro_batches, nullptr);
}

double Trainer::evaluate(const std::vector<TrainBatch>& micro_batches) {
  Impl& im = *impl_;
  const int64_t count = im.check_batches(micro_batches);
  double sum = 0;
  for (const TrainBatch& b : micro_batches) sum += im.run_micro_batch(b, 0.0, false);
  return sum / static_cast<double>(count);
}

StepStats Trainer::step_block(int32_t layer, ts_kind kind,
                              const std::vector<BlockBatch>& micro_batches) {
  Impl& im = *impl_;
  const double loss = im.block_loss(layer, kind, micro_batches, true, true);
  StepStats stats = im.optimizer_step(im.params_of(im.sub_of(layer, kind, "step_block")));
  stats.loss = loss;
  for (const BlockBatch& b : micro_batches) stats.tokens += b.offsets.back();
  stats.count = stats.tokens;
  im.tokens_seen += stats.tokens;
  return stats;
}

StepStats Trainer::step_blocks(const std::vector<BlockStep>& blocks) {
  Impl& im = *impl_;
  if (blocks.empty()) throw Error("step_blocks: no block was given");
  std::vector<Impl::Entry*> params;
  std::set<const void*> seen;
  for (const BlockStep& b : blocks) {
    const auto& sub = im.sub_of(b.layer, b.kind, "step_blocks");
    if (!seen.insert(&sub).second)
      throw Error("step_blocks: layer " + std::to_string(b.layer) + " " +
                  (b.kind == TS_KIND_FFN ? "ffn" : "attention") + " is listed twice");
    for (Impl::Entry* e : im.params_of(sub)) params.push_back(e);
  }
  im.zero_gradients();
  double loss = 0;
  int64_t tokens = 0;
  for (const BlockStep& b : blocks) {
    loss += im.block_loss(b.layer, b.kind, b.micro_batches, true, false);
    for (const BlockBatch& m : b.micro_batches) tokens += m.offsets.back();
  }
  StepStats stats = im.optimizer_step(params);
  stats.loss = loss / static_cast<double>(blocks.size());
  stats.tokens = tokens;
  stats.count = tokens;
  im.tokens_seen += tokens;
  return stats;
}

double Trainer::evaluate_blocks(const std::vector<BlockStep>& blocks) {
  if (blocks.empty()) throw Error("evaluate_blocks: no block was given");
  double loss = 0;
  for (const BlockStep& b : blocks)
    loss += impl_->block_loss(b.layer, b.kind, b.micro_batches, false, false);
  return loss / static_cast<double>(blocks.size());
}

double Trainer::compute_block_gradients(int32_t layer, ts_kind kind,
                                        const std::vector<BlockBatch>& micro_batches) {
  return impl_->block_loss(layer, kind, micro_batches, true, true);
}

void Trainer::block_forward(int32_t layer, ts_kind kind, const BlockBatch& batch, float* output) {
  impl_->block_forward(layer, kind, batch, output);
}

void Trainer::block_backward(const float* grad_output, float* grad_input) {
  impl_->block_backward(grad_output, grad_input);
}

void Trainer::zero_gradients() {
  impl_->zero_gradients();
}

std::vector<std::string> Trainer::trainable() const {
  std::vector<std::string> names;
  for (const auto& e : impl_->entries) names.push_back(e->state.name);
  return names;
}

const ParamState* Trainer::state(const std::string& name) const {
  const Impl::Entry* e = impl_->find(name);
  return e == nullptr ? nullptr : &e->state;
}

const TrainerConfig& Trainer::config() const {
  return impl_->config;
}

int64_t Trainer::steps() const {
  return impl_->step;
}

MemoryReport Trainer::memory() const {
  const Impl& im = *impl_;
  MemoryReport report = im.memory;
  for (const auto& e : im.entries) {
    const uint64_t bytes = e->state.master.bytes();
    if (e->model.raw() != e->state.master.raw()) report.master_bytes += bytes;
    report.gradient_bytes += bytes;
    report.optimizer_bytes += 2 * bytes;
  }
  report.formula_bytes.clear();
  for (int32_t l = 0; l < im.layers; ++l) {
    const std::optional<LayerShape> shape = layer_shape(im.model.manifest(), l);
    report.formula_bytes.push_back(shape
                                       ? std::optional<double>(formula_layer_bytes(
                                             *shape, report.lengths, report.policy, sizeof(float)))
                                       : std::nullopt);
  }
  return report;
}

// ---------------------------------------------------------------- checkpoints

namespace {

constexpr const char* kWeightsFile = "weights.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kFormat = "tessera-trainer-checkpoint-1";

Tensor int64_scalar(int64_t value) {
  Tensor t({1}, TS_I64);
  *t.data<int64_t>() = value;
  return t;
}

void copy_converted(const Tensor& src, const Tensor& dst) {
  if (src.dtype() == dst.dtype())
    std::memcpy(dst.raw(), src.raw(), src.bytes());
  else
    convert(src.raw(), src.dtype(), dst.raw(), dst.dtype(), src.numel());
}

bool is_float(ts_dtype d) {
  return d == TS_F32 || d == TS_F16 || d == TS_BF16;
}

}  // namespace

void Trainer::save(const std::filesystem::path& folder, const SaveOptions& options) const {
  const Impl& im = *impl_;
  StagingFolder staging(folder, /*overwrite=*/true);

  WeightStore weights;
  for (const PlannedTensor& t : im.plan.tensors) {
    const Impl::Entry* e = im.find(t.name);
    weights.add(t.name, e != nullptr ? e->state.master : im.model.weights().get(t.name));
  }
  const std::filesystem::path weights_file = staging.path() / kWeightsFile;
  write_safetensors(weights_file, weights,
                    {{"format", kFormat}, {"step", std::to_string(im.step)}});
  if (options.after_file) options.after_file(weights_file);

  WeightStore state;
  for (const auto& e : im.entries) {
    state.add(e->state.name + ".exp_avg", e->state.m);
    state.add(e->state.name + ".exp_avg_sq", e->state.v);
  }
  state.add("trainer.step", int64_scalar(im.step));
  state.add("trainer.tokens", int64_scalar(im.tokens_seen));
  const TrainerConfig& c = im.config;
  const std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"step", std::to_string(im.step)},
      {"objective", im.objective->name()},
      {"recompute", recompute_policy_name(c.recompute)},
      {"adamw", "lr " + std::to_string(c.adamw.lr) + ", betas " + std::to_string(c.adamw.beta1) +
                    " " + std::to_string(c.adamw.beta2) + ", eps " + std::to_string(c.adamw.eps) +
                    ", weight_decay " + std::to_string(c.adamw.weight_decay)},
      {"schedule", "warmup " + std::to_string(c.schedule.warmup_steps) + ", total " +
                       std::to_string(c.schedule.total_steps) + ", min_lr_ratio " +
                       std::to_string(c.schedule.min_lr_ratio)},
      {"clip_norm", std::to_string(c.clip_norm)}};
  const std::filesystem::path state_file = staging.path() / kOptimizerFile;
  write_safetensors(state_file, state, metadata);
  if (options.after_file) options.after_file(state_file);
  staging.commit();
}

void Trainer::load(const std::filesystem::path& folder) {
  Impl& im = *impl_;
  if (!std::filesystem::is_directory(folder))
    throw Error("checkpoint '" + folder.string() + "' is not a folder");
  const std::filesystem::path weights_file = folder / kWeightsFile;
  const std::filesystem::path state_file = folder / kOptimizerFile;
  const WeightStore weights = read_safetensors(weights_file);
  const WeightStore state = read_safetensors(state_file);
  auto fail = [](const std::filesystem::path& file, const std::string& message) {
    return Error("checkpoint " + file.string() + ": " + message);
  };
  auto shape_of = [](const std::vector<int64_t>& shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
  };

  // Everything is checked before anything changes.
  std::set<std::string> planned;
  for (const PlannedTensor& t : im.plan.tensors) {
    planned.insert(t.name);
    if (!weights.has(t.name))
      throw fail(weights_file, "has no tensor '" + t.name + "' (" + t.owner + ")");
    const Tensor& w = weights.get(t.name);
    if (w.shape() != t.shape)
      throw fail(weights_file, "tensor '" + t.name + "' has shape " + w.shape_string() +
                                   ", expected " + shape_of(t.shape));
    const Impl::Entry* e = im.find(t.name);
    if (e != nullptr && w.dtype() != TS_F32)
      throw fail(weights_file, "tensor '" + t.name + "' is " + dtype_name(w.dtype()) +
                                   "; a trainable tensor's master is f32");
    if (e == nullptr && !is_float(w.dtype()))
      throw fail(weights_file, "tensor '" + t.name + "' is " + dtype_name(w.dtype()) +
                                   "; expected f32, f16 or bf16");
  }
  for (const auto& [name, t] : weights.all())
    if (planned.count(name) == 0)
      throw fail(weights_file, "tensor '" + name + "' is not a tensor of this model");
  for (const auto& e : im.entries)
    for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
      const std::string name = e->state.name + suffix;
      if (!state.has(name))
        throw fail(state_file, "has no '" + name + "': the checkpoint does not train '" +
                                   e->state.name + "', which this trainer trains");
      const Tensor& t = state.get(name);
      if (t.dtype() != TS_F32 || t.shape() != e->state.m.shape())
        throw fail(state_file, "'" + name + "' is " + dtype_name(t.dtype()) + " " +
                                   t.shape_string() + ", expected f32 " +
                                   e->state.m.shape_string());
    }
  for (const char* name : {"trainer.step", "trainer.tokens"}) {
    if (!state.has(name)) throw fail(state_file, std::string("has no '") + name + "'");
    const Tensor& t = state.get(name);
    if (t.dtype() != TS_I64 || t.numel() != 1)
      throw fail(state_file, std::string("'") + name + "' is " + dtype_name(t.dtype()) + " " +
                                 t.shape_string() + ", expected i64 [1]");
  }
  for (const auto& [name, t] : state.all()) {
    if (name == "trainer.step" || name == "trainer.tokens") continue;
    std::string base = name;
    for (const std::string suffix : {".exp_avg_sq", ".exp_avg"})
      if (base.size() > suffix.size() &&
          base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0) {
        base.resize(base.size() - suffix.size());
        break;
      }
    if (im.find(base) == nullptr)
      throw fail(state_file, "has optimiser state '" + name + "' for '" + base +
                                 "', which this trainer does not train (frozen, or not a tensor "
                                 "of this model)");
  }
  const int64_t step = *state.get("trainer.step").data<int64_t>();
  if (step < 0) throw fail(state_file, "trainer.step is " + std::to_string(step));

  // Apply.
  for (const PlannedTensor& t : im.plan.tensors) {
    const Tensor& w = weights.get(t.name);
    if (Impl::Entry* e = im.find(t.name)) {
      copy_converted(w, e->state.master);
      if (e->model.raw() != e->state.master.raw()) copy_converted(e->state.master, e->model);
      copy_converted(state.get(t.name + ".exp_avg"), e->state.m);
      copy_converted(state.get(t.name + ".exp_avg_sq"), e->state.v);
      e->state.grad.zero();
    } else {
      copy_converted(w, im.model.weights().get(t.name));
    }
  }
  im.step = step;
  im.tokens_seen = *state.get("trainer.tokens").data<int64_t>();
}

}  // namespace tessera::train
