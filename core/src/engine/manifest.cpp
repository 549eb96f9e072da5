// Manifest parsing, checking and writing.
//
// Every error is a ManifestError at the file:line:column of the offending key or
// value (or of the table that lacks a key), saying what was found and what was
// expected. Checks that span the whole document (layer coverage) point at the
// first [[layers]] entry, or line 1 when there is none.
#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>
#include <tessera/engine/error.hpp>
#include <tessera/engine/input_file.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/engine/toml_reader.hpp>
#include <utility>

namespace fs = std::filesystem;

namespace tessera {

namespace {

using toml_fields::check_keys;
using toml_fields::get_bool;
using toml_fields::get_choice;
using toml_fields::get_int;
using toml_fields::get_int32;
using toml_fields::get_positive_number;
using toml_fields::get_string;
using toml_fields::get_table;
using toml_fields::join;
using toml_fields::key_in;
using toml_fields::Reader;
using toml_fields::resolve;
using toml_fields::type_description;

// ------------------------------------------------------------------ [model]

const std::vector<std::string> kModelKeys = {
    "name",         "hidden_size",       "num_layers",   "num_heads",    "head_dim",
    "num_kv_heads", "intermediate_size", "vocab_size",   "rope_theta",   "rms_norm_eps",
    "max_seq_len",  "tie_embeddings",    "bos_token_id", "eos_token_id", "rope_scaling"};

const std::vector<std::string> kRopeScalingKeys = {
    "type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};

std::string float_text(double value);  // defined with the writer below

// [model] rope_scaling = { type = "llama3", factor = 8.0, low_freq_factor = 1.0,
//                          high_freq_factor = 4.0, original_max_position_embeddings = 8192 }
RopeScaling parse_rope_scaling(const Reader& r, const toml::table& t) {
  const std::string where = "[model] rope_scaling";
  check_keys(r, t, where, kRopeScalingKeys);
  const std::string needs =
      "; type \"llama3\" needs factor, low_freq_factor, high_freq_factor and "
      "original_max_position_embeddings";
  RopeScaling s;
  const std::optional<std::string> type = get_choice(r, t, "type", where, {"llama3"});
  if (!type) r.fail(t.source(), "missing required key 'type' in " + where + needs);
  s.type = *type;
  auto required_number = [&](std::string_view key) {
    const std::optional<double> value = get_positive_number(r, t, key, where);
    if (!value)
      r.fail(t.source(), "missing required key '" + std::string(key) + "' in " + where + needs);
    return *value;
  };
  s.factor = required_number("factor");
  s.low_freq_factor = required_number("low_freq_factor");
  s.high_freq_factor = required_number("high_freq_factor");
  if (!(s.high_freq_factor > s.low_freq_factor)) {
    r.fail(t.get("high_freq_factor")->source(),
           "high_freq_factor in " + where + " must be greater than low_freq_factor (" +
               float_text(s.high_freq_factor) + " <= " + float_text(s.low_freq_factor) + ")");
  }
  const std::optional<int32_t> context =
      get_int32(r, t, "original_max_position_embeddings", where, 1);
  if (!context) {
    r.fail(t.source(),
           "missing required key 'original_max_position_embeddings' in " + where + needs);
  }
  s.original_max_position_embeddings = *context;
  return s;
}

ModelSpec parse_model(const Reader& r, const toml::table& root) {
  const toml::table* t = get_table(r, root, "model", "the document", " ([model])");
  if (t == nullptr) {
    r.fail(root.source(),
           "missing [model] table; it needs at least hidden_size, num_layers, "
           "num_heads and vocab_size");
  }
  const std::string where = "[model]";
  check_keys(r, *t, where, kModelKeys);
  auto required = [&](std::string_view key) {
    std::optional<int32_t> v = get_int32(r, *t, key, where, 1);
    if (!v) r.fail(t->source(), "missing required key '" + std::string(key) + "' in [model]");
    return *v;
  };

  ModelSpec m;
  m.name = get_string(r, *t, "name", where).value_or("");
  m.hidden_size = required("hidden_size");
  m.num_layers = required("num_layers");
  if (m.num_layers > kMaxLayers)
    r.fail(t->get("num_layers")->source(), "'num_layers' in [model] is " +
                                               std::to_string(m.num_layers) +
                                               "; expected at most " + std::to_string(kMaxLayers));
  m.num_heads = required("num_heads");
  m.vocab_size = required("vocab_size");

  if (std::optional<int32_t> head_dim = get_int32(r, *t, "head_dim", where, 1)) {
    m.head_dim = *head_dim;
  } else if (m.hidden_size % m.num_heads != 0) {
    r.fail(t->get("num_heads")->source(),
           "hidden_size " + std::to_string(m.hidden_size) + " is not divisible by num_heads " +
               std::to_string(m.num_heads) + "; give head_dim explicitly in [model]");
  } else {
    m.head_dim = m.hidden_size / m.num_heads;
  }
  m.num_kv_heads = get_int32(r, *t, "num_kv_heads", where, 1).value_or(m.num_heads);
  if (m.num_heads % m.num_kv_heads != 0) {
    r.fail(t->get("num_kv_heads")->source(),
           "num_kv_heads " + std::to_string(m.num_kv_heads) + " does not divide num_heads " +
               std::to_string(m.num_heads) + "; each KV head must serve a whole group of heads");
  }
  m.intermediate_size = get_int32(r, *t, "intermediate_size", where, 1).value_or(0);
  m.rope_theta = get_positive_number(r, *t, "rope_theta", where).value_or(m.rope_theta);
  m.rms_norm_eps = get_positive_number(r, *t, "rms_norm_eps", where).value_or(m.rms_norm_eps);
  if (const toml::table* scaling = get_table(r, *t, "rope_scaling", where,
                                             " like { type = \"llama3\", factor = 8.0, ... }")) {
    m.rope_scaling = parse_rope_scaling(r, *scaling);
  }
  m.max_seq_len = get_int32(r, *t, "max_seq_len", where, 1).value_or(m.max_seq_len);
  m.tie_embeddings = get_bool(r, *t, "tie_embeddings", where).value_or(false);

  const std::string token_range =
      "; expected a token id in [0, vocab_size = " + std::to_string(m.vocab_size) + ")";
  if (std::optional<int64_t> bos = get_int(r, *t, "bos_token_id", where)) {
    if (*bos < 0 || *bos >= m.vocab_size) {
      r.fail(t->get("bos_token_id")->source(),
             "bos_token_id is " + std::to_string(*bos) + token_range);
    }
    m.bos_token_id = static_cast<int32_t>(*bos);
  }
  if (const toml::node* eos = t->get("eos_token_id")) {
    auto add = [&](const toml::node& item) {
      const auto* v = item.as_integer();
      if (v == nullptr) {
        r.fail(item.source(), "eos_token_id must be an integer or a list of integers, got " +
                                  std::string(type_description(item)));
      }
      if (v->get() < 0 || v->get() >= m.vocab_size) {
        r.fail(item.source(), "eos_token_id " + std::to_string(v->get()) + token_range);
      }
      m.eos_token_ids.push_back(v->get());
    };
    if (const auto* list = eos->as_array()) {
      for (const toml::node& item : *list) add(item);
    } else {
      add(*eos);
    }
  }
  return m;
}

// ---------------------------------------------------------------- [weights]

WeightsSpec parse_weights(const Reader& r, const toml::table& root, const fs::path& base_dir) {
  const toml::table* t = get_table(r, root, "weights", "the document", " ([weights])");
  if (t == nullptr) {
    r.fail(root.source(),
           "missing [weights] table; expected format = \"safetensors\" or \"gguf\" with "
           "a path, or format = \"random\" with an optional seed");
  }
  const std::string where = "[weights]";
  check_keys(r, *t, where, {"format", "path", "seed", "unread"});
  WeightsSpec w;
  w.where = r.location(t->source());
  std::optional<std::string> format =
      get_choice(r, *t, "format", where, {"safetensors", "gguf", "hf", "random"});
  if (!format) r.fail(t->source(), "missing required key 'format' in [weights]");
  w.format = *format;
  if (w.format != "random") {  // a file format
    std::optional<std::string> path = get_string(r, *t, "path", where);
    if (!path || path->empty()) {
      r.fail(path ? t->get("path")->source() : t->source(),
             "format = \"" + w.format +
                 "\" needs a non-empty 'path' in [weights] (relative paths are resolved against "
                 "the manifest's folder)");
    }
    if (const toml::node* seed = t->get("seed")) {
      r.fail(seed->source(), "'seed' in [weights] applies only to format = \"random\"");
    }
    w.path = resolve(base_dir, *path);
  } else {
    if (const toml::node* path = t->get("path")) {
      r.fail(path->source(),
             "'path' in [weights] applies only to format = \"safetensors\", \"gguf\" or "
             "\"hf\"");
    }
    const std::optional<int64_t> seed = get_int(r, *t, "seed", where);
    if (seed && *seed < 0) {
      r.fail(t->get("seed")->source(),
             "'seed' in [weights] is " + std::to_string(*seed) + "; expected an integer >= 0");
    }
    w.seed = static_cast<uint64_t>(seed.value_or(0));
  }
  if (const std::optional<std::string> unread =
          get_choice(r, *t, "unread", where, {"refuse", "allow"})) {
    w.allow_unread = *unread == "allow";
  }
  return w;
}

// ------------------------------------------------------------ block tables

// Converts one extra key of a block table into a parameter.
ParamValue param_value(const Reader& r, const toml::node& node, std::string_view key,
                       const std::string& where) {
  if (const auto* v = node.as_integer()) return v->get();
  if (const auto* v = node.as_floating_point()) return v->get();
  if (const auto* v = node.as_boolean()) return v->get();
  if (const auto* v = node.as_string()) return v->get();
  if (const auto* list = node.as_array()) {
    std::vector<int64_t> ints;
    for (const toml::node& item : *list) {
      const auto* i = item.as_integer();
      if (i == nullptr) {
        r.fail(item.source(), "parameter " + key_in(key, where) +
                                  " is a list, so its elements must be integers; got " +
                                  type_description(item));
      }
      ints.push_back(i->get());
    }
    return ints;
  }
  r.fail(node.source(), "parameter " + key_in(key, where) +
                            " must be an integer, float, boolean, string or list of integers; "
                            "got " +
                            type_description(node));
}

// A table { kind = "...", plugin = "...", <params> }. Every key other than kind
// and plugin (and prefix, in a layer's blocks) is a parameter passed to the provider
// untouched.
BlockSpec parse_block(const Reader& r, const toml::table& t, const std::string& where,
                      bool layer_block) {
  BlockSpec b;
  b.where = r.location(t.source());
  std::optional<std::string> kind = get_string(r, t, "kind", where);
  if (!kind || kind->empty()) {
    r.fail(kind ? t.get("kind")->source() : t.source(),
           "missing 'kind' in " + where + " (a non-empty string naming the block, e.g. \"gqa\")");
  }
  b.kind = *kind;
  if (std::optional<std::string> plugin = get_string(r, t, "plugin", where)) {
    if (plugin->empty()) {
      r.fail(t.get("plugin")->source(),
             "'plugin' in " + where + " is empty; name a plugin or leave the key out");
    }
    b.plugin = *plugin;
  }
  if (layer_block) {
    if (std::optional<std::string> prefix = get_string(r, t, "prefix", where)) {
      if (prefix->empty()) {
        r.fail(t.get("prefix")->source(),
               "'prefix' in " + where +
                   " is empty; name the start of the block's weight names (like "
                   "\"model.layers.3.variants.ffn_50pct.\") or leave the key out");
      }
      b.prefix = *prefix;
    }
  }
  // Parameters in document order, so that to_toml writes them as the user did.
  std::vector<std::pair<const toml::key*, const toml::node*>> extras;
  for (auto&& [key, node] : t) {
    const bool reserved =
        key.str() == "kind" || key.str() == "plugin" || (layer_block && key.str() == "prefix");
    if (!reserved) extras.emplace_back(&key, &node);
  }
  std::sort(extras.begin(), extras.end(), [](const auto& a, const auto& b2) {
    const auto& x = a.first->source().begin;
    const auto& y = b2.first->source().begin;
    return x.line != y.line ? x.line < y.line : x.column < y.column;
  });
  for (const auto& [key, node] : extras) {
    b.params.set(std::string(key->str()), param_value(r, *node, key->str(), where));
  }
  return b;
}

// --------------------------------------------------------------- [[layers]]

struct LayerRange {
  int64_t first = 0;
  int64_t last = 0;
  int line = 0;
  std::string text;  // as written, for messages
};

LayerRange parse_range(const Reader& r, const toml::table& entry, const ModelSpec& m,
                       const std::string& where) {
  const toml::node* node = entry.get("range");
  if (node == nullptr) {
    r.fail(entry.source(), "missing 'range' in " + where +
                               " (\"FIRST-LAST\" like \"0-15\", or one layer as \"7\" or 7)");
  }
  LayerRange range;
  range.line = static_cast<int>(node->source().begin.line);
  if (const auto* v = node->as_integer()) {
    range.first = range.last = v->get();
    range.text = std::to_string(v->get());
  } else if (const auto* s = node->as_string()) {
    range.text = s->get();
    auto malformed = [&] {
      r.fail(node->source(), "malformed range \"" + range.text + "\" in " + where +
                                 "; expected \"FIRST-LAST\" like \"0-15\", or one layer like "
                                 "\"7\"");
    };
    auto number = [&](std::string_view text) {
      while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
      while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
      int64_t value = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size()) malformed();
      return value;
    };
    const std::string_view text = range.text;
    const size_t dash = text.find('-');
    if (dash == std::string_view::npos) {
      range.first = range.last = number(text);
    } else {
      range.first = number(text.substr(0, dash));
      range.last = number(text.substr(dash + 1));  // a second '-' fails here
    }
  } else {
    r.fail(node->source(), "'range' in " + where +
                               " must be a string like \"0-15\" or an integer, got " +
                               type_description(*node));
  }
  if (range.first < 0) {
    r.fail(node->source(), "range \"" + range.text + "\" in " + where + " starts below layer 0");
  }
  if (range.last < range.first) {
    r.fail(node->source(), "range \"" + range.text + "\" in " + where + " is reversed; write \"" +
                               std::to_string(range.last) + "-" + std::to_string(range.first) +
                               "\"");
  }
  if (range.last >= m.num_layers) {
    r.fail(node->source(), "range \"" + range.text + "\" in " + where +
                               " goes beyond num_layers = " + std::to_string(m.num_layers) +
                               " (layers are 0-" + std::to_string(m.num_layers - 1) + ")");
  }
  return range;
}

// "3-5, 9" for {3, 4, 5, 9}.
std::string compress_layers(const std::vector<int32_t>& layers) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    parts.push_back(i == j ? std::to_string(layers[i])
                           : std::to_string(layers[i]) + "-" + std::to_string(layers[j]));
    i = j + 1;
  }
  return join(parts);
}

