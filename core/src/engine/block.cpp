// Block: one plugin object behind ts_block_vtable, and the provider's layout and
// capability queries.
#include <tessera/engine/block.hpp>
#include <tessera/engine/error.hpp>

#include <cstring>
#include <string>
#include <utility>

namespace tessera {
namespace {

const ts_block_vtable& block_vtable_of(const ProviderRef& provider, const std::string& label) {
  if (provider.provider == nullptr || !vtable_of_kind<ts_block_vtable>(provider.provider->kind))
    throw Error(label + ": the provider is not a block provider");
  if (const std::string problem = vtable_problem(*provider.provider); !problem.empty())
    throw Error(label + ": " + problem);
  return *static_cast<const ts_block_vtable*>(provider.provider->vtable);
}

// As PluginObject::has, for a vtable without an object.
template <class F>
bool vtable_has(const ts_block_vtable& vt, F ts_block_vtable::*member) {
  const auto offset = static_cast<size_t>(reinterpret_cast<const char*>(&(vt.*member)) -
                                          reinterpret_cast<const char*>(&vt));
  return vt.struct_size >= offset + sizeof(F) && vt.*member != nullptr;
}

}  // namespace

std::optional<BlockLayout> describe_block(const ProviderRef& provider,
                                          const ts_block_config& config, const std::string& label) {
  const ts_block_vtable& vt = block_vtable_of(provider, label);
  if (!vtable_has(vt, &ts_block_vtable::describe)) return std::nullopt;
  std::vector<ts_weight_decl> decls(16);
  ts_block_layout out{};
  // A plugin that declares more than fits says how many; ask again with room for all.
  for (int attempt = 0; attempt < 2; ++attempt) {
    out = ts_block_layout{};
    out.struct_size = sizeof(ts_block_layout);
    out.capacity = static_cast<int32_t>(decls.size());
    out.weights = decls.data();
    ts_error err{};
    const int status = vt.describe(&config, &out, &err);
    if (status != TS_OK) {
      const std::string message = label + ": " + plugin_status_message(status, err);
      if (status == TS_UNSUPPORTED) throw PluginUnsupported(message);
      throw Error(message);
    }
    if (out.n_weights < 0)
      throw Error(label + ": describe reports " + std::to_string(out.n_weights) +
                  " weights; expected a count >= 0");
    if (out.n_weights <= static_cast<int32_t>(decls.size())) break;
    if (attempt == 1)
      throw Error(label + ": describe reports " + std::to_string(out.n_weights) +
                  " weights after it was given room for " + std::to_string(decls.size()));
    decls.resize(static_cast<size_t>(out.n_weights));
  }
  if (out.kv_heads < 0 || (out.kv_heads > 0 && out.head_dim <= 0) ||
      (out.kv_heads > 0 && dtype_size(out.kv_dtype) == 0))
    throw Error(label + ": describe reports kv_heads " + std::to_string(out.kv_heads) +
                ", head_dim " + std::to_string(out.head_dim) + " and kv_dtype " +
                std::to_string(out.kv_dtype) +
                "; expected kv_heads >= 0, and head_dim > 0 and a known dtype when kv_heads > 0");

  BlockLayout layout;
  layout.flags = out.flags;
  if (out.kv_heads > 0)
    layout.kv = {out.kv_heads, out.head_dim, static_cast<ts_dtype>(out.kv_dtype)};
  for (int32_t i = 0; i < out.n_weights; ++i) {
    const ts_weight_decl& d = decls[static_cast<size_t>(i)];
    const size_t length = strnlen(d.name, sizeof(d.name));
    const std::string where = label + ": describe: weight #" + std::to_string(i);
    if (length == 0 || length == sizeof(d.name))
      throw Error(where + " has an empty or unterminated name");
    DeclaredWeight w;
    w.name.assign(d.name, length);
    if (d.ndim < 1 || d.ndim > TS_MAX_DIMS)
      throw Error(where + " ('" + w.name + "') has ndim " + std::to_string(d.ndim) +
                  "; expected 1.." + std::to_string(TS_MAX_DIMS));
    for (int32_t k = 0; k < d.ndim; ++k) {
      if (d.shape[k] <= 0)
        throw Error(where + " ('" + w.name + "') has dimension " + std::to_string(k) + " = " +
                    std::to_string(d.shape[k]) + "; expected > 0");
      w.shape.push_back(d.shape[k]);
    }
    if (d.split < TS_SPLIT_REPLICATED || d.split > TS_SPLIT_COLUMNS ||
        (d.split == TS_SPLIT_COLUMNS && d.ndim < 2))
      throw Error(where + " ('" + w.name + "') has split " + std::to_string(d.split) +
                  "; expected 0 (replicated), 1 (rows) or 2 (columns, for a matrix)");
    if (d.init < TS_INIT_LINEAR || d.init > TS_INIT_ONES)
      throw Error(where + " ('" + w.name + "') has init " + std::to_string(d.init) +
                  "; expected 0..4 (ts_init)");
    w.dtypes = d.dtypes;
    w.split = static_cast<ts_split>(d.split);
    w.init = static_cast<ts_init>(d.init);
    w.init_scale = d.init_scale;
    for (const DeclaredWeight& other : layout.weights)
      if (other.name == w.name) throw Error(where + " declares '" + w.name + "' twice");
    layout.weights.push_back(std::move(w));
  }
  return layout;
}

std::string block_unsupported_reason(const ProviderRef& provider, const ts_block_config& config,
                                     const std::string& label) {
  const ts_block_vtable& vt = block_vtable_of(provider, label);
  if (!vtable_has(vt, &ts_block_vtable::supports)) return "";
  ts_error err{};
  const int status = vt.supports(&config, &err);
  if (status == TS_OK) return "";
  if (status == TS_UNSUPPORTED) return plugin_status_message(TS_ERROR, err);
  throw Error(label + ": supports: " + plugin_status_message(status, err));
}

Block::Block(ProviderRef provider, const ts_block_config& config, std::string label)
    : object_(std::move(provider), std::move(label),
              [&config](const ts_block_vtable& vt, void** self, ts_error* err) {
                return vt.create(&config, self, err);
              }) {
  info_.struct_size = sizeof(ts_block_info);
  // A failure here destroys the object with object_.
  object_.call("info", &ts_block_vtable::info, &info_);
  if (info_.kv_heads < 0 || (info_.kv_heads > 0 && info_.head_dim <= 0))
    throw Error(object_.label() + ": info reports kv_heads " + std::to_string(info_.kv_heads) +
                " and head_dim " + std::to_string(info_.head_dim) +
                "; expected kv_heads >= 0 and head_dim > 0 when kv_heads > 0");
}

void Block::forward(const ts_block_io& io) {
  object_.call("", &ts_block_vtable::forward, &io);
}

void Block::compact_kv(ts_kv_layer& kv, int32_t slot, int32_t first_row, const int32_t* keep,
                       int32_t n_keep) {
  if (!has_compact_kv()) throw Error(label() + ": the plugin has no compact_kv");
  object_.call("compact_kv", &ts_block_vtable::compact_kv, &kv, slot, first_row, keep, n_keep);
}

bool Block::can_train() const {
  return object_.has(&ts_block_vtable::train_workspace) &&
         object_.has(&ts_block_vtable::forward_train) && object_.has(&ts_block_vtable::backward);
}

void Block::require_training() const {
  if (can_train()) return;
  std::string missing;
  const std::pair<bool, const char*> entries[] = {
      {object_.has(&ts_block_vtable::train_workspace), "train_workspace"},
      {object_.has(&ts_block_vtable::forward_train), "forward_train"},
      {object_.has(&ts_block_vtable::backward), "backward"}};
  size_t present = 0;
  for (const auto& [has, name] : entries) {
    if (has) {
      ++present;
    } else {
      missing += (missing.empty() ? "" : ", ") + std::string(name);
    }
  }
  const std::string why =
      present == 0 ? "its plugin has no backward (the ABI 2.1 training entries train_workspace, "
                     "forward_train and backward are absent)"
                   : "its plugin lacks " + missing +
                         " (ABI 2.1 asks for train_workspace, forward_train and backward, all "
                         "three or none)";
  throw Error(label() + ": cannot be trained: " + why +
              "; a model with a block that has no backward cannot be trained");
}

uint64_t Block::train_workspace(const ts_batch& batch, ts_recompute policy) {
  require_training();
  uint64_t bytes = 0;
  object_.call("train_workspace", &ts_block_vtable::train_workspace, &batch,
               static_cast<int32_t>(policy), &bytes);
  return bytes;
}

void Block::forward_train(const ts_block_io& io, ts_recompute policy, void* workspace) {
  require_training();
  if (io.kv != nullptr)
    throw Error(label() +
                ": forward_train: io.kv is set; a training forward runs whole "
                "sequences without a cache (io.kv NULL)");
  object_.call("forward_train", &ts_block_vtable::forward_train, &io, static_cast<int32_t>(policy),
               workspace);
}

void Block::backward(const ts_backward_io& io) {
  require_training();
  object_.call("backward", &ts_block_vtable::backward, &io);
}

}  // namespace tessera
