// The suite of decoders that read Medusa heads: they cannot run over synthetic logits (they
// feed trees and read hidden states), so they run on a small random model with random heads.
// With greedy acceptance they must emit plain greedy decoding's tokens (computed here by
// feeding the model one argmax at a time, no decoder involved) for several trees, budgets
// and end tokens, and a batch must give each sequence what it gets alone.
#include <tessera/decoding/medusa_heads.hpp>
#include <tessera/engine/decoder.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/generator.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "conformance.hpp"

namespace tessera::cli {
namespace {

constexpr int32_t kHeads = 4;
constexpr int32_t kHidden = 64;
constexpr int32_t kVocab = 97;

const char* const kManifest = R"([model]
name = "speculative-suite"
hidden_size = 64
num_layers = 3
num_heads = 4
head_dim = 16
num_kv_heads = 2
intermediate_size = 96
vocab_size = 97
rope_theta = 10000.0
rms_norm_eps = 1e-5
max_seq_len = 96
tie_embeddings = true

[weights]
format = "random"
seed = 5

[[layers]]
range = "0-2"
attention = { kind = "gqa" }
ffn = { kind = "swiglu" }
)";

// Random heads (ResBlocks of one layer) and the model's lm head, as the host serves them.
struct Heads {
  WeightStore store;
  const Tensor* lm_head = nullptr;
  ts_weights c{};

