// Links Tessera::engine only: a manifest, its plugins, random weights drawn from what the
// blocks declare, a model and greedy generation of several sequences at once. Checks that
// generation is deterministic and that each sequence equals itself run alone.
#include <tessera/engine/generator.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/thread_pool.hpp>

#include <cstdio>
#include <exception>
#include <vector>

namespace {

constexpr const char* kManifest = R"([model]
hidden_size = 64
num_layers = 3
num_heads = 4
num_kv_heads = 2
intermediate_size = 96
vocab_size = 97
eos_token_id = 0

[weights]
format = "random"
seed = 5

[[layers]]
range = "0"
attention = { kind = "gqa" }
ffn = { kind = "swiglu" }

[[layers]]
range = "1"
attention = { kind = "linear" }
ffn = { kind = "swiglu", intermediate_size = 40 }

[[layers]]
range = "2"
attention = { kind = "gqa", kv_heads = 1 }
ffn = { kind = "noop" }
)";

}  // namespace

int main() {
  using namespace tessera;
  try {
    PluginRegistry registry;
    registry.add_search_path(TESSERA_PLUGIN_DIR);
    registry.load_all();
    const Manifest manifest = parse_manifest(kManifest, "engine-alone.toml", ".");
    ThreadPool pool(1);
    ModelOptions options;
    options.slots = 2;
    Model model(manifest, registry, init_random_weights(manifest, registry, 5), pool, options);
    Generator generator(model, registry);
    GenerateOptions decoding;
    decoding.max_new_tokens = 8;
    decoding.decoder.kind = "greedy";
    decoding.decoder.params.set("eos_token_ids", std::vector<int64_t>{});
    const std::vector<SequenceRequest> requests{{0, 0, {1, 2, 3}}, {1, 0, {40, 41}}};
    const std::vector<GenerateResult> both = generator.generate_batch(requests, decoding);
    int failures = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      const GenerateResult alone = generator.generate_batch({requests[i]}, decoding).front();
      if (both[i].tokens.size() != 8 || alone.tokens != both[i].tokens) {
        std::fprintf(stderr, "sequence %zu: %zu tokens in the batch, alone %s\n", i,
                     both[i].tokens.size(), alone.tokens == both[i].tokens ? "equal" : "different");
        ++failures;
      }
    }
    std::printf("engine alone: %zu sequences of %zu tokens, %s\n", both.size(),
                both[0].tokens.size(), failures == 0 ? "each equal to itself alone" : "FAILED");
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "engine alone: %s\n", e.what());
    return 1;
  }
}
