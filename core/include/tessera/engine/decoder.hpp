// A decoder plugin object (ts_decoder_vtable): picks and feeds the next tokens of
// several sequences through a ts_decode_host.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_object.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <memory>
#include <string>

namespace tessera {

class Decoder {
 public:
  // Calls the provider's create; `config.params` must stay valid during the call only.
  Decoder(ProviderRef provider, const ts_decoder_config& config, std::string label);

  const ProviderRef& provider() const { return object_.provider(); }
  const std::string& label() const { return object_.label(); }  // "decoder greedy (plugin)"

  // One step for the sequences `step` lists. Throws Error "<label>: step: ...".
  void step(const ts_decode_host& host, ts_decode_step& step);

 private:
  PluginObject<ts_decoder_vtable> object_;
};

// The decoder `spec` names (kind, optional plugin, parameters) for a model of `vocab`
// tokens and `hidden` features. `params` are the decoder's parameters with what the
// model adds (eos_token_ids, ...); `weights` the decoder's own (NULL: none). Throws
// PluginError naming the decoder when no plugin provides it.
std::unique_ptr<Decoder> make_decoder(const PluginRegistry& registry, const BlockSpec& spec,
                                      const ParamList& params, int32_t vocab, int32_t hidden,
                                      const ts_host* host, const ts_weights* weights = nullptr);

}  // namespace tessera
