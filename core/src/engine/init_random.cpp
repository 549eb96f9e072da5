#include <algorithm>
#include <atomic>
#include <cmath>
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/memory_check.hpp>
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

WeightStore init_random_weights(const WeightPlan& plan, uint64_t seed) {
  const std::vector<PlannedTensor>& planned = plan.tensors;
  uint64_t parameters = 0;
  for (const PlannedTensor& t : planned) {
    uint64_t n = 1;
    for (const int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    parameters += n;
  }
  const ModelSpec& m = plan.manifest.model;
  require_memory(parameters * sizeof(float),
                 manifest_display_name(plan.manifest) + ": the random weights (" +
                     std::to_string(parameters) + " parameters in f32, from [model] hidden_size " +
                     std::to_string(m.hidden_size) + ", num_layers " +
                     std::to_string(m.num_layers) + ", intermediate_size " +
                     std::to_string(m.intermediate_size) + ", vocab_size " +
                     std::to_string(m.vocab_size) + " and the layers' blocks)");
  WeightStore store;
  std::vector<Tensor> tensors;
  tensors.reserve(planned.size());
  for (const PlannedTensor& t : planned) {
    tensors.emplace_back(t.shape, TS_F32);
    store.add(t.name, tensors.back());  // shares the storage filled below
  }

  // Each tensor has its own stream, so filling them in parallel changes nothing.
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(std::max(1, std::min(hardware, static_cast<int>(planned.size()))));
  // Largest tensors first, handed out one at a time, so one big embedding does not
  // end up queued behind a chunk of small ones.
  std::vector<size_t> order(planned.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&tensors](size_t a, size_t b) {
    return tensors[a].numel() > tensors[b].numel();
  });
  std::atomic<size_t> next{0};
  pool.parallel_for(pool.size(), 1, [&](int64_t, int64_t) {
    for (size_t k = next.fetch_add(1); k < order.size(); k = next.fetch_add(1)) {
      const PlannedTensor& t = planned[order[k]];
      Tensor& tensor = tensors[order[k]];
      float* out = tensor.data<float>();
      // scale * N(0, 1) + offset, one Rng stream per tensor.
      float scale = 1.0f;
      float offset = 0.0f;
      switch (t.init) {
        case TS_INIT_ZEROS:
        case TS_INIT_ONES:
          std::fill(out, out + tensor.numel(), t.init == TS_INIT_ONES ? 1.0f : 0.0f);
          continue;
        case TS_INIT_NORM:
          scale = 0.1f;
          offset = 1.0f;
          break;
        case TS_INIT_NORMAL:
          scale = t.init_scale;
          break;
        case TS_INIT_LINEAR: {
          const int64_t fan_in = t.shape.empty() ? 1 : t.shape.back();
          scale = static_cast<float>(1.0 /
                                     std::sqrt(static_cast<double>(std::max<int64_t>(1, fan_in))));
          break;
        }
      }
      fill_normal(Rng(seed ^ fnv1a64(t.name)), out, tensor.numel(), scale, offset);
    }
  });
  store.source = "random weights (seed " + std::to_string(seed) + ")";
  return store;
}

WeightStore init_random_weights(const Manifest& m, const PluginRegistry& registry, uint64_t seed) {
  return init_random_weights(plan_weights(m, registry), seed);
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