std::vector<LayerSpec> parse_layers(const Reader& r, const toml::table& root, const ModelSpec& m) {
  const toml::node* node = root.get("layers");
  const toml::array* entries = nullptr;
  if (node != nullptr) {
    entries = node->as_array();
    if (entries == nullptr || !entries->is_array_of_tables()) {
      r.fail(node->source(),
             "'layers' must be an array of tables written as [[layers]] "
             "entries, got " +
                 std::string(type_description(*node)));
    }
  }
  std::vector<std::optional<LayerSpec>> layers(static_cast<size_t>(m.num_layers));
  std::vector<LayerRange> owner(static_cast<size_t>(m.num_layers));
  if (entries != nullptr) {
    for (size_t index = 0; index < entries->size(); ++index) {
      const toml::table& entry = *(*entries)[index].as_table();
      const std::string where = "[[layers]] entry #" + std::to_string(index + 1) + " (line " +
                                std::to_string(entry.source().begin.line) + ")";
      check_keys(r, entry, "[[layers]]", {"range", "attention", "ffn"});
      const LayerRange range = parse_range(r, entry, m, where);

      LayerSpec spec;
      const toml::table* attention =
          get_table(r, entry, "attention", where, " like { kind = \"gqa\" }");
      // An omitted block means the Llama default: gqa with the model's
      // num_kv_heads, swiglu with the model's intermediate_size.
      if (attention != nullptr) {
        spec.attention = parse_block(r, *attention, "the attention of " + where, true);
      } else {
        spec.attention.kind = "gqa";
        spec.attention.where = r.location(entry.source());
      }
      const toml::table* ffn = get_table(r, entry, "ffn", where, " like { kind = \"swiglu\" }");
      if (ffn != nullptr) {
        spec.ffn = parse_block(r, *ffn, "the ffn of " + where, true);
      } else {
        spec.ffn.kind = "swiglu";
        spec.ffn.where = r.location(entry.source());
      }

      for (int64_t layer = range.first; layer <= range.last; ++layer) {
        const auto i = static_cast<size_t>(layer);
        if (layers[i]) {
          r.fail(entry.get("range")->source(),
                 "layer " + std::to_string(layer) +
                     " is covered twice: by the [[layers]] entry "
                     "at line " +
                     std::to_string(owner[i].line) + " (range \"" + owner[i].text +
                     "\") and by the one at line " + std::to_string(range.line) + " (range \"" +
                     range.text + "\"); each layer must be covered exactly once");
        }
        layers[i] = spec;
        owner[i] = range;
      }
    }
  }

  std::vector<int32_t> missing;
  for (int32_t i = 0; i < m.num_layers; ++i) {
    if (!layers[static_cast<size_t>(i)]) missing.push_back(i);
  }
  if (!missing.empty()) {
    const toml::source_region where =
        entries != nullptr && !entries->empty() ? (*entries)[0].source() : toml::source_region{};
    const std::string noun = missing.size() == 1 ? "layer " : "layers ";
    r.fail(where, noun + compress_layers(missing) + " of num_layers = " +
                      std::to_string(m.num_layers) + " " + (missing.size() == 1 ? "is" : "are") +
                      " not covered by any [[layers]] entry; every layer 0-" +
                      std::to_string(m.num_layers - 1) + " must be covered exactly once");
  }
  std::vector<LayerSpec> out;
  out.reserve(layers.size());
  for (std::optional<LayerSpec>& layer : layers) out.push_back(std::move(*layer));
  return out;
}

