// config.json <-> Manifest for LlamaForCausalLM and DeciLMForCausalLM (hf_config.hpp).
#include <tessera/engine/error.hpp>
#include <tessera/formats/hf_config.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

namespace tessera {
namespace {

using nlohmann::json;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr const char* kLlama = "LlamaForCausalLM";
constexpr const char* kDeciLM = "DeciLMForCausalLM";
constexpr int64_t kFfnMultiple = 256;  // DeciLM rounds FFN widths up to this

// "an integer", "a string", ... for messages.
std::string describe(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return value.get<bool>() ? "true" : "false";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "the integer " + value.dump();
    case json::value_t::number_float:
      return "the number " + value.dump();
    case json::value_t::string: {
      std::string text = value.dump();
      if (text.size() > 60) text = text.substr(0, 57) + "...";
      return "the string " + text;
    }
    case json::value_t::array:
      return "a list";
    case json::value_t::object:
      return "an object";
    default:
      return "a JSON " + std::string(value.type_name());
  }
}

std::string number_text(double value) {
  std::ostringstream out;
  out.precision(17);
  out << value;
  return out.str();
}

std::string range_text(int64_t min, int64_t max) {
  if (max == kInt32Max)
    return min == 1 ? "a positive integer" : "an integer >= " + std::to_string(min);
  return "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
}

// Typed access to config.json values. HF writes unset fields as null, so null reads as absent.
// Every failure names the file and the key path ("block_configs[3].attention.no_op").
class ConfigReader {
 public:
  explicit ConfigReader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    throw ModelError(source_ + ": '" + key + "' " + message);
  }
  [[noreturn]] void fail_document(const std::string& message) const {
    throw ModelError(source_ + ": " + message);
  }

  static const json* get(const json& object, const char* key) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<int64_t> integer(const json& object, const char* key, const std::string& path,
                                 int64_t min, int64_t max = kInt32Max) const {
    const json* value = get(object, key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_number_integer()) {
      fail(path, "must be " + range_text(min, max) + ", got " + describe(*value));
    }
    const bool too_big =
        value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(kInt32Max);
    const int64_t result = too_big ? std::numeric_limits<int64_t>::max() : value->get<int64_t>();
    if (too_big || result < min || result > max) {
      fail(path, "is " + value->dump() + "; expected " + range_text(min, max));
    }
    return result;
  }

  int64_t required_integer(const json& object, const char* key, const std::string& path,
                           int64_t min, int64_t max = kInt32Max) const {
    const std::optional<int64_t> value = integer(object, key, path, min, max);
    if (!value) fail(path, "is missing; expected " + range_text(min, max));
    return *value;
  }

  // A finite number > 0.
  std::optional<double> positive_number(const json& object, const char* key,
                                        const std::string& path) const {
    const json* value = get(object, key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_number()) fail(path, "must be a number, got " + describe(*value));
    const double result = value->get<double>();
    if (!(result > 0.0) || !std::isfinite(result)) {
      fail(path, "is " + value->dump() + "; expected a finite number > 0");
    }
    return result;
  }

  std::optional<bool> boolean(const json& object, const char* key, const std::string& path) const {
    const json* value = get(object, key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_boolean()) fail(path, "must be true or false, got " + describe(*value));
    return value->get<bool>();
  }

  std::optional<std::string> string(const json& object, const char* key,
                                    const std::string& path) const {
    const json* value = get(object, key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) fail(path, "must be a string, got " + describe(*value));
    return value->get<std::string>();
  }

  const json& object_member(const json& object, const char* key, const std::string& path,
                            const std::string& example) const {
    const json* value = get(object, key);
    if (value == nullptr) fail(path, "is missing; expected an object like " + example);
    if (!value->is_object()) {
      fail(path, "must be an object like " + example + ", got " + describe(*value));
    }
    return *value;
  }

  // Keys Tessera does not know are accepted only when they are unset (null or false): a
  // feature that is switched on must never be dropped silently.
  void refuse_unknown_set_keys(const json& object, const std::string& path,
                               const std::vector<std::string>& known) const {
    for (const auto& [key, value] : object.items()) {
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      if (value.is_null() || (value.is_boolean() && !value.get<bool>())) continue;
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      fail(path + "." + key, "is " + describe(value) +
                                 ", a setting Tessera does not support; expected null, or only "
                                 "the keys " +
                                 list);
    }
  }

 private:
  std::string source_;
};

// ------------------------------------------------------------------ reading

