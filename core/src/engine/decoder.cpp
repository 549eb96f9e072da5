#include <tessera/engine/decoder.hpp>
#include <tessera/engine/error.hpp>

#include <string>
#include <utility>

namespace tessera {

Decoder::Decoder(ProviderRef provider, const ts_decoder_config& config, std::string label)
    : object_(std::move(provider), std::move(label),
              [&config](const ts_decoder_vtable& vt, void** self, ts_error* err) {
                return vt.create(&config, self, err);
              }) {}

void Decoder::step(const ts_decode_host& host, ts_decode_step& step) {
  object_.call("step", &ts_decoder_vtable::step, &host, &step);
}

std::unique_ptr<Decoder> make_decoder(const PluginRegistry& registry, const BlockSpec& spec,
                                      const ParamList& params, int32_t vocab, int32_t hidden,
                                      const ts_host* host, const ts_weights* weights) {
  const std::string kind = spec.kind.empty() ? "greedy" : spec.kind;
  // " (m.toml:64:1)": where the manifest chose it, when it did.
  const std::string at = spec.where.file.empty() || spec.where.line <= 0
                             ? std::string()
                             : " (" + spec.where.file + ":" + std::to_string(spec.where.line) +
                                   ":" + std::to_string(spec.where.column) + ")";
  ProviderRef provider;
  try {
    provider = registry.find(TS_KIND_DECODER, kind, TS_DEVICE_CPU, spec.plugin);
  } catch (const PluginError& e) {
    throw PluginError("decoder '" + kind + "'" + at + ": " + e.what());
  }
  ts_decoder_config config{};
  config.struct_size = sizeof(ts_decoder_config);
  config.vocab = vocab;
  config.hidden = hidden;
  config.params = params.c_params();
  config.weights = weights;
  config.host = host;
  std::string label = "decoder " + kind + " (" + provider.plugin_name() + ")" + at;
  return std::make_unique<Decoder>(std::move(provider), config, std::move(label));
}

}  // namespace tessera
