// Shared pieces of the trainer's tests: a tiny model of the trainable fixture blocks
// (tests/plugins/fixture_train), its registry, batches and helpers to compare gradients.
#pragma once

#include "model_fixtures.hpp"

#include <tessera/engine/model.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/train/trainer.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace tessera::test {

// The real plugins, fixture-train (train-attention, train-mlp and its defective variants)
// and fixture-ffn (an FFN without training entries), loaded once.
inline const PluginRegistry& train_plugins() {
  static PluginRegistry* registry = [] {
    auto* r = new PluginRegistry();
    r->add_search_path(TESSERA_PLUGIN_DIR);
    r->load_all();
    for (const char* name : {"libtessera-fixture-train.so", "libtessera-fixture-ffn.so"})
      r->load(std::string(TESSERA_FIXTURE_PLUGIN_DIR) + "/" + name);
    return r;
  }();
  return *registry;
}

struct TinyOptions {
  int layers = 2;
  bool tied = false;
  uint64_t seed = 3;
  std::string attention = "{ kind = \"train-attention\" }";
  std::string ffn = "{ kind = \"train-mlp\" }";
  // Layer 1's blocks when not empty (else as every layer's).
  std::string layer1_attention, layer1_ffn;
  std::string weight_dtype = "f32";
};

// hidden 16, 2 heads of 8, intermediate 24, vocab 23; every layer train-attention + train-mlp
// unless told otherwise.
inline Manifest tiny_manifest(const TinyOptions& o = {}) {
  const std::string text = R"([model]
name = "tiny-train"
hidden_size = 16
num_layers = )" + std::to_string(o.layers) +
                           R"(
num_heads = 2
head_dim = 8
intermediate_size = 24
vocab_size = 23
rms_norm_eps = 1e-5
max_seq_len = 32
tie_embeddings = )" + (o.tied ? "true" : "false") +
                           R"(

[weights]
format = "random"
seed = )" + std::to_string(o.seed) +
                           R"(

[runtime]
weight_dtype = ")" + o.weight_dtype +
                           "\"\n\n";
  std::string layers;
  for (int l = 0; l < o.layers; ++l) {
    const bool one = l == 1;
    layers += "[[layers]]\nrange = \"" + std::to_string(l) + "\"\nattention = " +
              (one && !o.layer1_attention.empty() ? o.layer1_attention : o.attention) +
              "\nffn = " + (one && !o.layer1_ffn.empty() ? o.layer1_ffn : o.ffn) + "\n\n";
  }
  return parse_manifest(text + layers, "tiny-train.toml", ".");
}

inline std::unique_ptr<Model> tiny_model(const TinyOptions& o = {}, ThreadPool& pool = test_pool(),
                                         int32_t slots = 4) {
  ModelOptions options;
  options.slots = slots;
  return std::make_unique<Model>(tiny_manifest(o), train_plugins(), WeightStore{}, pool, options);
}

// Sequences of the given lengths, tokens drawn from Rng(seed).
inline train::TrainBatch random_batch(const std::vector<int32_t>& lengths, uint64_t seed,
                                      int32_t vocab = 23) {
  Rng rng(seed);
  train::TrainBatch b;
  b.offsets.push_back(0);
  for (int32_t len : lengths) {
    for (int32_t i = 0; i < len; ++i)
      b.tokens.push_back(static_cast<int32_t>(rng.next() % static_cast<uint64_t>(vocab)));
    b.offsets.push_back(b.offsets.back() + len);
  }
  return b;
}

// The sequences of `b` from first to last (exclusive) as a batch of their own.
inline train::TrainBatch sub_batch(const train::TrainBatch& b, size_t first, size_t last) {
  train::TrainBatch out;
  out.offsets.push_back(0);
  for (size_t s = first; s < last; ++s) {
    for (int32_t i = b.offsets[s]; i < b.offsets[s + 1]; ++i)
      out.tokens.push_back(b.tokens[static_cast<size_t>(i)]);
    out.offsets.push_back(static_cast<int32_t>(out.tokens.size()));
  }
  return out;
}

inline std::vector<float> values(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  convert(t.raw(), t.dtype(), out.data(), TS_F32, t.numel());
  return out;
}

inline bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

// max |a - b| / max(max |b|, tiny)
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

}  // namespace tessera::test