std::string architecture_of(const ConfigReader& r, const json& root) {
  const std::optional<std::string> model_type = r.string(root, "model_type", "model_type");
  std::string architecture;
  if (const json* list = ConfigReader::get(root, "architectures")) {
    if (!list->is_array() || list->size() != 1 || !(*list)[0].is_string()) {
      r.fail("architectures", "is " + (list->is_array() ? list->dump() : describe(*list)) +
                                  "; expected one name in a list, [\"LlamaForCausalLM\"] or "
                                  "[\"DeciLMForCausalLM\"]");
    }
    architecture = (*list)[0].get<std::string>();
  } else if (model_type == "llama") {
    architecture = kLlama;
  } else if (model_type == "nemotron-nas" || model_type == "deci") {
    architecture = kDeciLM;
  } else {
    r.fail("architectures", "is missing and model_type is " +
                                (model_type ? "\"" + *model_type + "\"" : std::string("missing")) +
                                "; expected LlamaForCausalLM (model_type \"llama\") or "
                                "DeciLMForCausalLM (model_type \"nemotron-nas\" or \"deci\")");
  }
  if (architecture != kLlama && architecture != kDeciLM) {
    r.fail("architectures", "names \"" + architecture +
                                "\", an architecture Tessera does not run; expected "
                                "\"LlamaForCausalLM\" or \"DeciLMForCausalLM\"");
  }
  if (model_type) {
    const bool matches = architecture == kLlama
                             ? *model_type == "llama"
                             : (*model_type == "nemotron-nas" || *model_type == "deci");
    if (!matches) {
      r.fail("model_type",
             "is \"" + *model_type + "\", which does not go with " + architecture + "; expected " +
                 (architecture == kLlama ? "\"llama\"" : "\"nemotron-nas\" or \"deci\""));
    }
  }
  return architecture;
}

// Settings that change what the model computes and that Tessera's blocks do not implement.
void refuse_unsupported_globals(const ConfigReader& r, const json& root) {
  if (const json* q = ConfigReader::get(root, "quantization_config")) {
    r.fail("quantization_config", "is " + describe(*q) +
                                      ": quantised checkpoints are not supported; expected "
                                      "f32, f16 or bf16 weights and no quantization_config");
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (r.boolean(root, key, key).value_or(false)) {
      r.fail(key, "is true: projections with biases are not supported; expected false");
    }
  }
  const std::string act = r.string(root, "hidden_act", "hidden_act").value_or("silu");
  if (act != "silu") {
    r.fail("hidden_act", "is \"" + act + "\"; expected \"silu\" (Tessera's FFN is SwiGLU)");
  }
  if (const json* window = ConfigReader::get(root, "sliding_window")) {
    r.fail("sliding_window",
           "is " + describe(*window) + ": window attention is not supported; expected null");
  }
}

RopeScaling parse_rope_scaling(const ConfigReader& r, const json& root) {
  RopeScaling s;
  const json* node = ConfigReader::get(root, "rope_scaling");
  if (node == nullptr) return s;
  if (!node->is_object()) {
    r.fail("rope_scaling", "must be null or an object like {\"rope_type\": \"llama3\", ...}, got " +
                               describe(*node));
  }
  // Newer configs say rope_type, older ones type.
  const bool has_rope_type = ConfigReader::get(*node, "rope_type") != nullptr;
  const std::string type_key = has_rope_type ? "rope_type" : "type";
  const std::string type =
      r.string(*node, type_key.c_str(), "rope_scaling." + type_key).value_or("");
  if (type.empty() || type == "default") return s;  // plain RoPE
  if (type != "llama3") {
    r.fail("rope_scaling." + type_key, "is \"" + type +
                                           "\", a RoPE scaling Tessera does not implement; "
                                           "expected \"llama3\" (or null for none)");
  }
  s.type = type;
  auto required = [&](const char* key) {
    const std::optional<double> value =
        r.positive_number(*node, key, "rope_scaling." + std::string(key));
    if (!value) {
      r.fail("rope_scaling." + std::string(key),
             "is missing; \"llama3\" needs factor, low_freq_factor, high_freq_factor and "
             "original_max_position_embeddings");
    }
    return *value;
  };
  s.factor = required("factor");
  s.low_freq_factor = required("low_freq_factor");
  s.high_freq_factor = required("high_freq_factor");
  if (!(s.high_freq_factor > s.low_freq_factor)) {
    r.fail("rope_scaling.high_freq_factor", "is " + number_text(s.high_freq_factor) +
                                                "; expected more than low_freq_factor " +
                                                number_text(s.low_freq_factor));
  }
  s.original_max_position_embeddings =
      static_cast<int32_t>(r.required_integer(*node, "original_max_position_embeddings",
                                              "rope_scaling.original_max_position_embeddings", 1));
  return s;
}

