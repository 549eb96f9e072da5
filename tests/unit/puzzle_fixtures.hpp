// The Puzzle tests' parent: a small model of the real plugins (gqa + swiglu, a second KV-head
// count, a linear attention, a no-op FFN), its weights, calibration batches and a built library.
#pragma once

#include <tessera/engine/error.hpp>
#include <tessera/puzzle/calibration.hpp>
#include <tessera/puzzle/library.hpp>

#include <memory>
#include <string>
#include <vector>

#include "train_fixtures.hpp"

namespace tessera::puzzle::test_fixtures {

using test::plugins;
using test::test_pool;

// hidden 32, 4 heads of 8, intermediate 96, vocab 41:
//   0  gqa kv 4 + swiglu     1  gqa kv 2 + swiglu 40     2  linear attention + no-op FFN
inline Manifest parent_manifest() {
  return parse_manifest(R"([model]
name = "puzzle-parent"
hidden_size = 32
num_layers = 3
num_heads = 4
head_dim = 8
num_kv_heads = 4
intermediate_size = 96
vocab_size = 41
rms_norm_eps = 1e-5
max_seq_len = 32

[weights]
format = "random"
seed = 11

[runtime]
weight_dtype = "f32"

[[layers]]
range = "0"
attention = { kind = "gqa" }
ffn = { kind = "swiglu" }

[[layers]]
range = "1"
attention = { kind = "gqa", kv_heads = 2 }
ffn = { kind = "swiglu", intermediate_size = 40 }

[[layers]]
range = "2"
attention = { kind = "linear" }
ffn = { kind = "noop" }
)",
                        "puzzle-parent.toml", ".");
}

// The parent's random weights, to edit before a model is built on them.
inline WeightStore parent_weights() {
  const Model m(parent_manifest(), plugins(), WeightStore{}, test_pool());
  return m.weights();
}

inline std::unique_ptr<Model> model_of(const Manifest& manifest, WeightStore weights) {
  ModelOptions options;
  options.slots = 4;
  return std::make_unique<Model>(manifest, plugins(), std::move(weights), test_pool(), options);
}

inline std::vector<train::TrainBatch> calibration_batches() {
  return {test::random_batch({24, 24}, 1, 41), test::random_batch({24, 17}, 2, 41)};
}

inline std::vector<std::string> names(const std::vector<Variant>& list) {
  std::vector<std::string> out;
  for (const Variant& v : list) out.push_back(v.name);
  return out;
}

inline bool same_params(const ParamList& a, const ParamList& b) {
  if (a.items().size() != b.items().size()) return false;
  for (size_t i = 0; i < a.items().size(); ++i)
    if (a.items()[i].key != b.items()[i].key || !(a.items()[i].value == b.items()[i].value))
      return false;
  return true;
}

inline const Variant& find(const std::vector<Variant>& list, const std::string& name) {
  for (const Variant& v : list)
    if (v.name == name) return v;
  throw Error("no variant " + name);
}

inline std::vector<float> logits_of(Model& model, const std::vector<int32_t>& tokens) {
  model.reset(0);
  return test::run_logits(model, test::one_sequence(tokens));
}

// The built library: the parent's weights (as edited) with every variant beside them.
struct Built {
  std::vector<LayerVariants> library;
  Calibration calibration;
  WeightStore weights;
};

inline Built build(WeightStore weights, const LibraryOptions& options = {},
                   const Manifest& manifest = parent_manifest()) {
  Built b;
  b.library = plan_variants(manifest, options);
  auto parent = model_of(manifest, weights);
  b.calibration = calibrate(*parent, calibration_batches());
  b.weights = std::move(weights);
  build_variant_weights(manifest, b.library, b.calibration, options, b.weights);
  return b;
}

inline const std::vector<int32_t> kPrompt = {5, 9, 1, 33, 2, 17, 8, 40, 12, 3, 3, 29};

}  // namespace tessera::puzzle::test_fixtures
