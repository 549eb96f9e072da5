// The lifecycle every plugin object shares, for all five interfaces (blocks,
// decoders, communicators, search providers, backends): the provider's vtable is
// checked, the object created, its calls' statuses turned into exceptions that
// carry a label ("layer 3 attention gqa (tessera-attention-cpu)"), and the object
// destroyed through its own vtable.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/error.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <cstddef>
#include <string>
#include <utility>

namespace tessera {

// "unsupported: <message>" / "<message>", with a fallback for an empty message.
std::string plugin_status_message(int status, const ts_error& err);

// Which provider kinds carry which vtable.
template <class Vtable>
bool vtable_of_kind(int32_t kind);
template <>
inline bool vtable_of_kind<ts_block_vtable>(int32_t kind) {
  return kind == TS_KIND_ATTENTION || kind == TS_KIND_FFN;
}
template <>
inline bool vtable_of_kind<ts_decoder_vtable>(int32_t kind) {
  return kind == TS_KIND_DECODER;
}
template <>
inline bool vtable_of_kind<ts_parallel_vtable>(int32_t kind) {
  return kind == TS_KIND_PARALLEL;
}
template <>
inline bool vtable_of_kind<ts_search_vtable>(int32_t kind) {
  return kind == TS_KIND_SEARCH;
}
template <>
inline bool vtable_of_kind<ts_backend_vtable>(int32_t kind) {
  return kind == TS_KIND_BACKEND;
}

template <class Vtable>
class PluginObject {
 public:
  // Checks that `provider` carries this kind of vtable, complete by the registry's
  // rules, then calls create(vtable, &self, &err). A TS_UNSUPPORTED create throws
  // PluginUnsupported, any other failure Error; both prefixed with the label.
  template <class Create>
  PluginObject(ProviderRef provider, std::string label, Create&& create)
      : provider_(std::move(provider)), label_(std::move(label)) {
    if (provider_.provider == nullptr || provider_.provider->vtable == nullptr)
      throw Error(label_ + ": the provider has no vtable");
    if (!vtable_of_kind<Vtable>(provider_.provider->kind))
      throw Error(label_ + ": the provider is a " + kind_name(provider_.provider->kind) +
                  ", not the kind this object needs");
    if (const std::string problem = vtable_problem(*provider_.provider); !problem.empty())
      throw Error(label_ + ": " + problem);
    vt_ = static_cast<const Vtable*>(provider_.provider->vtable);
    ts_error err{};
    void* self = nullptr;
    const int status = create(*vt_, &self, &err);
    if (status != TS_OK) {
      // A failed create owns nothing.
      if (status == TS_UNSUPPORTED)
        throw PluginUnsupported(label_ + ": " + plugin_status_message(status, err));
      throw Error(label_ + ": " + plugin_status_message(status, err));
    }
    if (self == nullptr) throw Error(label_ + ": create returned OK but no object");
    self_ = self;
  }
  // The plugin's code stays loaded for the process (plugin_registry.hpp), so
  // destroy is always callable here.
  ~PluginObject() {
    if (self_ != nullptr) vt_->destroy(self_);
  }
  PluginObject(const PluginObject&) = delete;
  PluginObject& operator=(const PluginObject&) = delete;

  const ProviderRef& provider() const { return provider_; }
  const std::string& label() const { return label_; }
  const Vtable& vtable() const { return *vt_; }
  void* self() const { return self_; }

  // True when the plugin's vtable reaches `member` and it is not NULL: the host
  // never calls an entry a plugin from an older minor does not have.
  template <class F>
  bool has(F Vtable::*member) const {
    const auto offset = static_cast<size_t>(reinterpret_cast<const char*>(&(vt_->*member)) -
                                            reinterpret_cast<const char*>(vt_));
    return vt_->struct_size >= offset + sizeof(F) && vt_->*member != nullptr;
  }

  // Calls vtable.*member(self, args..., &err); a failure throws Error (PluginUnsupported
  // for TS_UNSUPPORTED) "<label>: <what>: <message>" ("<label>: <message>" when `what`
  // is empty).
  template <class F, class... Args>
  void call(const std::string& what, F Vtable::*member, Args&&... args) const {
    if (!has(member)) throw Error(label_ + ": the plugin has no " + what);
    ts_error err{};
    const int status = (vt_->*member)(self_, std::forward<Args>(args)..., &err);
    if (status == TS_OK) return;
    const std::string message =
        label_ + ": " + (what.empty() ? "" : what + ": ") + plugin_status_message(status, err);
    if (status == TS_UNSUPPORTED) throw PluginUnsupported(message);
    throw Error(message);
  }

 private:
  ProviderRef provider_;
  std::string label_;
  const Vtable* vt_ = nullptr;
  void* self_ = nullptr;
};

}  // namespace tessera