void parse_token_ids(const ConfigReader& r, const json& root, ModelSpec& m) {
  const int64_t last = m.vocab_size - 1;
  if (const std::optional<int64_t> bos = r.integer(root, "bos_token_id", "bos_token_id", 0, last)) {
    m.bos_token_id = static_cast<int32_t>(*bos);
  }
  const json* eos = ConfigReader::get(root, "eos_token_id");
  if (eos == nullptr) return;
  if (eos->is_array()) {
    for (size_t i = 0; i < eos->size(); ++i) {
      // The list item as a one-key object, so that the typed reader checks it.
      const json item = {{"id", (*eos)[i]}};
      const std::string path = "eos_token_id[" + std::to_string(i) + "]";
      m.eos_token_ids.push_back(r.required_integer(item, "id", path, 0, last));
    }
  } else {
    m.eos_token_ids.push_back(*r.integer(root, "eos_token_id", "eos_token_id", 0, last));
  }
}

const std::vector<std::string> kAttentionKeys = {"no_op",
                                                 "replace_with_linear",
                                                 "n_heads_in_group",
                                                 "window_length",
                                                 "num_sink_tokens",
                                                 "sparsify",
                                                 "use_prefill_window_in_sink_attention",
                                                 "unshifted_sink"};
const std::vector<std::string> kFfnKeys = {"no_op",     "replace_with_linear", "ffn_mult",
                                           "sparsify",  "intermediate_size",   "gated",
                                           "hidden_act"};

// sparsify is a list of module names to prune; null (or false) means none.
void refuse_sparsify(const ConfigReader& r, const json& block, const std::string& path) {
  const json* value = ConfigReader::get(block, "sparsify");
  if (value == nullptr || (value->is_boolean() && !value->get<bool>())) return;
  r.fail(path + ".sparsify",
         "is " + describe(*value) + ": sparsified blocks are not supported; expected null");
}

// no_op / replace_with_linear of one sub-block; both true is refused.
std::pair<bool, bool> no_op_and_linear(const ConfigReader& r, const json& block,
                                       const std::string& path) {
  const bool no_op = r.boolean(block, "no_op", path + ".no_op").value_or(false);
  const bool linear =
      r.boolean(block, "replace_with_linear", path + ".replace_with_linear").value_or(false);
  if (no_op && linear) {
    r.fail(path,
           "has both no_op and replace_with_linear true; they exclude each other (expected "
           "at most one of them true)");
  }
  return {no_op, linear};
}

BlockSpec parse_attention_config(const ConfigReader& r, const json& block, const std::string& path,
                                 const ModelSpec& m) {
  r.refuse_unknown_set_keys(block, path, kAttentionKeys);
  const auto [no_op, linear] = no_op_and_linear(r, block, path);
  refuse_sparsify(r, block, path);
  // Only sink attention reads these two; it is refused below, so their values change nothing.
  (void)r.boolean(block, "use_prefill_window_in_sink_attention",
                  path + ".use_prefill_window_in_sink_attention");
  (void)r.boolean(block, "unshifted_sink", path + ".unshifted_sink");
  BlockSpec spec;
  if (no_op || linear) {  // DeciLM nulls the size fields of these
    spec.kind = no_op ? "noop" : "linear";
    return spec;
  }
  if (const json* window = ConfigReader::get(block, "window_length")) {
    r.fail(path + ".window_length",
           "is " + describe(*window) + ": window attention is not supported; expected null");
  }
  if (const json* sinks = ConfigReader::get(block, "num_sink_tokens")) {
    r.fail(path + ".num_sink_tokens",
           "is " + describe(*sinks) + ": sink attention is not supported; expected null");
  }
  const int64_t group =
      r.required_integer(block, "n_heads_in_group", path + ".n_heads_in_group", 1);
  if (m.num_heads % group != 0) {
    r.fail(path + ".n_heads_in_group",
           "is " + std::to_string(group) +
               "; expected a divisor of num_attention_heads = " + std::to_string(m.num_heads) +
               " (KV heads = num_attention_heads / n_heads_in_group)");
  }
  spec.kind = "gqa";
  spec.params.set("kv_heads", int64_t{m.num_heads / group});
  return spec;
}

