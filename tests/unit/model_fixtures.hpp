// Shared pieces of the Model and Generator tests: a heterogeneous manifest, the
// real plugins, and the same model computed by hand with reference.hpp.
#pragma once

#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/reference/reference.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace tessera::test {

// Six layers, each different: gqa with 4 and 1 KV heads, linear attention, no-op
// attention with a pruned swiglu, gqa 2 with a linear FFN, gqa (model default 2)
// with a no-op FFN. `layer2_ffn` is the TOML inline table of layer 2's FFN.
inline std::string hetero_manifest_text(const std::string& layer2_ffn = "{ kind = \"swiglu\" }",
                                        bool tied = false, int max_seq_len = 64) {
  return R"([model]
name = "hetero-test"
hidden_size = 64
num_layers = 6
num_heads = 4
head_dim = 16
num_kv_heads = 2
intermediate_size = 96
vocab_size = 101
rope_theta = 10000.0
rms_norm_eps = 1e-5
max_seq_len = )" +
         std::to_string(max_seq_len) +
         R"(
tie_embeddings = )" +
         (tied ? "true" : "false") +
         R"(
eos_token_id = 3

[weights]
format = "random"
seed = 7

[[layers]]
range = "0"
attention = { kind = "gqa", kv_heads = 4 }
ffn = { kind = "swiglu" }

[[layers]]
range = "1"
attention = { kind = "gqa", kv_heads = 1 }
ffn = { kind = "swiglu" }

[[layers]]
range = "2"
attention = { kind = "linear" }
ffn = )" +
         layer2_ffn +
         R"(

[[layers]]
range = "3"
attention = { kind = "noop" }
ffn = { kind = "swiglu", intermediate_size = 40 }

[[layers]]
range = "4"
attention = { kind = "gqa", kv_heads = 2 }
ffn = { kind = "linear" }

[[layers]]
range = "5"
attention = { kind = "gqa" }
ffn = { kind = "noop" }
)";
}

inline Manifest hetero_manifest(const std::string& layer2_ffn = "{ kind = \"swiglu\" }",
                                bool tied = false, int max_seq_len = 64) {
  return parse_manifest(hetero_manifest_text(layer2_ffn, tied, max_seq_len), "hetero-test.toml",
                        ".");
}

// The real plugins, loaded once for the whole test binary.
inline const PluginRegistry& plugins() {
  static PluginRegistry* registry = [] {
    auto* r = new PluginRegistry();
    r->add_search_path(TESSERA_PLUGIN_DIR);
    r->load_all();
    return r;
  }();
  return *registry;
}

// The real plugins and the fixtures that declare (or deliberately mis-declare) their weights:
// fixture-sliding-window (attention "sliding-gqa"), fixture-describe (ffn "affine" and its
// defective variants) and the tree-blind gqa without describe
// (tessera-fixture-wrong-attention), loaded once.
inline const PluginRegistry& fixture_plugins() {
  static PluginRegistry* registry = [] {
    auto* r = new PluginRegistry();
    r->add_search_path(TESSERA_PLUGIN_DIR);
    r->load_all();
    for (const char* name :
         {"libtessera-fixture-sliding-window.so", "libtessera-fixture-describe.so",
          "libtessera-fixture-wrong-attention.so"})
      r->load(std::string(TESSERA_FIXTURE_PLUGIN_DIR) + "/" + name);
    return r;
  }();
  return *registry;
}

// The message of what f throws, or "<no exception>".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

inline ThreadPool& test_pool() {
  static ThreadPool pool(2);
  return pool;
}

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) throw std::logic_error("max_abs_diff: sizes differ");
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

inline float max_abs(const std::vector<float>& a) {
  float m = 0;
  for (float v : a) m = std::max(m, std::fabs(v));
  return m;
}

inline int64_t param_int(const ParamList& params, const std::string& key) {
  const ParamValue* v = params.find(key);
  if (v == nullptr) throw std::logic_error("missing block parameter " + key);
  if (const auto* i = std::get_if<int64_t>(v)) return *i;
  if (const auto* d = std::get_if<double>(v)) return static_cast<int64_t>(*d);
  throw std::logic_error("block parameter " + key + " is not an integer");
}

// One sequence through the manifest's model, computed with reference.hpp only.
// Keeps a per-layer cache, so it can be fed in pieces like the real model.
class ReferenceModel {
 public:
  ReferenceModel(const Manifest& m, const WeightStore& w) : m_(m), w_(w), kv_(m.layers.size()) {}

  int64_t length() const { return length_; }

