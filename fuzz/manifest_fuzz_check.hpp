// What the manifest fuzz target checks on one input, shared with the unit test that replays
// the kept corpus (tests/unit/test_fuzz_corpora_manifest.cpp), so both hold inputs to the same
// rules: the text either is refused with a ManifestError whose message is
// "<file>:<line>:<column>: <detail>" (file the name given to the parser, line and column at
// least 1 and inside the text, detail non-empty), or parses into a Manifest whose to_toml()
// output parses again into the same manifest: model section, weights, runtime and every layer's
// blocks with their parameters (source locations aside). Any other exception escapes to the
// caller. Manifests of more than kMaxCheckedLayers layers (but no more than kMaxLayers, which the
// parser refuses before allocating anything) are skipped: the parser's time and memory grow with
// num_layers, not with the text (2^20 layers take ~1.2 GB and seconds under ASan), so they would
// only trip the fuzzer's memory and time limits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tessera/engine/error.hpp"
#include "tessera/engine/manifest.hpp"
#include "tessera/engine/params.hpp"
#include "tessera/engine/toml_reader.hpp"

namespace tessera::fuzz {

// The name the manifest is parsed under, and its folder: absolute, so resolved paths are
// absolute and read back the same.
inline constexpr const char* kManifestName = "fuzz.toml";
inline constexpr const char* kManifestDir = "/fuzz";
inline constexpr int64_t kMaxCheckedLayers = 1 << 12;

// Whether the text declares more layers than are checked (but not so many that the parser
// refuses them); false when it does not parse as TOML, which the manifest parser reports.
inline bool too_many_layers(std::string_view text) {
  try {
    const toml::table doc = toml_fields::parse_document(text, kManifestName);
    const toml::node_view<const toml::node> layers = doc.at_path("model.num_layers");
    const std::optional<int64_t> count = layers.value_exact<int64_t>();
    return count && *count > kMaxCheckedLayers && *count <= kMaxLayers;
  } catch (const ManifestError&) {
    return false;
  }
}

inline bool same_number(double a, double b) {
  return a == b || (std::isnan(a) && std::isnan(b));  // to_toml writes any NaN as nan
}

inline bool same_value(const ParamValue& a, const ParamValue& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<double>(&a)) return same_number(*x, std::get<double>(b));
  return a == b;
}

// Same keys with the same values, in the same order.
inline bool same_params(const ParamList& a, const ParamList& b) {
  const std::vector<Param>& x = a.items();
  const std::vector<Param>& y = b.items();
  return x.size() == y.size() &&
         std::equal(x.begin(), x.end(), y.begin(), [](const Param& p, const Param& q) {
           return p.key == q.key && same_value(p.value, q.value);
         });
}

inline bool same_block(const BlockSpec& a, const BlockSpec& b) {
  return a.kind == b.kind && a.plugin == b.plugin && a.prefix == b.prefix &&
         same_params(a.params, b.params);
}

inline bool same_model(const ModelSpec& a, const ModelSpec& b) {
  return a.name == b.name && a.hidden_size == b.hidden_size && a.num_layers == b.num_layers &&
         a.num_heads == b.num_heads && a.head_dim == b.head_dim &&
         a.num_kv_heads == b.num_kv_heads && a.intermediate_size == b.intermediate_size &&
         a.vocab_size == b.vocab_size && a.rope_theta == b.rope_theta &&
         a.rope_scaling == b.rope_scaling && a.rms_norm_eps == b.rms_norm_eps &&
         a.max_seq_len == b.max_seq_len && a.tie_embeddings == b.tie_embeddings &&
         a.bos_token_id == b.bos_token_id && a.eos_token_ids == b.eos_token_ids;
}

inline bool same_layers(const std::vector<LayerSpec>& a, const std::vector<LayerSpec>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](const LayerSpec& x, const LayerSpec& y) {
           return same_block(x.attention, y.attention) && same_block(x.ffn, y.ffn);
         });
}

inline bool same_runtime(const RuntimeSpec& a, const RuntimeSpec& b) {
  return a.device == b.device && a.dtype == b.dtype && a.weight_dtype == b.weight_dtype &&
         a.kv_dtype == b.kv_dtype && a.threads == b.threads && a.plugin_paths == b.plugin_paths &&
         same_block(a.decoder, b.decoder) && same_block(a.parallel, b.parallel);
}

// "<name>:<line>:<column>: <detail>" with the location inside the text.
inline bool well_located(const ManifestError& e, std::string_view text, const std::string& name) {
  const auto lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  const std::string prefix =
      name + ":" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": ";
  return e.file == name && e.line >= 1 && e.line <= lines && e.column >= 1 && !e.detail.empty() &&
         std::string_view(e.what()) == prefix + e.detail;
}

// Checks one input; `fail(what)` is called for each broken rule. Returns whether the text
// parsed (false: refused with a well-formed ManifestError, or skipped). Exceptions other than
// ManifestError propagate.
template <typename Fail>
bool check_manifest_input(std::string_view text, Fail&& fail) {
  if (too_many_layers(text)) return false;
  Manifest manifest;
  try {
    manifest = parse_manifest(text, kManifestName, kManifestDir);
  } catch (const ManifestError& e) {
    if (!well_located(e, text, kManifestName)) fail("a refusal without file:line:column: detail");
    return false;
  }
  const std::string written = to_toml(manifest);
  Manifest back;
  try {
    back = parse_manifest(written, "written.toml", kManifestDir);
  } catch (const ManifestError&) {
    fail("to_toml wrote a manifest that does not parse");
    return true;
  }
  if (!same_model(manifest.model, back.model)) fail("the [model] section changed in to_toml");
  if (manifest.weights.format != back.weights.format ||
      manifest.weights.path != back.weights.path || manifest.weights.seed != back.weights.seed ||
      manifest.weights.allow_unread != back.weights.allow_unread) {
    fail("the [weights] section changed in to_toml");
  }
  if (!same_runtime(manifest.runtime, back.runtime)) fail("the [runtime] section changed");
  if (!same_layers(manifest.layers, back.layers)) fail("the layers changed in to_toml");
  // Writing again gives the same text: to_toml is a fixed point after one pass.
  if (to_toml(back) != written) fail("to_toml of the parsed-back manifest differs");
  return true;
}

}  // namespace tessera::fuzz