// ---------------------------------------------------------------- [runtime]

RuntimeSpec parse_runtime(const Reader& r, const toml::table& root, const fs::path& base_dir) {
  RuntimeSpec rt;
  rt.decoder.kind = "greedy";
  rt.parallel.kind = "local";
  const toml::table* t = get_table(r, root, "runtime", "the document", " ([runtime])");
  if (t == nullptr) return rt;
  const std::string where = "[runtime]";
  check_keys(r, *t, where,
             {"device", "dtype", "weight_dtype", "kv_dtype", "threads", "plugin_paths", "decoder",
              "parallel"});
  rt.device = get_choice(r, *t, "device", where, {"cpu", "cuda"}).value_or("cpu");
  if (std::optional<std::string> dtype =
          get_choice(r, *t, "dtype", where, {"f32", "f16", "bf16"})) {
    rt.dtype = *dtype == "f32" ? TS_F32 : *dtype == "f16" ? TS_F16 : TS_BF16;
  }
  if (std::optional<std::string> dtype =
          get_choice(r, *t, "weight_dtype", where, {"f32", "f16", "bf16", "stored"})) {
    rt.weights_as_stored = *dtype == "stored";
    rt.weight_dtype = *dtype == "f16" ? TS_F16 : *dtype == "bf16" ? TS_BF16 : TS_F32;
  }
  if (std::optional<std::string> dtype =
          get_choice(r, *t, "kv_dtype", where, {"f32", "f16", "bf16"})) {
    rt.kv_dtype = *dtype == "f32" ? TS_F32 : *dtype == "f16" ? TS_F16 : TS_BF16;
  }
  rt.threads = get_int32(r, *t, "threads", where, 0, ThreadPool::kMaxThreads).value_or(0);
  if (const toml::node* node = t->get("plugin_paths")) {
    const toml::array* list = node->as_array();
    if (list == nullptr) {
      r.fail(node->source(), "'plugin_paths' in [runtime] must be a list of strings, got " +
                                 std::string(type_description(*node)));
    }
    for (const toml::node& item : *list) {
      const auto* s = item.as_string();
      if (s == nullptr || s->get().empty()) {
        r.fail(item.source(),
               "each entry of 'plugin_paths' in [runtime] must be a non-empty "
               "string (a folder), got " +
                   std::string(s ? "an empty string" : type_description(item)));
      }
      rt.plugin_paths.push_back(resolve(base_dir, s->get()));
      rt.plugin_path_locations.push_back(r.location(item.source()));
    }
  }
  if (const toml::table* d = get_table(r, *t, "decoder", where, " like { kind = \"greedy\" }")) {
    rt.decoder = parse_block(r, *d, "[runtime.decoder]", false);
  }
  if (const toml::table* p = get_table(r, *t, "parallel", where, " like { kind = \"local\" }")) {
    rt.parallel = parse_block(r, *p, "[runtime.parallel]", false);
  }
  return rt;
}