BlockSpec parse_ffn_config(const ConfigReader& r, const json& block, const std::string& path,
                           const ModelSpec& m) {
  r.refuse_unknown_set_keys(block, path, kFfnKeys);
  const auto [no_op, linear] = no_op_and_linear(r, block, path);
  refuse_sparsify(r, block, path);
  if (!r.boolean(block, "gated", path + ".gated").value_or(true)) {
    r.fail(path + ".gated", "is false: ungated FFNs are not supported; expected true (SwiGLU)");
  }
  const std::string act = r.string(block, "hidden_act", path + ".hidden_act").value_or("silu");
  if (act != "silu") r.fail(path + ".hidden_act", "is \"" + act + "\"; expected \"silu\"");
  BlockSpec spec;
  if (no_op || linear) {
    spec.kind = no_op ? "noop" : "linear";
    return spec;
  }
  const std::optional<int64_t> given =
      r.integer(block, "intermediate_size", path + ".intermediate_size", 1);
  const std::optional<double> mult = r.positive_number(block, "ffn_mult", path + ".ffn_mult");
  if (!given && !mult) {
    r.fail(path + ".ffn_mult",
           "is missing; a SwiGLU FFN needs ffn_mult (width = int(2 * ffn_mult * hidden_size / 3) "
           "rounded up to a multiple of 256) or intermediate_size");
  }
  int64_t width = 0;
  if (mult) {
    try {
      width = decilm_ffn_width(*mult, m.hidden_size);
    } catch (const ModelError& e) {
      r.fail(path + ".ffn_mult", std::string("is not usable: ") + e.what());
    }
    if (width <= 0) {
      r.fail(path + ".ffn_mult", "is " + number_text(*mult) +
                                     ", which gives an FFN width of 0; expected a width > 0 "
                                     "(write no_op: true for no FFN)");
    }
    if (given && *given != width) {
      r.fail(path + ".intermediate_size",
             "is " + std::to_string(*given) + " but ffn_mult " + number_text(*mult) + " gives " +
                 std::to_string(width) + "; expected the two to agree");
    }
  } else {
    width = *given;
  }
  spec.kind = "swiglu";
  spec.params.set("intermediate_size", width);
  return spec;
}

std::vector<LayerSpec> parse_block_configs(const ConfigReader& r, const json& list,
                                           const ModelSpec& m) {
  if (!list.is_array()) {
    r.fail("block_configs", "must be a list with one entry per layer, got " + describe(list));
  }
  if (list.size() != static_cast<size_t>(m.num_layers)) {
    r.fail("block_configs",
           "has " + std::to_string(list.size()) +
               " entries; expected num_hidden_layers = " + std::to_string(m.num_layers));
  }
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = "block_configs[" + std::to_string(i) + "]";
    const json& entry = list[i];
    if (!entry.is_object()) {
      r.fail(path, "must be an object with \"attention\" and \"ffn\", got " + describe(entry));
    }
    r.refuse_unknown_set_keys(entry, path, {"attention", "ffn"});
    LayerSpec layer;
    layer.attention = parse_attention_config(
        r, r.object_member(entry, "attention", path + ".attention", "{\"n_heads_in_group\": 8}"),
        path + ".attention", m);
    layer.ffn = parse_ffn_config(
        r, r.object_member(entry, "ffn", path + ".ffn", "{\"ffn_mult\": 2.625}"), path + ".ffn", m);
    layers.push_back(std::move(layer));
  }
  return layers;
}

// The older DeciLM form (model_type "deci"): a KV-head count per layer, every FFN the same.
std::vector<LayerSpec> parse_kv_heads_per_layer(const ConfigReader& r, const json& list,
                                                const ModelSpec& m) {
  const std::string key = "num_key_value_heads_per_layer";
  if (!list.is_array() || list.size() != static_cast<size_t>(m.num_layers)) {
    r.fail(key,
           "is " + (list.is_array() ? "a list of " + std::to_string(list.size()) : describe(list)) +
               "; expected a list of num_hidden_layers = " + std::to_string(m.num_layers) +
               " KV-head counts");
  }
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = key + "[" + std::to_string(i) + "]";
    const json item = {{"kv", list[i]}};
    const int64_t kv = r.required_integer(item, "kv", path, 1);
    if (m.num_heads % kv != 0) {
      r.fail(path, "is " + std::to_string(kv) + "; expected a divisor of num_attention_heads = " +
                       std::to_string(m.num_heads));
    }
    LayerSpec layer;
    layer.attention.kind = "gqa";
    layer.attention.params.set("kv_heads", kv);
    layer.ffn.kind = "swiglu";
    layer.ffn.params.set("intermediate_size", int64_t{m.intermediate_size});
    layers.push_back(std::move(layer));
  }
  return layers;
}

