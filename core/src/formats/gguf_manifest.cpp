// GGUF metadata (architectures llama and deci) -> Manifest.
#include <tessera/engine/error.hpp>
#include <tessera/formats/gguf_model.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace tessera {
namespace {

// The metadata of one file, read under its architecture's prefix, with errors that name the
// file and the key.
class ArchMetadata {
 public:
  ArchMetadata(const GgufFile& file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  const std::string& arch() const { return arch_; }
  std::string key(std::string_view name) const { return arch_ + "." + std::string(name); }
  const GgufValue* find(std::string_view name) const { return file_.find(key(name)); }

  [[noreturn]] void fail(const std::string& what) const {
    throw ModelError("GGUF file '" + file_.name() + "': " + what);
  }

  // A required size: an integer in [minimum, INT32_MAX].
  int32_t size(std::string_view name, int64_t minimum) const {
    return checked(key(name), file_.get_int(key(name)), minimum);
  }
  std::optional<int32_t> optional_size(std::string_view name, int64_t minimum) const {
    if (find(name) == nullptr) return std::nullopt;
    return size(name, minimum);
  }

  // A per-layer count: one integer for every layer, or an array with one entry per layer.
  std::vector<int32_t> per_layer(std::string_view name, int32_t n_layers,
                                 std::optional<std::vector<int32_t>> fallback = {}) const {
    const std::string k = key(name);
    const GgufValue* value = file_.find(k);
    if (value == nullptr) {
      if (fallback) return *fallback;
      fail("metadata key '" + k + "' is missing");
    }
    if (!value->is_array()) {
      return std::vector<int32_t>(static_cast<size_t>(n_layers), checked(k, file_.get_int(k), 0));
    }
    const std::optional<std::vector<int64_t>> items = value->as_int_array();
    if (!items) fail("metadata key '" + k + "' is " + value->to_string() + "; expected integers");
    if (items->size() != static_cast<size_t>(n_layers)) {
      fail("metadata key '" + k + "' has " + std::to_string(items->size()) +
           " entries; expected one per layer (" + key("block_count") + " = " +
           std::to_string(n_layers) + ")");
    }
    std::vector<int32_t> out;
    for (size_t i = 0; i < items->size(); ++i) {
      out.push_back(checked(k + "[" + std::to_string(i) + "]", (*items)[i], 0));
    }
    return out;
  }

 private:
  int32_t checked(const std::string& k, int64_t value, int64_t minimum) const {
    if (value < minimum || value > std::numeric_limits<int32_t>::max()) {
      fail("metadata key '" + k + "' is " + std::to_string(value) + "; expected an integer in [" +
           std::to_string(minimum) + ", " + std::to_string(std::numeric_limits<int32_t>::max()) +
           "]");
    }
    return static_cast<int32_t>(value);
  }

  const GgufFile& file_;
  std::string arch_;
};

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

std::vector<std::string> gguf_supported_architectures() {
  return {"deci", "llama"};
}

Manifest gguf_manifest(const GgufFile& file) {
  const std::string file_where = "GGUF file '" + file.name() + "'";
  const std::string arch = file.get_string("general.architecture");
  bool supported = false;
  for (const std::string& a : gguf_supported_architectures()) supported |= a == arch;
  if (!supported) {
    throw ModelError(file_where + ": architecture '" + arch +
                     "' (metadata key 'general.architecture') is not supported; supported "
                     "architectures: " +
                     joined(gguf_supported_architectures()));
  }
  const ArchMetadata meta(file, arch);
  const bool deci = arch == "deci";

  Manifest m;
  m.source = file.name();
  ModelSpec& model = m.model;
  model.name = file.get_string("general.name", "");
  model.num_layers = meta.size("block_count", 1);
  model.hidden_size = meta.size("embedding_length", 1);
  model.max_seq_len = meta.size("context_length", 1);
  model.rope_theta = file.get_float(meta.key("rope.freq_base"), 10000.0);
  model.rms_norm_eps = file.get_float(meta.key("attention.layer_norm_rms_epsilon"));
  if (!(model.rope_theta > 0) || !std::isfinite(model.rope_theta)) {
    meta.fail("metadata key '" + meta.key("rope.freq_base") + "' is " +
              std::to_string(model.rope_theta) + "; expected a finite number > 0");
  }
  if (!(model.rms_norm_eps > 0) || !std::isfinite(model.rms_norm_eps)) {
    meta.fail("metadata key '" + meta.key("attention.layer_norm_rms_epsilon") + "' is " +
              std::to_string(model.rms_norm_eps) + "; expected a finite number > 0");
  }
  if (const std::optional<int32_t> experts = meta.optional_size("expert_count", 0);
      experts && *experts > 0) {
    meta.fail("metadata key '" + meta.key("expert_count") + "' is " + std::to_string(*experts) +
              "; mixture-of-experts layers are not supported");
  }

  // Vocabulary: the architecture's key, else the tokenizer's, else the embedding's rows.
  if (const std::optional<int32_t> vocab = meta.optional_size("vocab_size", 1)) {
    model.vocab_size = *vocab;
  } else if (const GgufValue* tokens = file.find("tokenizer.ggml.tokens");
             tokens != nullptr && tokens->is_array() && tokens->size() > 0) {
    model.vocab_size = static_cast<int32_t>(
        std::min<uint64_t>(tokens->size(), std::numeric_limits<int32_t>::max()));
  } else if (const GgufTensorInfo* embed = file.find_tensor("token_embd.weight");
             embed != nullptr && embed->ne.size() == 2 && embed->ne[1] > 0 &&
             embed->ne[1] <= std::numeric_limits<int32_t>::max()) {
    model.vocab_size = static_cast<int32_t>(embed->ne[1]);
  } else {
    meta.fail(
        "cannot tell the vocabulary size: no metadata key '" + meta.key("vocab_size") +
        "', no tokenizer.ggml.tokens and no 2-D tensor 'token_embd.weight' of a plausible size");
  }
  model.tie_embeddings = file.find_tensor("output.weight") == nullptr;

  const int32_t n_layers = model.num_layers;
  const std::vector<int32_t> heads = meta.per_layer("attention.head_count", n_layers);
  const std::vector<int32_t> kv_heads = meta.per_layer("attention.head_count_kv", n_layers, heads);
  const std::vector<int32_t> ffn = meta.per_layer("feed_forward_length", n_layers);

  // The model-wide defaults come from the first layer that has each block.
  for (int32_t i = 0; i < n_layers; ++i) {
    const auto l = static_cast<size_t>(i);
    if (model.num_heads == 0 && heads[l] > 0 && kv_heads[l] > 0) {
      model.num_heads = heads[l];
      model.num_kv_heads = kv_heads[l];
    }
    if (model.intermediate_size == 0 && ffn[l] > 0) model.intermediate_size = ffn[l];
  }
  if (model.num_heads == 0) {  // no softmax attention at all: any head count fits
    for (const int32_t h : heads) model.num_heads = std::max(model.num_heads, h);
    model.num_heads = std::max(model.num_heads, 1);
    model.num_kv_heads = model.num_heads;
  }

  // Head size: attention.key_length when given, else hidden / heads.
  if (const std::optional<int32_t> key_length = meta.optional_size("attention.key_length", 1)) {
    model.head_dim = *key_length;
  } else if (model.hidden_size % model.num_heads != 0) {
    meta.fail("metadata key '" + meta.key("embedding_length") + "' (" +
              std::to_string(model.hidden_size) + ") is not a multiple of the head count " +
              std::to_string(model.num_heads) + " and '" + meta.key("attention.key_length") +
              "' is absent; cannot tell the head size");
  } else {
    model.head_dim = model.hidden_size / model.num_heads;
  }
  if (const std::optional<int32_t> value_length = meta.optional_size("attention.value_length", 1);
      value_length && *value_length != model.head_dim) {
    meta.fail("metadata key '" + meta.key("attention.value_length") + "' is " +
              std::to_string(*value_length) + " but the key head size is " +
              std::to_string(model.head_dim) + "; expected equal key and value head sizes");
  }
  if (const std::optional<int32_t> rope_dims = meta.optional_size("rope.dimension_count", 1);
      rope_dims && *rope_dims != model.head_dim) {
    meta.fail("metadata key '" + meta.key("rope.dimension_count") + "' is " +
              std::to_string(*rope_dims) + " but the head size is " +
              std::to_string(model.head_dim) + "; expected RoPE over the whole head");
  }
  if (model.head_dim % 2 != 0) {
    meta.fail("the head size is " + std::to_string(model.head_dim) +
              "; RoPE needs an even head size");
  }
  if (const GgufValue* scale = meta.find("attention.scale")) {
    const double expected = 1.0 / std::sqrt(static_cast<double>(model.head_dim));
    const std::optional<double> x = scale->as_float();
    if (!x || (*x != 0.0 && std::abs(*x - expected) > 1e-6 * expected)) {
      meta.fail("metadata key '" + meta.key("attention.scale") + "' is " + scale->to_string() +
                "; only the standard 1/sqrt(head size) = " + std::to_string(expected) +
                " is supported");
    }
  }

  model.rope_scaling = gguf_rope_scaling(file, arch, model.head_dim, model.rope_theta);

  const std::string heads_key = meta.key("attention.head_count");
  const std::string kv_key = meta.key("attention.head_count_kv");
  const std::string ffn_key = meta.key("feed_forward_length");
  m.layers.resize(static_cast<size_t>(n_layers));
  for (int32_t i = 0; i < n_layers; ++i) {
    const auto l = static_cast<size_t>(i);
    const std::string layer = "layer " + std::to_string(i) + ": ";
    LayerSpec& spec = m.layers[l];
    spec.attention.where.file = file.name();
    spec.ffn.where.file = file.name();
    const std::string values = heads_key + " = " + std::to_string(heads[l]) + ", " + kv_key +
                               " = " + std::to_string(kv_heads[l]);

    if (heads[l] > 0 && kv_heads[l] > 0) {
      if (heads[l] != model.num_heads) {
        meta.fail(layer + heads_key + " is " + std::to_string(heads[l]) + " but earlier layers " +
                  "have " + std::to_string(model.num_heads) +
                  "; expected the same query head count in every attention layer");
      }
      if (heads[l] % kv_heads[l] != 0) {
        meta.fail(layer + values + ": the KV head count does not divide the head count");
      }
      spec.attention.kind = "gqa";
      if (kv_heads[l] != model.num_kv_heads) {
        spec.attention.params.set("kv_heads", int64_t{kv_heads[l]});
      }
    } else if (!deci) {
      meta.fail(layer + values +
                "; attention-free and linear-attention layers exist only in architecture deci");
    } else if (heads[l] > 0) {
      spec.attention.kind = "linear";  // deci: the attention is one [hidden, hidden] matrix
    } else if (kv_heads[l] == 0) {
      spec.attention.kind = "noop";
    } else {
      meta.fail(layer + values + "; a layer with KV heads needs query heads");
    }

    if (ffn[l] > 0) {
      spec.ffn.kind = "swiglu";
      if (ffn[l] != model.intermediate_size) {
        spec.ffn.params.set("intermediate_size", int64_t{ffn[l]});
      }
    } else if (deci) {
      spec.ffn.kind = "noop";
    } else {
      meta.fail(layer + ffn_key + " is 0; FFN-free layers exist only in architecture deci");
    }
  }

  m.weights.format = "gguf";
  m.weights.path = file.name();
  m.weights.where.file = file.name();
  m.runtime.decoder.kind = "greedy";
  m.runtime.parallel.kind = "local";
  return m;
}

}  // namespace tessera