// ------------------------------------------------------------------ writing

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char buffer[8];
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(c));
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// The shortest text that reads back as the same double, always a TOML float.
std::string float_text(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, result.ptr);
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

std::string value_text(const ParamValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          return std::to_string(v);
        } else if constexpr (std::is_same_v<T, double>) {
          return float_text(v);
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          return toml_string(v);
        } else {
          std::string out = "[";
          for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
          return out + "]";
        }
      },
      value);
}

// Keys that TOML accepts bare; anything else is quoted.
std::string key_text(const std::string& key) {
  const bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  return bare ? key : toml_string(key);
}

std::string inline_block(const BlockSpec& b) {
  std::string out = "{ kind = " + toml_string(b.kind);
  if (!b.plugin.empty()) out += ", plugin = " + toml_string(b.plugin);
  if (!b.prefix.empty()) out += ", prefix = " + toml_string(b.prefix);
  for (const Param& p : b.params.items())
    out += ", " + key_text(p.key) + " = " + value_text(p.value);
  return out + " }";
}

void write_block_table(std::ostringstream& out, const std::string& header, const BlockSpec& b) {
  out << "\n[" << header << "]\nkind = " << toml_string(b.kind) << "\n";
  if (!b.plugin.empty()) out << "plugin = " << toml_string(b.plugin) << "\n";
  for (const Param& p : b.params.items())
    out << key_text(p.key) << " = " << value_text(p.value) << "\n";
}