  // Feeds tokens at consecutive positions; returns logits [n, vocab].
  std::vector<float> feed(const std::vector<int32_t>& tokens) {
    const int64_t n = static_cast<int64_t>(tokens.size());
    const int64_t h = m_.model.hidden_size, vocab = m_.model.vocab_size;
    const double eps = m_.model.rms_norm_eps;
    std::vector<float> x(static_cast<size_t>(n * h)), xn(x.size()), y(x.size());
    const float* embed = f("model.embed_tokens.weight");
    for (int64_t t = 0; t < n; ++t)
      std::copy_n(embed + tokens[static_cast<size_t>(t)] * h, h, x.data() + t * h);
    std::vector<int32_t> positions(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t)
      positions[static_cast<size_t>(t)] = static_cast<int32_t>(length_ + t);

    for (size_t layer = 0; layer < m_.layers.size(); ++layer) {
      const std::string prefix = "model.layers." + std::to_string(layer) + ".";
      const BlockSpec& attn = m_.layers[layer].attention;
      if (attn.kind != "noop") {
        reference::rmsnorm(x.data(), f(prefix + "input_layernorm.weight"), eps, n, h, xn.data());
        if (attn.kind == "gqa") {
          const ParamList p = m_.block_params(attn);
          reference::GqaShape shape;
          shape.hidden = h;
          shape.n_heads = param_int(p, "num_heads");
          shape.kv_heads = param_int(p, "kv_heads");
          shape.head_dim = param_int(p, "head_dim");
          shape.rope_theta = m_.model.rope_theta;
          reference::GqaWeights gw;
          gw.q = f(prefix + "self_attn.q_proj.weight");
          gw.k = f(prefix + "self_attn.k_proj.weight");
          gw.v = f(prefix + "self_attn.v_proj.weight");
          gw.o = f(prefix + "self_attn.o_proj.weight");
          reference::gqa_attention(shape, m_.model.rope_scaling, gw, xn.data(), n, positions.data(),
                                   nullptr, kv_[layer], y.data());
        } else if (attn.kind == "linear") {
          reference::matmul_nt(xn.data(), f(prefix + "self_attn.linear_attn.weight"), n, h, h,
                               y.data());
        } else {
          throw std::logic_error("reference model: unknown attention " + attn.kind);
        }
        for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
      }
      const BlockSpec& ffn = m_.layers[layer].ffn;
      if (ffn.kind != "noop") {
        reference::rmsnorm(x.data(), f(prefix + "post_attention_layernorm.weight"), eps, n, h,
                           xn.data());
        if (ffn.kind == "swiglu") {
          const int64_t inter = param_int(m_.block_params(ffn), "intermediate_size");
          reference::swiglu(xn.data(), f(prefix + "mlp.gate_proj.weight"),
                            f(prefix + "mlp.up_proj.weight"), f(prefix + "mlp.down_proj.weight"), n,
                            h, inter, y.data());
        } else if (ffn.kind == "linear") {
          reference::matmul_nt(xn.data(), f(prefix + "mlp.linear_mlp.weight"), n, h, h, y.data());
        } else {
          throw std::logic_error("reference model: unknown ffn " + ffn.kind);
        }
        for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
      }
    }
    reference::rmsnorm(x.data(), f("model.norm.weight"), eps, n, h, xn.data());
    std::vector<float> logits(static_cast<size_t>(n * vocab));
    const float* head = m_.model.tie_embeddings ? embed : f("lm_head.weight");
    reference::matmul_nt(xn.data(), head, n, vocab, h, logits.data());
    length_ += n;
    return logits;
  }

 private:
  const float* f(const std::string& name) const {
    const Tensor& t = w_.get(name);
    if (t.dtype() != TS_F32) throw std::logic_error("reference model wants f32 " + name);
    return t.data<float>();
  }

  const Manifest& m_;
  const WeightStore& w_;
  std::vector<reference::SequenceKv> kv_;
  int64_t length_ = 0;
};

// A ForwardBatch of one sequence in `slot`.
inline ForwardBatch one_sequence(const std::vector<int32_t>& tokens, int32_t slot = 0) {
  ForwardBatch b;
  b.slots = {slot};
  b.offsets = {0, static_cast<int32_t>(tokens.size())};
  b.tokens = tokens;
  return b;
}

// Runs a batch and returns its logits ([n_tokens or n_seqs, vocab]).
inline std::vector<float> run_logits(Model& model, const ForwardBatch& batch) {
  const size_t rows = batch.last_only ? batch.slots.size() : batch.tokens.size();
  std::vector<float> logits(rows * static_cast<size_t>(model.vocab()));
  model.forward(batch, logits.data(), nullptr);
  return logits;
}

inline std::vector<float> rows_of(const std::vector<float>& m, size_t cols, size_t first,
                                  size_t count) {
  return {m.begin() + static_cast<std::ptrdiff_t>(first * cols),
          m.begin() + static_cast<std::ptrdiff_t>((first + count) * cols)};
}

}  // namespace tessera::test