  Heads(const Tensor& head, uint64_t seed) : lm_head(&head) {
    uint64_t x = seed;
    const auto draw = [&](std::vector<int64_t> shape, float scale) {
      Tensor t(std::move(shape), TS_F32);
      auto* p = static_cast<float*>(t.raw());
      for (int64_t i = 0; i < t.numel(); ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = scale * (static_cast<float>(x >> 40) / static_cast<float>(1 << 24) - 0.5f);
      }
      return t;
    };
    for (int32_t k = 0; k < kHeads; ++k) {
      store.add(decoding::medusa_linear_name(k, 0, "weight"), draw({kHidden, kHidden}, 0.2f));
      store.add(decoding::medusa_linear_name(k, 0, "bias"), draw({kHidden}, 0.2f));
    }
    c.ctx = this;
    c.get = [](void* ctx, const char* name, ts_tensor* out, ts_error* err) -> int {
      const auto* h = static_cast<const Heads*>(ctx);
      if (h->store.has(name)) {
        *out = h->store.get(name).view();
        return TS_OK;
      }
      if (std::string(name) == "lm_head.weight") {
        *out = h->lm_head->view();
        return TS_OK;
      }
      sdk::set_error(err, std::string("no tensor '") + name + "' in the suite's heads");
      return TS_ERROR;
    };
  }
};

ThreadPool& suite_pool() {
  static ThreadPool pool(1);
  return pool;
}

// Plain greedy decoding by hand: prefill, then the argmax fed back one token at a time.
std::vector<int32_t> greedy_by_hand(Model& model, const std::vector<int32_t>& prompt,
                                    int32_t budget, const std::vector<int32_t>& eos) {
  model.reset(0);
  const auto vocab = static_cast<size_t>(model.vocab());
  std::vector<float> logits(vocab), hidden(static_cast<size_t>(model.hidden()));
  ForwardBatch b;
  b.slots = {0};
  b.offsets = {0, static_cast<int32_t>(prompt.size())};
  b.tokens = prompt;
  b.last_only = true;
  model.forward(b, logits.data(), hidden.data());
  std::vector<int32_t> out;
  while (static_cast<int32_t>(out.size()) < budget) {
    const auto best =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(best);
    if (std::find(eos.begin(), eos.end(), best) != eos.end()) break;
    if (static_cast<int32_t>(out.size()) == budget) break;
    b.offsets = {0, 1};
    b.tokens = {best};
    model.forward(b, logits.data(), hidden.data());
  }
  return out;
}

std::string tokens_text(const std::vector<int32_t>& t) {
  std::string s = "[";
  for (size_t i = 0; i < t.size() && i < 12; ++i) (s += i ? ", " : "") += std::to_string(t[i]);
  return s + (t.size() > 12 ? ", ...]" : "]");
}

template <class F>
CaseResult case_of(std::string name, F&& body) {
  CaseResult r;
  r.name = std::move(name);
  r.measured = false;
  try {
    body();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.passed = r.error.empty();
  return r;
}

int create_status(const ProviderRef& provider, const ts_weights* weights) {
  const auto* vt = static_cast<const ts_decoder_vtable*>(provider.provider->vtable);
  ParamList params;
  ts_decoder_config config{};
  config.struct_size = sizeof(ts_decoder_config);
  config.vocab = kVocab;
  config.hidden = kHidden;
  config.params = params.c_params();
  config.weights = weights;
  config.host = suite_pool().host();
  void* self = nullptr;
  ts_error err{};
  const int status = vt->create(&config, &self, &err);
  if (status == TS_OK && self != nullptr) vt->destroy(self);
  return status;
}

}  // namespace

bool takes_medusa_heads(const ProviderRef& provider) {
  Tensor head({kVocab, kHidden}, TS_F32);
  const Heads heads(head, 1);
  return create_status(provider, nullptr) != TS_OK && create_status(provider, &heads.c) == TS_OK;
}

void check_medusa_decoder(const PluginRegistry& checked, const ProviderRef& provider,
                          const ConformanceOptions& options, ConformanceReport& report) {
  const std::string label = std::string("decoder ") + provider.provider->name;
  report.skipped.push_back(label +
                           ": reads Medusa heads, so it runs on a random model with "
                           "random heads instead of the synthetic-logits suite");
  // The model's blocks come from the plugins on the search path, the decoder from the plugin
  // checked.
  PluginRegistry registry;
  for (const auto& dir : checked.search_paths()) registry.add_search_path(dir);
  registry.load_all(true);
  bool loaded = false;
  for (const PluginInfo& p : registry.plugins()) loaded |= p.name == provider.plugin_name();
  if (!loaded) registry.load(provider.path());
  const Manifest manifest = parse_manifest(kManifest, "speculative-suite.toml", ".");
  ModelOptions mo;
  mo.slots = 4;
  std::unique_ptr<Model> built;
  try {
    built = std::make_unique<Model>(manifest, registry, init_random_weights(manifest, registry, 9),
                                    suite_pool(), mo);
  } catch (const std::exception& e) {
    report.skipped.push_back(label + ": no random model to run it on (" + e.what() + ")");
    return;
  }
  Model& model = *built;
  const Heads heads(model.lm_head(), 3);
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 17, 42, 90, 5}, {7}, {33, 34, 35, 36}, {64, 2}};
  const auto decode = [&](const std::vector<SequenceRequest>& requests, const std::string& tree,
                          int32_t budget, const std::vector<int64_t>& eos) {
    GenerateOptions o;
    o.max_new_tokens = budget;
    o.decoder.kind = provider.provider->name;
    o.decoder.plugin = provider.plugin_name();
    o.decoder.params.set("eos_token_ids", eos);
    o.decoder.params.set("tree", tree);
    o.decoder_weights = &heads.c;
    Generator g(model, registry);
    return g.generate_batch(requests, o);
  };
  const std::vector<std::string> trees =
      options.quick
          ? std::vector<std::string>{"chain-2", "[[0], [1], [0, 0], [1, 0], [0, 0, 0]]"}
          : std::vector<std::string>{"chain-1", "chain-4", "[[0], [1], [0, 0], [1, 0], [0, 0, 0]]",
                                     "mc_sim_7b_63"};

  report.cases.push_back(
      case_of(label + " with greedy acceptance emits greedy decoding's tokens", [&] {
        for (const std::string& tree : trees)
          for (const auto& p : prompts)
            for (int32_t budget : {1, 2, 5, 40}) {
              const auto want = greedy_by_hand(model, p, budget, {});
              const auto got = decode({{0, 0, p}}, tree, budget, {}).front().tokens;
              if (got != want)
                throw Error("tree " + tree + ", prompt " + tokens_text(p) + ", " +
                            std::to_string(budget) + " tokens: emitted " + tokens_text(got) +
                            ", greedy decoding gives " + tokens_text(want));
            }
      }));

  report.cases.push_back(case_of(label + " stops at end tokens as greedy decoding does", [&] {
    for (const auto& p : prompts) {
      const auto free_run = greedy_by_hand(model, p, 30, {});
      for (size_t i = 0; i < free_run.size(); i += 9) {
        const auto want = greedy_by_hand(model, p, 30, {free_run[i]});
        const auto got = decode({{0, 0, p}}, trees.back(), 30, {free_run[i]}).front().tokens;
        if (got != want)
          throw Error("end token " + std::to_string(free_run[i]) + ", prompt " + tokens_text(p) +
                      ": emitted " + tokens_text(got) + ", greedy decoding gives " +
                      tokens_text(want));
      }
    }
  }));

  report.cases.push_back(case_of(label + " decodes a batch as each sequence alone", [&] {
    std::vector<SequenceRequest> requests;
    requests.reserve(4);
    for (int32_t i = 0; i < 4; ++i) requests.push_back({i, 0, prompts[static_cast<size_t>(i)]});
    const auto together = decode(requests, trees.back(), 24, {});
    for (size_t i = 0; i < requests.size(); ++i) {
      const auto alone = decode({requests[i]}, trees.back(), 24, {}).front().tokens;
      if (alone != together[i].tokens)
        throw Error("sequence " + std::to_string(i) + " emitted " +
                    tokens_text(together[i].tokens) + " in a batch of 4 but " + tokens_text(alone) +
                    " alone");
    }
  }));
}

}  // namespace tessera::cli