bool same_params(const ParamList& a, const ParamList& b) {
  if (a.items().size() != b.items().size()) return false;
  for (const Param& p : a.items()) {
    const ParamValue* other = b.find(p.key);
    if (other == nullptr || !(*other == p.value)) return false;
  }
  return true;
}

bool same_block(const BlockSpec& a, const BlockSpec& b) {
  return a.kind == b.kind && a.plugin == b.plugin && a.prefix == b.prefix &&
         same_params(a.params, b.params);
}

const char* dtype_text(ts_dtype dtype) {
  switch (dtype) {
    case TS_F16:
      return "f16";
    case TS_BF16:
      return "bf16";
    default:
      return "f32";
  }
}

}  // namespace

// ------------------------------------------------------------------ public

ParamList Manifest::block_params(const BlockSpec& block) const {
  ParamList params;
  params.set("hidden_size", int64_t{model.hidden_size});
  params.set("num_heads", int64_t{model.num_heads});
  params.set("head_dim", int64_t{model.head_dim});
  params.set("kv_heads", int64_t{model.num_kv_heads > 0 ? model.num_kv_heads : model.num_heads});
  params.set("intermediate_size", int64_t{model.intermediate_size});
  params.set("rope_theta", model.rope_theta);
  if (model.rope_scaling.enabled()) {
    const RopeScaling& s = model.rope_scaling;
    params.set("rope_scaling_type", s.type);
    params.set("rope_scaling_factor", s.factor);
    params.set("rope_scaling_low_freq_factor", s.low_freq_factor);
    params.set("rope_scaling_high_freq_factor", s.high_freq_factor);
    params.set("rope_scaling_original_max_position_embeddings",
               int64_t{s.original_max_position_embeddings});
  }
  params.set("rms_norm_eps", model.rms_norm_eps);
  params.set("max_seq_len", int64_t{model.max_seq_len});
  params.set("vocab_size", int64_t{model.vocab_size});
  if (runtime.kv_dtype) params.set("kv_dtype", std::string(dtype_text(*runtime.kv_dtype)));
  params.merge(block.params);
  return params;
}

