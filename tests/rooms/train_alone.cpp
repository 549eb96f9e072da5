// Links Tessera::train only (and what it depends on): a tiny model of the trainable fixture
// blocks, a few optimiser steps that lower the loss, and a checkpoint written and read back.
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/train/trainer.hpp>

#include <unistd.h>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>

namespace {

constexpr const char* kManifest = R"([model]
hidden_size = 16
num_layers = 2
num_heads = 2
intermediate_size = 32
vocab_size = 19
max_seq_len = 16

[weights]
format = "random"
seed = 9

[[layers]]
range = "0-1"
attention = { kind = "train-attention" }
ffn = { kind = "train-mlp" }
)";

}  // namespace

int main() {
  using namespace tessera;
  const std::filesystem::path folder = std::filesystem::temp_directory_path() /
                                       ("tessera-train-alone-" + std::to_string(::getpid()));
  try {
    PluginRegistry registry;
    registry.add_search_path(TESSERA_PLUGIN_DIR);
    registry.load_all();
    registry.load(std::string(TESSERA_FIXTURE_PLUGIN_DIR) + "/libtessera-fixture-train.so");
    const Manifest manifest = parse_manifest(kManifest, "train-alone.toml", ".");
    ThreadPool pool(1);
    Model model(manifest, registry, WeightStore{}, pool, {});
    train::TrainerConfig config;
    config.adamw.lr = 2e-2;
    train::Trainer trainer(model, registry, config, std::make_unique<train::LmObjective>());
    train::TrainBatch batch;
    batch.offsets = {0, 8, 14};
    batch.tokens = {1, 2, 3, 4, 5, 6, 7, 8, 3, 1, 4, 1, 5, 9};
    const double first = trainer.step({batch}).loss;
    double last = first;
    for (int i = 0; i < 15; ++i) last = trainer.step({batch}).loss;
    trainer.save(folder);
    train::Trainer again(model, registry, config, std::make_unique<train::LmObjective>());
    again.load(folder);
    std::filesystem::remove_all(folder);
    std::printf("train_alone: loss %.4f -> %.4f, resumed at step %lld\n", first, last,
                static_cast<long long>(again.steps()));
    if (!(last < first) || again.steps() != 16) {
      std::fprintf(stderr, "train_alone: expected a lower loss and step 16\n");
      return 1;
    }
  } catch (const std::exception& e) {
    std::filesystem::remove_all(folder);
    std::fprintf(stderr, "train_alone: %s\n", e.what());
    return 1;
  }
  return 0;
}
