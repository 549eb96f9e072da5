// Blockwise distillation of the library on the small parent: the groups, held-out NMSE that
// falls, only the trainable variants' tensors change (the parent's blocks and norms do not),
// and a save / load that continues bit for bit.
#include <gtest/gtest.h>

#include <tessera/puzzle/distill.hpp>

#include <unistd.h>
#include <cmath>
#include <filesystem>

#include "puzzle_fixtures.hpp"

namespace tessera::puzzle {
namespace {

using namespace test_fixtures;

train::TrainerConfig bld_config() {
  train::TrainerConfig c;
  c.adamw.lr = 1e-2;
  c.adamw.weight_decay = 0.0;
  c.schedule.warmup_steps = 0;
  c.schedule.total_steps = 100;
  return c;
}

std::vector<train::TrainBatch> train_batches(uint64_t seed) {
  return {test::random_batch({24, 24}, seed, 41)};
}

TEST(PuzzleDistill, GroupsAreTheTrainableVariantsByName) {
  const std::vector<LayerVariants> lib = plan_variants(parent_manifest(), {});
  const std::vector<DistillGroup> g = distill_groups(lib);
  std::vector<std::string> names;
  for (const DistillGroup& x : g) names.push_back(x.name + "@" + std::to_string(x.layers.size()));
  // gqa_kv2 is layer 1's own block: only layer 0's pooled one trains; layer 2's linear
  // attention is the parent's; no-ops have nothing to train.
  EXPECT_EQ(names, (std::vector<std::string>{"gqa_kv2@1", "gqa_kv1@2", "linear@2", "swiglu_64@1",
                                             "swiglu_32@2", "linear@2"}));
  EXPECT_EQ(g[0].part, TS_KIND_ATTENTION);
  EXPECT_EQ(g[5].part, TS_KIND_FFN);
  EXPECT_EQ(g[4].layers, (std::vector<int32_t>{0, 1}));
}

TEST(PuzzleDistill, TheHeldOutLossFallsAndOnlyTheVariantsChange) {
  Built b = build(parent_weights());
  const WeightStore before = [&] {
    WeightStore copy;
    for (const auto& [name, t] : b.weights.all()) copy.add(name, t.clone());
    return copy;
  }();
  LibraryDistiller d(parent_manifest(), b.library, b.weights, plugins(), test_pool(), bld_config(),
                     2, 32);
  EXPECT_EQ(d.groups().size(), 6U);
  EXPECT_GT(d.parameters(), 0);
  const std::vector<train::TrainBatch> held_out = {test::random_batch({20, 20}, 99, 41)};
  const double start = d.evaluate(held_out);
  const std::vector<LayerLosses> losses0 = d.block_losses(held_out);
  for (int s = 0; s < 30; ++s) {
    const train::StepStats st = d.step(train_batches(100 + static_cast<uint64_t>(s)));
    EXPECT_EQ(st.step, s + 1);
    EXPECT_EQ(st.tokens, 48);
    ASSERT_TRUE(std::isfinite(st.loss));
  }
  const double end = d.evaluate(held_out);
  EXPECT_LT(end, 0.8 * start) << start << " -> " << end;
  const std::vector<LayerLosses> losses = d.block_losses(held_out);
  // Trained variants have a loss, and it fell; the others have none.
  EXPECT_TRUE(std::isnan(losses[0].attention[0]));             // gqa_kv4, the parent's
  EXPECT_TRUE(std::isnan(losses[0].ffn[4]));                   // noop
  EXPECT_TRUE(std::isnan(losses[2].attention[0]));             // layer 2's linear, the parent's
  EXPECT_LT(losses[0].ffn[2], losses0[0].ffn[2]);              // swiglu_32
  EXPECT_LT(losses[1].attention[1], losses0[1].attention[1]);  // gqa_kv1

  const WeightStore trained = d.trained_weights(b.weights);
  EXPECT_EQ(trained.all().size(), before.all().size());
  for (const auto& [name, t] : before.all()) {
    const bool variant = name.find(".variants.") != std::string::npos;
    const bool same = test::same_bytes(t, trained.get(name));
    if (variant) {
      EXPECT_FALSE(same) << name << " did not train";
    } else {
      EXPECT_TRUE(same) << name << " is the parent's and changed";
    }
  }
}

TEST(PuzzleDistill, SaveAndLoadContinueBitForBit) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tessera-bld-" + std::to_string(::getpid()));
  Built b = build(parent_weights());
  const auto copy = [](const WeightStore& w) {
    WeightStore c;
    for (const auto& [name, t] : w.all()) c.add(name, t.clone());
    return c;
  };
  const WeightStore w1 = copy(b.weights), w2 = copy(b.weights);
  LibraryDistiller a(parent_manifest(), b.library, w1, plugins(), test_pool(), bld_config(), 2, 32);
  for (int s = 0; s < 3; ++s) a.step(train_batches(200 + static_cast<uint64_t>(s)));
  a.save(dir);
  LibraryDistiller c(parent_manifest(), b.library, w2, plugins(), test_pool(), bld_config(), 2, 32);
  c.load(dir);
  EXPECT_EQ(c.steps(), 3);
  const train::StepStats sa = a.step(train_batches(300));
  const train::StepStats sc = c.step(train_batches(300));
  EXPECT_EQ(sa.loss, sc.loss);
  const WeightStore ta = a.trained_weights(w1), tc = c.trained_weights(w2);
  for (const auto& [name, t] : ta.all()) EXPECT_TRUE(test::same_bytes(t, tc.get(name))) << name;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera::puzzle
