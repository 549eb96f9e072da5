// The weight plan: each block's provider, picked as Model picks it, and what it declares.
#include <tessera/dtype.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/weight_plan.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>

namespace tessera {
namespace {

constexpr uint32_t kFloatDtypes = kFloatDtypeMask;

// The host converts between the float dtypes (runtime.weight_dtype), so any of them is
// accepted where a block takes floats; anything else must be one the block names.
bool dtype_accepted(ts_dtype dtype, uint32_t mask) {
  const uint32_t bit = 1u << static_cast<uint32_t>(dtype);
  return ((mask == 0 ? kFloatDtypes : mask | kFloatDtypes) & bit) != 0;
}

// "f32, f16 or bf16"
std::string mask_text(uint32_t mask) {
  if (mask == 0) mask = kFloatDtypes;
  std::vector<std::string> names;
  for (int32_t d = 0; d < 32; ++d)
    if ((mask & (1u << static_cast<uint32_t>(d))) != 0) names.emplace_back(dtype_name(d));
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const char* part_name(ts_kind kind) {
  return kind == TS_KIND_ATTENTION ? "attention" : "ffn";
}

std::string owner_text(int32_t layer, ts_kind kind) {
  return "layer " + std::to_string(layer) + " " + part_name(kind);
}

// " (m.toml:14:1)" for a block with a location, else "".
std::string location_suffix(const BlockSpec& spec) {
  if (spec.where.file.empty()) return "";
  return " (" + spec.where.file + ":" + std::to_string(spec.where.line) + ":" +
         std::to_string(spec.where.column) + ")";
}

// An error about a block, at its place in the manifest: ManifestError when the manifest
// gives a line, else ModelError prefixed with the file or the manifest's name.
[[noreturn]] void fail_at(const Manifest& m, const BlockSpec& spec, const std::string& message) {
  if (!spec.where.file.empty() && spec.where.line > 0)
    throw ManifestError(spec.where.file, spec.where.line, spec.where.column, message);
  const std::string file = spec.where.file.empty() ? manifest_display_name(m) : spec.where.file;
  throw ModelError(file + ": " + message);
}

ts_block_config query_config(const Manifest& m, int32_t layer, ts_kind kind,
                             const ParamList& params, const PlanOptions& options) {
  ts_block_config config{};
  config.struct_size = sizeof(ts_block_config);
  config.kind = kind;
  config.layer = layer;
  config.hidden = m.model.hidden_size;
  config.dtype = TS_F32;
  config.device = options.device;
  config.device_index = 0;
  config.params = params.c_params();
  config.weights = nullptr;  // describe and supports run before any weight is read
  config.comm = options.comm;
  config.host = options.host;
  return config;
}

// The host-owned tensors and those every block declares, checked against each other.
class TensorTable {
 public:
  explicit TensorTable(const Manifest& m) : m_(m) {}

  void add(PlannedTensor t, const BlockSpec* spec) {
    const auto it = by_name_.find(t.name);
    if (it == by_name_.end()) {
      by_name_.emplace(t.name, std::move(t));
      return;
    }
    // The same full name twice: blocks that share a weight (one prefix for several
    // layers) must agree on it.
    const PlannedTensor& first = it->second;
    if (first.shape == t.shape && first.local == t.local) return;
    const std::string message = "weight '" + t.name + "' is declared by " + t.owner +
                                " with shape " + shape_text(t.shape) + " and by " + first.owner +
                                " with shape " + shape_text(first.shape) +
                                "; blocks that share a prefix must declare the same tensors";
    if (spec != nullptr) fail_at(m_, *spec, message);
    throw ModelError(manifest_display_name(m_) + ": " + message);
  }

  std::vector<PlannedTensor> sorted() && {
    std::vector<PlannedTensor> out;
    out.reserve(by_name_.size());
    for (auto& [name, t] : by_name_) out.push_back(std::move(t));
    return out;
  }

 private:
  const Manifest& m_;
  std::map<std::string, PlannedTensor> by_name_;
};

PlannedTensor host_tensor(std::string name, std::vector<int64_t> shape, ts_init init, float scale,
                          int32_t layer, int32_t kind, std::string owner) {
  PlannedTensor t;
  t.kind = kind;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.init = init;
  t.init_scale = scale;
  t.layer = layer;
  t.owner = std::move(owner);
  // The model's embedding lookup and lm head product take quantised matrices too.
  t.dtypes = kFloatDtypeMask | (t.shape.size() >= 2 ? kQuantizedDtypeMask : 0u);
  return t;
}

}  // namespace

int64_t PlannedTensor::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

int64_t PlannedBlock::parameters() const {
  if (!layout) return 0;
  int64_t total = 0;
  for (const DeclaredWeight& w : layout->weights) {
    int64_t n = 1;
    for (const int64_t d : w.shape) n *= d;
    total += n;
  }
  return total;
}

std::string PlannedBlock::where() const {
  if (spec.where.file.empty()) return "";
  return spec.where.file + ":" + std::to_string(spec.where.line) + ":" +
         std::to_string(spec.where.column);
}

const PlannedTensor* WeightPlan::find(const std::string& name) const {
  const auto it =
      std::lower_bound(tensors.begin(), tensors.end(), name,
                       [](const PlannedTensor& t, const std::string& key) { return t.name < key; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

const PlannedBlock& WeightPlan::block(int32_t layer, ts_kind kind) const {
  const std::vector<PlannedBlock>& blocks = kind == TS_KIND_ATTENTION ? attention : ffn;
  if (layer < 0 || static_cast<size_t>(layer) >= blocks.size() ||
      (kind != TS_KIND_ATTENTION && kind != TS_KIND_FFN))
    throw Error("WeightPlan::block: no " + std::string(kind_name(kind)) + " block in layer " +
                std::to_string(layer) + " of " + std::to_string(blocks.size()));
  return blocks[static_cast<size_t>(layer)];
}

int64_t WeightPlan::parameters() const {
  int64_t total = 0;
  for (const PlannedTensor& t : tensors) total += t.numel();
  return total;
}

std::vector<const PlannedBlock*> WeightPlan::undeclared() const {
  std::vector<const PlannedBlock*> out;
  for (size_t i = 0; i < attention.size(); ++i) {
    if (!attention[i].declared()) out.push_back(&attention[i]);
    if (i < ffn.size() && !ffn[i].declared()) out.push_back(&ffn[i]);
  }
  return out;
}

size_t WeightPlan::kv_bytes_per_token() const {
  size_t bytes = 0;
  for (const PlannedBlock& b : attention) {
    const KvLayerShape kv = b.kv();
    bytes += 2 * static_cast<size_t>(kv.kv_heads) * static_cast<size_t>(kv.head_dim) *
             dtype_size(kv.dtype);
  }
  return bytes;
}

std::string default_block_prefix(int32_t layer, ts_kind kind) {
  return "model.layers." + std::to_string(layer) +
         (kind == TS_KIND_ATTENTION ? ".self_attn." : ".mlp.");
}

std::string block_norm_name(int32_t layer, ts_kind kind) {
  return "model.layers." + std::to_string(layer) +
         (kind == TS_KIND_ATTENTION ? ".input_layernorm.weight"
                                    : ".post_attention_layernorm.weight");
}

std::string manifest_display_name(const Manifest& m) {
  if (!m.source.empty()) return m.source.string();
  if (!m.weights.where.file.empty()) return m.weights.where.file;  // the text it was parsed from
  return m.model.name.empty() ? std::string("the manifest") : "manifest '" + m.model.name + "'";
}

std::vector<ProviderRef> block_candidates(const PluginRegistry& registry, int32_t layer,
                                          ts_kind kind, const BlockSpec& spec, ts_device device) {
  try {
    return registry.candidates(kind, spec.kind, device, spec.plugin);
  } catch (const PluginError& e) {
    throw PluginError(owner_text(layer, kind) + " '" + spec.kind + "'" + location_suffix(spec) +
                      ": " + e.what());
  }
}

void throw_all_declined(int32_t layer, ts_kind kind, const BlockSpec& spec, size_t candidates,
                        const std::vector<std::string>& declined) {
  std::string message =
      owner_text(layer, kind) + " '" + spec.kind + "'" + location_suffix(spec) +
      (candidates == 1 ? ": its only provider declined it:"
                       : ": all " + std::to_string(candidates) + " providers declined it:");
  for (const std::string& d : declined) message += "\n  " + d;
  throw PluginError(message);
}

std::optional<PlannedBlock> plan_block_with(const Manifest& m, int32_t layer, ts_kind kind,
                                            const BlockSpec& spec, const ProviderRef& provider,
                                            const PlanOptions& options, std::string* declined) {
  const ParamList params = m.block_params(spec);  // alive while the plugin reads it
  const ts_block_config config = query_config(m, layer, kind, params, options);
  PlannedBlock b;
  b.layer = layer;
  b.kind = kind;
  b.spec = spec;
  b.provider = provider;
  b.label = owner_text(layer, kind) + " " + spec.kind + " (" + provider.plugin_name() + ")";
  b.prefix = spec.prefix.empty() ? default_block_prefix(layer, kind) : spec.prefix;
  const std::string who = provider.plugin_name() + " (" + provider.path().string() + ")";
  try {
    const std::string reason = block_unsupported_reason(provider, config, b.label);
    if (!reason.empty()) {
      if (declined != nullptr) *declined = who + ": " + reason;
      return std::nullopt;
    }
    b.layout = describe_block(provider, config, b.label);
  } catch (const PluginUnsupported& e) {
    if (declined != nullptr) *declined = who + ": " + e.what();
    return std::nullopt;
  } catch (const Error& e) {
    fail_at(m, spec, e.what());
  }
  if (b.layout && kind != TS_KIND_ATTENTION && b.layout->kv.kv_heads > 0)
    fail_at(m, spec,
            b.label + ": describe declares a KV cache of " + std::to_string(b.layout->kv.kv_heads) +
                " heads for an FFN block; only attention blocks have one");
  if (!b.identity()) b.norm = block_norm_name(layer, kind);
  return b;
}

PlannedBlock plan_block(const Manifest& m, const PluginRegistry& registry, int32_t layer,
                        ts_kind kind, const BlockSpec& spec, const PlanOptions& options) {
  const std::vector<ProviderRef> candidates =
      block_candidates(registry, layer, kind, spec, options.device);
  std::vector<std::string> declined;
  for (const ProviderRef& provider : candidates) {
    std::string reason;
    std::optional<PlannedBlock> b =
        plan_block_with(m, layer, kind, spec, provider, options, &reason);
    if (b) return std::move(*b);
    declined.push_back(reason);
  }
  throw_all_declined(layer, kind, spec, candidates.size(), declined);
}

WeightPlan plan_weights(const Manifest& m, const PluginRegistry& registry,
                        const PlanOptions& options) {
  const ModelSpec& model = m.model;
  if (model.hidden_size <= 0 || model.vocab_size <= 0)
    throw ModelError(
        manifest_display_name(m) + ": a model needs hidden_size > 0 and vocab_size > 0; got " +
        std::to_string(model.hidden_size) + " and " + std::to_string(model.vocab_size));
  if (m.layers.size() != static_cast<size_t>(std::max(model.num_layers, 0)))
    throw ModelError(manifest_display_name(m) + ": " + std::to_string(m.layers.size()) +
                     " layers are described for num_layers = " + std::to_string(model.num_layers));
  WeightPlan plan;
  plan.manifest = m;
  const int64_t hidden = model.hidden_size;
  const int64_t vocab = model.vocab_size;
  // Embedding and lm head: N(0, 1) / sqrt(hidden), so that tied logits h.E stay O(1).
  const auto table_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hidden)));
  TensorTable table(m);
  table.add(host_tensor("model.embed_tokens.weight", {vocab, hidden}, TS_INIT_NORMAL, table_scale,
                        -1, -1, "token embedding"),
            nullptr);
  table.add(host_tensor("model.norm.weight", {hidden}, TS_INIT_NORM, 0.0f, -1, -1, "final norm"),
            nullptr);
  if (!model.tie_embeddings)
    table.add(host_tensor("lm_head.weight", {vocab, hidden}, TS_INIT_NORMAL, table_scale, -1, -1,
                          "lm head"),
              nullptr);

  for (size_t i = 0; i < m.layers.size(); ++i) {
    const auto layer = static_cast<int32_t>(i);
    for (const ts_kind kind : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const BlockSpec& spec = kind == TS_KIND_ATTENTION ? m.layers[i].attention : m.layers[i].ffn;
      PlannedBlock b = plan_block(m, registry, layer, kind, spec, options);
      // Norms stay per layer, whatever prefix the block's own weights have.
      if (!b.norm.empty())
        table.add(host_tensor(b.norm, {hidden}, TS_INIT_NORM, 0.0f, layer, kind,
                              owner_text(layer, kind) + " norm"),
                  &spec);
      if (b.layout) {
        for (const DeclaredWeight& w : b.layout->weights) {
          PlannedTensor t;
          t.name = b.prefix + w.name;
          t.local = w.name;
          t.shape = w.shape;
          t.dtypes = w.dtypes;
          t.split = w.split;
          t.init = w.init;
          t.init_scale = w.init_scale;
          t.layer = layer;
          t.kind = kind;
          t.owner = b.label;
          table.add(std::move(t), &spec);
        }
      }
      (kind == TS_KIND_ATTENTION ? plan.attention : plan.ffn).push_back(std::move(b));
    }
  }
  plan.tensors = std::move(table).sorted();
  return plan;
}

ts_dtype run_dtype(const RuntimeSpec& runtime, const Tensor& t, uint32_t accepted) {
  const bool quantized = is_quantized(t.dtype());
  const bool is_float = ((kFloatDtypes >> static_cast<uint32_t>(t.dtype())) & 1u) != 0;
  if (!is_float && !quantized) return t.dtype();
  if (t.ndim() < 2) return TS_F32;
  if (!runtime.weights_as_stored) return runtime.weight_dtype;
  if (!quantized) return t.dtype();
  return ((accepted >> static_cast<uint32_t>(t.dtype())) & 1u) != 0 ? t.dtype() : TS_F32;
}

ts_dtype run_dtype(const WeightPlan& plan, const std::string& name, const Tensor& t) {
  const PlannedTensor* planned = plan.find(name);
  return run_dtype(plan.manifest.runtime, t, planned != nullptr ? planned->dtypes : 0);
}

void check_block_weights(const PlannedBlock& block, const WeightStore& weights,
                         const std::string& manifest_name) {
  if (!block.layout) return;
  const std::string at = block.where().empty() ? "" : " (" + block.where() + ")";
  const std::string from =
      weights.source.empty() ? std::string("the weights") : "'" + weights.source + "'";
  for (const DeclaredWeight& w : block.layout->weights) {
    const std::string full = block.prefix + w.name;
    if (!weights.has(full))
      throw ModelError(manifest_name + ": weight '" + full + "' is missing from " + from + "; " +
                       block.label + at + " reads it as '" + w.name + "' with shape " +
                       shape_text(w.shape));
    const Tensor& t = weights.get(full);
    if (t.shape() != w.shape)
      throw ModelError(manifest_name + ": weight '" + full + "' (" + weights.origin(full) +
                       ") has shape " + t.shape_string() + "; expected " + shape_text(w.shape) +
                       ", as " + block.label + at + " declares it ('" + w.name + "')");
    if (!dtype_accepted(t.dtype(), w.dtypes))
      throw ModelError(manifest_name + ": weight '" + full + "' (" + weights.origin(full) +
                       ") has dtype " + dtype_name(t.dtype()) + "; expected " +
                       mask_text(w.dtypes) + ", as " + block.label + at + " declares it ('" +
                       w.name + "')");
  }
}

void check_weights(const WeightPlan& plan, const WeightStore& weights) {
  const std::string manifest_name = manifest_display_name(plan.manifest);
  const std::string from =
      weights.source.empty() ? std::string("the weights") : "'" + weights.source + "'";
  auto check_host = [&](const PlannedTensor* t) {
    if (t == nullptr) return;
    if (!weights.has(t->name))
      throw ModelError(manifest_name + ": weight '" + t->name + "' (" + t->owner +
                       ") is missing from " + from + "; expected shape " + shape_text(t->shape));
    const Tensor& found = weights.get(t->name);
    if (found.shape() != t->shape)
      throw ModelError(manifest_name + ": weight '" + t->name + "' (" + t->owner + ", " +
                       weights.origin(t->name) + ") has shape " + found.shape_string() +
                       "; expected " + shape_text(t->shape));
    if (!dtype_accepted(found.dtype(), t->dtypes))
      throw ModelError(manifest_name + ": weight '" + t->name + "' (" + t->owner + ", " +
                       weights.origin(t->name) + ") has dtype " + dtype_name(found.dtype()) +
                       "; expected " + mask_text(t->dtypes));
  };
  check_host(plan.find("model.embed_tokens.weight"));
  check_host(plan.find("model.norm.weight"));
  if (!plan.manifest.model.tie_embeddings) check_host(plan.find("lm_head.weight"));
  for (const std::vector<PlannedBlock>* blocks : {&plan.attention, &plan.ffn}) {
    for (const PlannedBlock& b : *blocks) {
      // An undeclared block's norm waits for info(): it may turn out to be an identity.
      if (!b.declared()) continue;
      if (!b.norm.empty()) check_host(plan.find(b.norm));
      check_block_weights(b, weights, manifest_name);
    }
  }
}

void check_no_unread_weights(const WeightPlan& plan, const WeightStore& weights) {
  std::vector<const std::string*> undeclared_prefixes;
  for (const PlannedBlock* b : plan.undeclared()) undeclared_prefixes.push_back(&b->prefix);
  for (const auto& entry : weights.all()) {
    const std::string& name = entry.first;
    if (plan.find(name) != nullptr) continue;
    // Derived tables some checkpoints carry, and an lm head beside tied embeddings.
    if (name.ends_with(".rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && plan.manifest.model.tie_embeddings) continue;
    // A block without describe reads whatever lies under its prefix.
    if (std::any_of(undeclared_prefixes.begin(), undeclared_prefixes.end(),
                    [&](const std::string* p) { return name.starts_with(*p); }))
      continue;
    const SourceLocation& at = plan.manifest.weights.where;
    const std::string message =
        "tensor '" + name + "' (" + weights.origin(name) +
        ") is read by no block of the model; expected only the tensors its blocks declare (a "
        "misspelt name, or weights of another layout?). Refusing rather than ignoring it; "
        "unread = \"allow\" in [weights] accepts a file that holds more";
    if (!at.file.empty() && at.line > 0) throw ManifestError(at.file, at.line, at.column, message);
    throw ModelError(manifest_display_name(plan.manifest) + ": " + message);
  }
}

}  // namespace tessera
