#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <thread>

namespace tessera {
namespace {

uint64_t fnv1a64(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string manifest_name(const Manifest& m) {
  return m.source.empty() ? (m.model.name.empty() ? std::string("<manifest>") : m.model.name)
                          : m.source.string();
}

// A block's own integer parameter, else the model-wide default.
int64_t block_int(const BlockSpec& block, const std::string& key, int64_t fallback) {
  const ParamValue* value = block.params.find(key);
  if (value == nullptr) return fallback;
  if (const auto* i = std::get_if<int64_t>(value)) return *i;
  if (const auto* d = std::get_if<double>(value)) {
    if (std::floor(*d) == *d) return static_cast<int64_t>(*d);
  }
  throw ModelError("block '" + block.kind + "' parameter '" + key + "' must be an integer");
}

enum class Role { linear, embedding, norm };

Role role_of(const std::string& name) {
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return Role::embedding;
  if (name.find("norm.weight") != std::string::npos) return Role::norm;
  return Role::linear;
}

// Box-Muller with both outputs of each pair (twice as fast as Rng::normal, which
// drops the sine); same 24-bit uniforms and double math, so equally portable.
void fill_normal(Rng rng, float* out, int64_t n, float scale, float offset) {
  constexpr double kTwoPi = 6.283185307179586476925;
  for (int64_t i = 0; i < n; i += 2) {
    const double u1 = (static_cast<double>(rng.next() >> 40) + 1.0) / 16777216.0;
    const double u2 = static_cast<double>(rng.next() >> 40) / 16777216.0;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    out[i] = offset + scale * static_cast<float>(radius * std::cos(kTwoPi * u2));
    if (i + 1 < n) out[i + 1] = offset + scale * static_cast<float>(radius * std::sin(kTwoPi * u2));
  }
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> planned_tensors(const Manifest& m) {
  const ModelSpec& model = m.model;
  const std::string where = manifest_name(m);
  if (model.hidden_size <= 0 || model.vocab_size <= 0) {
    throw ModelError(where + ": random weights need hidden_size > 0 and vocab_size > 0; got " +
                     std::to_string(model.hidden_size) + " and " +
                     std::to_string(model.vocab_size));
  }
  const int64_t hidden = model.hidden_size;
  const int64_t vocab = model.vocab_size;
  const int64_t model_heads = model.num_heads;
  const int64_t model_head_dim =
      model.head_dim > 0 ? model.head_dim : (model_heads > 0 ? hidden / model_heads : 0);
  const int64_t model_kv_heads = model.num_kv_heads > 0 ? model.num_kv_heads : model_heads;

  std::map<std::string, std::vector<int64_t>> planned;
  planned["model.embed_tokens.weight"] = {vocab, hidden};
  planned["model.norm.weight"] = {hidden};
  if (!model.tie_embeddings) planned["lm_head.weight"] = {vocab, hidden};

  for (size_t i = 0; i < m.layers.size(); ++i) {
    const std::string layer = "model.layers." + std::to_string(i) + ".";
    const std::string layer_where = where + ": layer " + std::to_string(i) + ": ";
    const BlockSpec& attn = m.layers[i].attention;
    if (attn.kind != "noop") {
      planned[layer + "input_layernorm.weight"] = {hidden};
      const std::string prefix = layer + "self_attn.";
      if (attn.kind == "gqa") {
        const int64_t heads = block_int(attn, "num_heads", model_heads);
        const int64_t kv_heads = block_int(attn, "kv_heads", model_kv_heads);
        const int64_t head_dim = block_int(attn, "head_dim", model_head_dim);
        if (heads <= 0 || kv_heads <= 0 || head_dim <= 0) {
          throw ModelError(layer_where + "gqa needs num_heads, kv_heads and head_dim > 0; got " +
                           std::to_string(heads) + ", " + std::to_string(kv_heads) + ", " +
                           std::to_string(head_dim));
        }
        planned[prefix + "q_proj.weight"] = {heads * head_dim, hidden};
        planned[prefix + "k_proj.weight"] = {kv_heads * head_dim, hidden};
        planned[prefix + "v_proj.weight"] = {kv_heads * head_dim, hidden};
        planned[prefix + "o_proj.weight"] = {hidden, heads * head_dim};
      } else if (attn.kind == "linear") {
        planned[prefix + "linear_attn.weight"] = {hidden, hidden};
      }
    }
    const BlockSpec& ffn = m.layers[i].ffn;
    if (ffn.kind != "noop") {
      planned[layer + "post_attention_layernorm.weight"] = {hidden};
      const std::string prefix = layer + "mlp.";
      if (ffn.kind == "swiglu") {
        const int64_t inter = block_int(ffn, "intermediate_size", model.intermediate_size);
        if (inter <= 0) {
          throw ModelError(layer_where + "swiglu needs intermediate_size > 0; got " +
                           std::to_string(inter));
        }
        planned[prefix + "gate_proj.weight"] = {inter, hidden};
        planned[prefix + "up_proj.weight"] = {inter, hidden};
        planned[prefix + "down_proj.weight"] = {hidden, inter};
      } else if (ffn.kind == "linear") {
        planned[prefix + "linear_mlp.weight"] = {hidden, hidden};
      }
    }
  }
  return {planned.begin(), planned.end()};
}

WeightStore init_random_weights(const Manifest& m, uint64_t seed) {
  const auto plan = planned_tensors(m);
  WeightStore store;
  std::vector<Tensor> tensors;
  tensors.reserve(plan.size());
  for (const auto& [name, shape] : plan) {
    tensors.emplace_back(shape, TS_F32);
    store.add(name, tensors.back());  // shares the storage filled below
  }
  const double hidden_scale = 1.0 / std::sqrt(static_cast<double>(m.model.hidden_size));

  // Each tensor has its own stream, so filling them in parallel changes nothing.
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(std::max(1, std::min(hardware, static_cast<int>(plan.size()))));
  // Largest tensors first, handed out one at a time, so one big embedding does not
  // end up queued behind a chunk of small ones.
  std::vector<size_t> order(plan.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&tensors](size_t a, size_t b) {
    return tensors[a].numel() > tensors[b].numel();
  });
  std::atomic<size_t> next{0};
  pool.parallel_for(pool.size(), 1, [&](int64_t, int64_t) {
    for (size_t k = next.fetch_add(1); k < order.size(); k = next.fetch_add(1)) {
      const std::string& name = plan[order[k]].first;
      Tensor& tensor = tensors[order[k]];
      // scale * N(0, 1) + offset, one Rng stream per tensor.
      float scale = 1.0f;
      float offset = 0.0f;
      switch (role_of(name)) {
        case Role::norm:
          scale = 0.1f;
          offset = 1.0f;
          break;
        case Role::embedding:
          scale = static_cast<float>(hidden_scale);
          break;
        case Role::linear: {
          const int64_t fan_in = tensor.ndim() >= 2 ? tensor.dim(1) : tensor.dim(0);
          scale = static_cast<float>(1.0 /
                                     std::sqrt(static_cast<double>(std::max<int64_t>(1, fan_in))));
          break;
        }
      }
      fill_normal(Rng(seed ^ fnv1a64(name)), tensor.data<float>(), tensor.numel(), scale, offset);
    }
  });
  store.source = "random weights (seed " + std::to_string(seed) + ")";
  return store;
}

Manifest builtin_shape(const std::string& name) {
  Manifest m;
  ModelSpec& model = m.model;
  model.name = name;
  if (name == "smollm2-135m") {
    model.hidden_size = 576;
    model.num_layers = 30;
    model.num_heads = 9;
    model.num_kv_heads = 3;
    model.head_dim = 64;
    model.intermediate_size = 1536;
    model.vocab_size = 49152;
    model.tie_embeddings = true;
    model.rope_theta = 100000.0;
    model.rms_norm_eps = 1e-5;
    model.max_seq_len = 8192;
    model.bos_token_id = 1;
    model.eos_token_ids = {2};
  } else if (name == "llama-3.1-8b") {
    model.hidden_size = 4096;
    model.num_layers = 32;
    model.num_heads = 32;
    model.num_kv_heads = 8;
    model.head_dim = 128;
    model.intermediate_size = 14336;
    model.vocab_size = 128256;
    model.tie_embeddings = false;
    model.rope_theta = 500000.0;
    model.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
    model.rms_norm_eps = 1e-5;
    model.max_seq_len = 8192;
    model.bos_token_id = 128000;
    model.eos_token_ids = {128001, 128009};
  } else {
    std::string known;
    for (const std::string& n : builtin_shape_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown built-in model shape '" + name + "'; known shapes: " + known);
  }
  m.weights.format = "random";
  m.weights.seed = 0;
  m.weights.where.file = "<builtin " + name + ">";
  LayerSpec layer;
  layer.attention.kind = "gqa";
  layer.ffn.kind = "swiglu";
  layer.attention.where.file = m.weights.where.file;
  layer.ffn.where.file = m.weights.where.file;
  m.layers.assign(static_cast<size_t>(model.num_layers), layer);
  m.runtime.decoder.kind = "greedy";
  m.runtime.parallel.kind = "local";
  return m;
}

std::vector<std::string> builtin_shape_names() {
  return {"llama-3.1-8b", "smollm2-135m"};
}

}  // namespace tessera