// The most common value of an integer block parameter over the layers of one kind, for the
// manifest-wide default; `fallback` when no layer has that kind.
int32_t most_common(const std::vector<LayerSpec>& layers, bool attention, const char* key,
                    int32_t fallback) {
  std::map<int64_t, int> counts;
  for (const LayerSpec& layer : layers) {
    const BlockSpec& block = attention ? layer.attention : layer.ffn;
    if (const ParamValue* v = block.params.find(key)) counts[std::get<int64_t>(*v)]++;
  }
  int64_t best = fallback;
  int best_count = 0;
  for (const auto& [value, count] : counts) {
    if (count > best_count) {
      best = value;
      best_count = count;
    }
  }
  return static_cast<int32_t>(best);
}

}  // namespace

int64_t decilm_ffn_width(double ffn_mult, int64_t hidden_size) {
  if (!std::isfinite(ffn_mult) || !(ffn_mult > 0.0)) {
    throw ModelError("ffn_mult " + number_text(ffn_mult) + " must be a finite number > 0");
  }
  if (hidden_size <= 0) {
    throw ModelError("hidden_size " + std::to_string(hidden_size) + " must be > 0");
  }
  // DeciLM's config keeps ffn_mult to 6 decimals; beyond 1e9 the width overflows anyway.
  const double rounded = ffn_mult < 1e9 ? std::round(ffn_mult * 1e6) / 1e6 : ffn_mult;
  const double raw = 2.0 * rounded * static_cast<double>(hidden_size) / 3.0;
  if (!(raw < static_cast<double>(kInt32Max - kFfnMultiple))) {
    throw ModelError("ffn_mult " + number_text(ffn_mult) + " at hidden_size " +
                     std::to_string(hidden_size) + " gives an FFN width of about " +
                     number_text(std::floor(raw)) + ", over the limit of " +
                     std::to_string(kInt32Max - kFfnMultiple));
  }
  const auto truncated = static_cast<int64_t>(raw);
  return (truncated + kFfnMultiple - 1) / kFfnMultiple * kFfnMultiple;
}

std::optional<double> decilm_ffn_mult_for_width(int64_t width, int64_t hidden_size) {
  if (width <= 0 || hidden_size <= 0 || width % kFfnMultiple != 0 ||
      width > kInt32Max - kFfnMultiple) {
    return std::nullopt;
  }
  const double exact = 3.0 * static_cast<double>(width) / (2.0 * static_cast<double>(hidden_size));
  auto gives_width = [&](double candidate) {
    try {
      return candidate > 0.0 && decilm_ffn_width(candidate, hidden_size) == width;
    } catch (const ModelError&) {
      return false;
    }
  };
  // The exact ratio when it has at most 6 decimals (28672 at 8192 is 5.25, as Puzzle writes
  // it); otherwise the multiplier with the fewest decimals that the rule maps back to `width`.
  if (std::round(exact * 1e6) / 1e6 == exact && gives_width(exact)) return exact;
  for (int decimals = 0; decimals <= 6; ++decimals) {
    const double scale = std::pow(10.0, decimals);
    for (const double candidate :
         {std::round(exact * scale) / scale, std::floor(exact * scale) / scale,
          std::ceil(exact * scale) / scale}) {
      if (gives_width(candidate)) return candidate;
    }
  }
  return std::nullopt;
}