Manifest parse_manifest(std::string_view text, const std::string& source_name,
                        const fs::path& base_dir) {
  const toml::table root = toml_fields::parse_document(text, source_name);
  const Reader r(source_name);
  check_keys(r, root, "the top level", {"model", "weights", "layers", "runtime"});
  Manifest m;
  m.model = parse_model(r, root);
  m.weights = parse_weights(r, root, base_dir);
  m.runtime = parse_runtime(r, root, base_dir);
  m.layers = parse_layers(r, root, m.model);
  return m;
}

Manifest load_manifest(const fs::path& path) {
  if (const std::string what = not_a_regular_file(path); !what.empty())
    throw ManifestError(path.string(), 1, 1, "the manifest is " + what + ", not a regular file");
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::error_code ec;
    const bool exists = fs::exists(path, ec);
    throw ManifestError(path.string(), 1, 1,
                        exists ? "cannot read the manifest file" : "manifest file does not exist");
  }
  std::ostringstream text;
  text << file.rdbuf();
  std::error_code ec;
  fs::path base_dir = fs::absolute(path, ec).parent_path();
  if (ec) base_dir = path.parent_path();
  Manifest m = parse_manifest(text.str(), path.string(), base_dir);
  m.source = path;
  return m;
}

std::string to_toml(const Manifest& manifest) {
  const ModelSpec& m = manifest.model;
  std::ostringstream out;
  out << "[model]\n";
  if (!m.name.empty()) out << "name = " << toml_string(m.name) << "\n";
  out << "hidden_size = " << m.hidden_size << "\n"
      << "num_layers = " << m.num_layers << "\n"
      << "num_heads = " << m.num_heads << "\n"
      << "head_dim = " << m.head_dim << "\n"
      << "num_kv_heads = " << (m.num_kv_heads > 0 ? m.num_kv_heads : m.num_heads) << "\n";
  if (m.intermediate_size > 0) out << "intermediate_size = " << m.intermediate_size << "\n";
  out << "vocab_size = " << m.vocab_size << "\n"
      << "rope_theta = " << float_text(m.rope_theta) << "\n";
  if (m.rope_scaling.enabled()) {
    const RopeScaling& s = m.rope_scaling;
    out << "rope_scaling = { type = " << toml_string(s.type)
        << ", factor = " << float_text(s.factor)
        << ", low_freq_factor = " << float_text(s.low_freq_factor)
        << ", high_freq_factor = " << float_text(s.high_freq_factor)
        << ", original_max_position_embeddings = " << s.original_max_position_embeddings << " }\n";
  }
  out << "rms_norm_eps = " << float_text(m.rms_norm_eps) << "\n"
      << "max_seq_len = " << m.max_seq_len << "\n"
      << "tie_embeddings = " << (m.tie_embeddings ? "true" : "false") << "\n";
  if (m.bos_token_id >= 0) out << "bos_token_id = " << m.bos_token_id << "\n";
  if (m.eos_token_ids.size() == 1) {
    out << "eos_token_id = " << m.eos_token_ids[0] << "\n";
  } else if (!m.eos_token_ids.empty()) {
    out << "eos_token_id = " << value_text(m.eos_token_ids) << "\n";
  }

  const WeightsSpec& w = manifest.weights;
  out << "\n[weights]\nformat = " << toml_string(w.format) << "\n";
  if (w.format != "random") {
    out << "path = " << toml_string(w.path.generic_string()) << "\n";
  } else {
    out << "seed = " << w.seed << "\n";
  }
  if (w.allow_unread) out << "unread = \"allow\"\n";

  const RuntimeSpec& rt = manifest.runtime;
  out << "\n[runtime]\ndevice = " << toml_string(rt.device)
      << "\ndtype = " << toml_string(dtype_text(rt.dtype)) << "\nweight_dtype = "
      << toml_string(rt.weights_as_stored ? "stored" : dtype_text(rt.weight_dtype));
  if (rt.kv_dtype) out << "\nkv_dtype = " << toml_string(dtype_text(*rt.kv_dtype));
  out << "\nthreads = " << rt.threads << "\n";
  if (!rt.plugin_paths.empty()) {
    out << "plugin_paths = [";
    for (size_t i = 0; i < rt.plugin_paths.size(); ++i) {
      out << (i ? ", " : "") << toml_string(rt.plugin_paths[i].generic_string());
    }
    out << "]\n";
  }
  if (!rt.decoder.kind.empty()) write_block_table(out, "runtime.decoder", rt.decoder);
  if (!rt.parallel.kind.empty()) write_block_table(out, "runtime.parallel", rt.parallel);

  // Consecutive layers with equal blocks become one [[layers]] range.
  const std::vector<LayerSpec>& layers = manifest.layers;
  for (size_t first = 0; first < layers.size();) {
    size_t last = first;
    while (last + 1 < layers.size() &&
           same_block(layers[last + 1].attention, layers[first].attention) &&
           same_block(layers[last + 1].ffn, layers[first].ffn)) {
      ++last;
    }
    out << "\n[[layers]]\nrange = \""
        << (first == last ? std::to_string(first)
                          : std::to_string(first) + "-" + std::to_string(last))
        << "\"\nattention = " << inline_block(layers[first].attention)
        << "\nffn = " << inline_block(layers[first].ffn) << "\n";
    first = last + 1;
  }
  return out.str();
}

}  // namespace tessera