HfConfig parse_hf_config(std::string_view json_text, const std::string& source_name) {
  const ConfigReader r(source_name);
  json root;
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    r.fail_document(std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_object()) {
    r.fail_document("the document is " + describe(root) + "; expected a JSON object");
  }

  HfConfig out;
  out.architecture = architecture_of(r, root);
  const bool decilm = out.architecture == kDeciLM;
  refuse_unsupported_globals(r, root);

  ModelSpec& m = out.manifest.model;
  m.hidden_size = static_cast<int32_t>(r.required_integer(root, "hidden_size", "hidden_size", 1));
  m.num_layers = static_cast<int32_t>(
      r.required_integer(root, "num_hidden_layers", "num_hidden_layers", 1, kMaxLayers));
  m.num_heads = static_cast<int32_t>(
      r.required_integer(root, "num_attention_heads", "num_attention_heads", 1));
  m.vocab_size = static_cast<int32_t>(r.required_integer(root, "vocab_size", "vocab_size", 1));
  if (const std::optional<int64_t> head_dim = r.integer(root, "head_dim", "head_dim", 1)) {
    m.head_dim = static_cast<int32_t>(*head_dim);
  } else if (m.hidden_size % m.num_heads != 0) {
    r.fail("num_attention_heads", "is " + std::to_string(m.num_heads) +
                                      ", which does not divide hidden_size " +
                                      std::to_string(m.hidden_size) +
                                      "; expected a divisor, or "
                                      "head_dim given explicitly");
  } else {
    m.head_dim = m.hidden_size / m.num_heads;
  }
  m.rope_theta = r.positive_number(root, "rope_theta", "rope_theta").value_or(10000.0);
  m.rope_scaling = parse_rope_scaling(r, root);
  m.rms_norm_eps = r.positive_number(root, "rms_norm_eps", "rms_norm_eps").value_or(1e-6);
  m.max_seq_len = static_cast<int32_t>(
      r.integer(root, "max_position_embeddings", "max_position_embeddings", 1).value_or(2048));
  m.tie_embeddings = r.boolean(root, "tie_word_embeddings", "tie_word_embeddings").value_or(false);
  parse_token_ids(r, root, m);
  if (const std::optional<std::string> name = r.string(root, "_name_or_path", "_name_or_path")) {
    m.name = *name;
  }

  std::vector<LayerSpec> layers;
  const json* blocks = ConfigReader::get(root, "block_configs");
  const json* per_layer = ConfigReader::get(root, "num_key_value_heads_per_layer");
  if (!decilm) {
    for (const char* key : {"block_configs", "num_key_value_heads_per_layer"}) {
      if (ConfigReader::get(root, key) != nullptr) {
        r.fail(key,
               "is given for LlamaForCausalLM, whose layers are all the same; expected "
               "DeciLMForCausalLM for per-layer blocks");
      }
    }
  }
  if (!decilm || (blocks == nullptr && per_layer != nullptr)) {
    // DeciLM drops the global sizes, so they are read only where they mean something.
    m.intermediate_size =
        static_cast<int32_t>(r.required_integer(root, "intermediate_size", "intermediate_size", 1));
    m.num_kv_heads = static_cast<int32_t>(
        r.integer(root, "num_key_value_heads", "num_key_value_heads", 1).value_or(m.num_heads));
    if (m.num_heads % m.num_kv_heads != 0) {
      r.fail("num_key_value_heads",
             "is " + std::to_string(m.num_kv_heads) +
                 "; expected a divisor of num_attention_heads = " + std::to_string(m.num_heads));
    }
  }
  if (!decilm) {
    LayerSpec layer;
    layer.attention.kind = "gqa";
    layer.ffn.kind = "swiglu";
    layers.assign(static_cast<size_t>(m.num_layers), layer);
  } else if (blocks != nullptr) {
    layers = parse_block_configs(r, *blocks, m);
    m.num_kv_heads = most_common(layers, true, "kv_heads", m.num_heads);
    m.intermediate_size = most_common(layers, false, "intermediate_size", 0);
  } else if (per_layer != nullptr) {
    layers = parse_kv_heads_per_layer(r, *per_layer, m);
  } else {
    r.fail("block_configs",
           "is missing; DeciLMForCausalLM needs one entry per layer (or "
           "num_key_value_heads_per_layer)");
  }

  Manifest& manifest = out.manifest;
  manifest.layers = std::move(layers);
  manifest.weights.format = "hf";
  manifest.weights.where.file = source_name;
  manifest.runtime.decoder.kind = "greedy";
  manifest.runtime.parallel.kind = "local";
  return out;
}

// ------------------------------------------------------------------ writing

namespace {

using ojson = nlohmann::ordered_json;

// An integer block parameter (integral floats accepted), or `fallback` when absent.
int64_t int_param(const BlockSpec& block, const std::string& key, int64_t fallback,
                  const std::string& where) {
  const ParamValue* value = block.params.find(key);
  if (value == nullptr) return fallback;
  if (const auto* i = std::get_if<int64_t>(value)) return *i;
  if (const auto* d = std::get_if<double>(value); d != nullptr && std::floor(*d) == *d) {
    return static_cast<int64_t>(*d);
  }
  throw ModelError(where + ": parameter '" + key + "' of " + block.kind + " must be an integer");
}

// What config.json can say about one layer.
struct LayerShape {
  std::string attention;  // gqa, linear, noop
  int64_t kv_heads = 0;
  std::string ffn;  // swiglu, linear, noop
  int64_t width = 0;
};

LayerShape layer_shape(const Manifest& manifest, size_t index) {
  const ModelSpec& m = manifest.model;
  const LayerSpec& layer = manifest.layers[index];
  const std::string where = "layer " + std::to_string(index);
  LayerShape shape;
  shape.attention = layer.attention.kind;
  shape.ffn = layer.ffn.kind;
  if (shape.attention != "gqa" && shape.attention != "linear" && shape.attention != "noop") {
    throw ModelError(where + ": attention kind '" + shape.attention +
                     "' has no Hugging Face form; expected gqa, linear or noop");
  }
  if (shape.ffn != "swiglu" && shape.ffn != "linear" && shape.ffn != "noop") {
    throw ModelError(where + ": ffn kind '" + shape.ffn +
                     "' has no Hugging Face form; expected swiglu, linear or noop");
  }
  // Parameters a layer may carry: those config.json expresses, and model-wide ones repeated
  // with the model's own value.
  const std::map<std::string, int64_t> model_values = {
      {"num_heads", m.num_heads}, {"head_dim", m.head_dim}, {"hidden_size", m.hidden_size}};
  auto check_params = [&](const BlockSpec& block, const char* slot, const char* own_key) {
    for (const Param& p : block.params.items()) {
      if (own_key != nullptr && p.key == own_key) continue;
      const auto model_value = model_values.find(p.key);
      if (model_value != model_values.end() &&
          int_param(block, p.key, model_value->second, where) == model_value->second) {
        continue;
      }
      throw ModelError(where + ": " + slot + " " + block.kind + " parameter '" + p.key +
                       "' cannot be written to config.json" +
                       (own_key != nullptr
                            ? std::string(" (a layer can only give its own ") + own_key + ")"
                            : std::string(" (this kind takes no parameters)")));
    }
  };
  check_params(layer.attention, "attention", shape.attention == "gqa" ? "kv_heads" : nullptr);
  check_params(layer.ffn, "ffn", shape.ffn == "swiglu" ? "intermediate_size" : nullptr);
  if (shape.attention == "gqa") {
    shape.kv_heads = int_param(layer.attention, "kv_heads",
                               m.num_kv_heads > 0 ? m.num_kv_heads : m.num_heads, where);
    if (shape.kv_heads <= 0 || m.num_heads % shape.kv_heads != 0) {
      throw ModelError(where + ": gqa kv_heads " + std::to_string(shape.kv_heads) +
                       " does not divide num_heads " + std::to_string(m.num_heads));
    }
  }
  if (shape.ffn == "swiglu") {
    shape.width = int_param(layer.ffn, "intermediate_size", m.intermediate_size, where);
    if (shape.width <= 0) {
      throw ModelError(where +
                       ": swiglu has no intermediate_size (neither in the block nor in "
                       "the model)");
    }
  }
  return shape;
}

std::vector<LayerShape> layer_shapes(const Manifest& m) {
  if (m.layers.size() != static_cast<size_t>(m.model.num_layers)) {
    throw ModelError("the manifest has " + std::to_string(m.layers.size()) +
                     " layers but num_layers = " + std::to_string(m.model.num_layers));
  }
  std::vector<LayerShape> shapes;
  for (size_t i = 0; i < m.layers.size(); ++i) shapes.push_back(layer_shape(m, i));
  return shapes;
}

bool uniform(const std::vector<LayerShape>& shapes) {
  for (const LayerShape& s : shapes) {
    if (s.attention != "gqa" || s.ffn != "swiglu" || s.kv_heads != shapes[0].kv_heads ||
        s.width != shapes[0].width) {
      return false;
    }
  }
  return !shapes.empty();
}

const char* torch_dtype_name(ts_dtype dtype) {
  switch (dtype) {
    case TS_F16:
      return "float16";
    case TS_F32:
      return "float32";
    default:
      return "bfloat16";
  }
}

ojson attention_entry(const LayerShape& s, int64_t num_heads) {
  ojson a;
  a["n_heads_in_group"] = s.attention == "gqa" ? ojson(num_heads / s.kv_heads) : ojson(nullptr);
  a["no_op"] = s.attention == "noop";
  a["num_sink_tokens"] = nullptr;
  a["replace_with_linear"] = s.attention == "linear";
  a["sparsify"] = nullptr;
  a["unshifted_sink"] = false;
  a["use_prefill_window_in_sink_attention"] = false;
  a["window_length"] = nullptr;
  return a;
}

ojson ffn_entry(const LayerShape& s, size_t layer, int64_t hidden) {
  ojson f;
  if (s.ffn == "swiglu") {
    const std::optional<double> mult = decilm_ffn_mult_for_width(s.width, hidden);
    if (!mult) {
      const int64_t below = s.width / kFfnMultiple * kFfnMultiple;
      const int64_t above = below + kFfnMultiple;
      throw ModelError("layer " + std::to_string(layer) + ": swiglu intermediate_size " +
                       std::to_string(s.width) +
                       " cannot be written as a DeciLM ffn_mult (widths are int(2 * ffn_mult * "
                       "hidden_size / 3) rounded up to a multiple of 256); " +
                       (below > 0 ? "the nearest representable widths are " +
                                        std::to_string(below) + " and " + std::to_string(above)
                                  : "the nearest representable width is " + std::to_string(above)));
    }
    f["ffn_mult"] = *mult;
  } else {
    f["ffn_mult"] = nullptr;
  }
  f["no_op"] = s.ffn == "noop";
  f["replace_with_linear"] = s.ffn == "linear";
  f["sparsify"] = nullptr;
  return f;
}

}  // namespace

bool is_uniform_llama(const Manifest& m) {
  try {
    return uniform(layer_shapes(m));
  } catch (const ModelError&) {
    return false;
  }
}

std::string hf_config_json(const Manifest& manifest, const HfConfigWriteOptions& options) {
  const ModelSpec& m = manifest.model;
  const std::vector<LayerShape> shapes = layer_shapes(manifest);
  const bool llama = uniform(shapes) && !options.always_decilm;

  ojson c;
  if (!m.name.empty()) c["_name_or_path"] = m.name;
  c["architectures"] = ojson::array({llama ? kLlama : kDeciLM});
  c["model_type"] = llama ? "llama" : "nemotron-nas";
  if (!llama) {
    // Hugging Face loads DeciLM through the model code published with the Nemotron models.
    c["auto_map"] = {
        {"AutoConfig", "nvidia/Llama-3_3-Nemotron-Super-49B-v1--configuration_decilm.DeciLMConfig"},
        {"AutoModelForCausalLM",
         "nvidia/Llama-3_3-Nemotron-Super-49B-v1--modeling_decilm.DeciLMForCausalLM"}};
  }
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  if (!llama) {
    ojson blocks = ojson::array();
    for (size_t i = 0; i < shapes.size(); ++i) {
      blocks.push_back({{"attention", attention_entry(shapes[i], m.num_heads)},
                        {"ffn", ffn_entry(shapes[i], i, m.hidden_size)}});
    }
    c["block_configs"] = std::move(blocks);
  }
  c["bos_token_id"] = m.bos_token_id >= 0 ? ojson(m.bos_token_id) : ojson(nullptr);
  if (m.eos_token_ids.empty()) {
    c["eos_token_id"] = nullptr;
  } else if (m.eos_token_ids.size() == 1) {
    c["eos_token_id"] = m.eos_token_ids[0];
  } else {
    c["eos_token_id"] = m.eos_token_ids;
  }
  c["head_dim"] = m.head_dim;
  c["hidden_act"] = "silu";
  c["hidden_size"] = m.hidden_size;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = llama ? ojson(shapes[0].width) : ojson(nullptr);
  c["max_position_embeddings"] = m.max_seq_len;
  c["mlp_bias"] = false;
  c["num_attention_heads"] = m.num_heads;
  c["num_hidden_layers"] = m.num_layers;
  c["num_key_value_heads"] = llama ? ojson(shapes[0].kv_heads) : ojson(nullptr);
  c["pretraining_tp"] = 1;
  c["rms_norm_eps"] = m.rms_norm_eps;
  if (m.rope_scaling.enabled()) {
    const RopeScaling& s = m.rope_scaling;
    c["rope_scaling"] = {{"factor", s.factor},
                         {"high_freq_factor", s.high_freq_factor},
                         {"low_freq_factor", s.low_freq_factor},
                         {"original_max_position_embeddings", s.original_max_position_embeddings},
                         {"rope_type", s.type}};
  } else {
    c["rope_scaling"] = nullptr;
  }
  c["rope_theta"] = m.rope_theta;
  c["tie_word_embeddings"] = m.tie_embeddings;
  c["torch_dtype"] = torch_dtype_name(options.torch_dtype);
  c["use_cache"] = true;
  c["vocab_size"] = m.vocab_size;
  return c.dump(2) + "\n";
}

}  // namespace tessera
