// Trainer checkpoints: a resumed run gives bit-identical losses and weights, an interrupted
// save leaves the previous checkpoint whole, and a checkpoint that does not fit is refused
// before anything changes.
#include "train_fixtures.hpp"

#include <tessera/formats/safetensors.hpp>
#include <tessera/train/trainer.hpp>

#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

namespace fs = std::filesystem;
using train::TrainBatch;
using train::Trainer;
using train::TrainerConfig;

// A fresh folder under the system's temporary folder, removed at the end.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() /
             ("tessera-train-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

TrainerConfig resume_config() {
  TrainerConfig c;
  c.adamw.lr = 1e-2;
  c.adamw.weight_decay = 0.05;
  c.schedule.warmup_steps = 2;
  c.schedule.total_steps = 8;
  c.schedule.min_lr_ratio = 0.1;
  c.clip_norm = 0.5;
  c.frozen = {"model.layers.0.mlp.up_proj.weight"};
  return c;
}

std::vector<TrainBatch> step_batches(int i) {
  return {random_batch({6, 4}, 200 + static_cast<uint64_t>(i)),
          random_batch({5}, 300 + static_cast<uint64_t>(i))};
}

std::unique_ptr<Trainer> make_trainer(Model& model, TrainerConfig config = resume_config()) {
  return std::make_unique<Trainer>(model, train_plugins(), std::move(config),
                                   std::make_unique<train::LmObjective>());
}

class TrainCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainCheckpoint, ResumeGivesBitIdenticalLosses) {
  TinyOptions o;
  o.weight_dtype = GetParam();
  const int total = 8, first = 3;
  // Straight through.
  std::vector<double> straight;
  auto model_a = tiny_model(o);
  auto a = make_trainer(*model_a);
  for (int i = 0; i < total; ++i) straight.push_back(a->step(step_batches(i)).loss);

  // k steps, save, new objects, load, the rest.
  TempDir dir("resume-" + GetParam());
  std::vector<double> resumed;
  {
    auto model_b = tiny_model(o);
    auto b = make_trainer(*model_b);
    for (int i = 0; i < first; ++i) resumed.push_back(b->step(step_batches(i)).loss);
    b->save(dir.path / "ckpt");
  }
  auto model_c = tiny_model(o);
  auto c = make_trainer(*model_c);
  c->load(dir.path / "ckpt");
  EXPECT_EQ(c->steps(), first);
  for (int i = first; i < total; ++i) {
    const train::StepStats s = c->step(step_batches(i));
    EXPECT_EQ(s.step, i + 1);
    resumed.push_back(s.loss);
  }
  EXPECT_EQ(resumed, straight);
  for (const auto& [name, t] : model_a->weights().all())
    EXPECT_TRUE(same_bytes(t, model_c->weights().get(name))) << name;
  for (const std::string& name : a->trainable()) {
    EXPECT_TRUE(same_bytes(a->state(name)->m, c->state(name)->m)) << name;
    EXPECT_TRUE(same_bytes(a->state(name)->v, c->state(name)->v)) << name;
    EXPECT_TRUE(same_bytes(a->state(name)->master, c->state(name)->master)) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(WeightDtypes, TrainCheckpoint, ::testing::Values("f32", "bf16"));

TEST(TrainCheckpointFiles, HoldWeightsMomentsAndTheStep) {
  TempDir dir("files");
  auto model = tiny_model();
  auto trainer = make_trainer(*model);
  trainer->step(step_batches(0));
  trainer->save(dir.path / "ckpt");
  const WeightStore weights = read_safetensors(dir.path / "ckpt" / "weights.safetensors");
  const WeightStore state = read_safetensors(dir.path / "ckpt" / "optimizer.safetensors");
  EXPECT_EQ(weights.all().size(), model->weights().all().size());
  // The frozen tensor is there (a checkpoint is a whole model), without moments.
  EXPECT_TRUE(weights.has("model.layers.0.mlp.up_proj.weight"));
  EXPECT_FALSE(state.has("model.layers.0.mlp.up_proj.weight.exp_avg"));
  EXPECT_TRUE(state.has("model.layers.0.mlp.down_proj.weight.exp_avg"));
  EXPECT_TRUE(state.has("model.layers.0.mlp.down_proj.weight.exp_avg_sq"));
  EXPECT_EQ(*state.get("trainer.step").data<int64_t>(), 1);
  EXPECT_EQ(*state.get("trainer.tokens").data<int64_t>(), 15);
  // Saving again over it replaces it.
  trainer->step(step_batches(1));
  trainer->save(dir.path / "ckpt");
  EXPECT_EQ(*read_safetensors(dir.path / "ckpt" / "optimizer.safetensors")
                 .get("trainer.step")
                 .data<int64_t>(),
            2);
}

TEST(TrainCheckpointFiles, AnInterruptedSaveLeavesThePreviousCheckpoint) {
  TempDir dir("interrupted");
  auto model = tiny_model();
  auto trainer = make_trainer(*model);
  trainer->step(step_batches(0));
  trainer->step(step_batches(1));
  trainer->save(dir.path / "ckpt");
  std::map<std::string, Tensor> saved;
  for (const auto& [name, t] : model->weights().all()) saved[name] = t.clone();

  trainer->step(step_batches(2));
  train::SaveOptions failing;
  int files = 0;
  failing.after_file = [&](const fs::path& written) {
    ++files;
    EXPECT_TRUE(fs::exists(written));
    throw std::runtime_error("disk full (simulated)");
  };
  EXPECT_NE(error_of([&] { trainer->save(dir.path / "ckpt", failing); }).find("disk full"),
            std::string::npos);
  EXPECT_EQ(files, 1);  // it failed after the first file, midway
  // No staging folder is left behind, and the old checkpoint loads whole.
  for (const auto& entry : fs::directory_iterator(dir.path))
    EXPECT_EQ(entry.path().filename(), "ckpt") << entry.path();
  auto model2 = tiny_model();
  auto reader = make_trainer(*model2);
  reader->load(dir.path / "ckpt");
  EXPECT_EQ(reader->steps(), 2);
  for (const auto& [name, t] : model2->weights().all())
    EXPECT_TRUE(same_bytes(t, saved.at(name))) << name;
}

TEST(TrainCheckpointFiles, ACheckpointThatDoesNotFitIsRefusedBeforeAnythingChanges) {
  TempDir dir("mismatch");
  auto model = tiny_model();
  auto trainer = make_trainer(*model);
  trainer->step(step_batches(0));
  trainer->save(dir.path / "ckpt");

  // This trainer trains the tensor the checkpoint froze.
  auto model2 = tiny_model();
  TrainerConfig other = resume_config();
  other.frozen = {"model.norm."};
  auto trainer2 = make_trainer(*model2, other);
  std::map<std::string, Tensor> before;
  for (const auto& [name, t] : model2->weights().all()) before[name] = t.clone();
  const std::string message = error_of([&] { trainer2->load(dir.path / "ckpt"); });
  EXPECT_NE(message.find("has no 'model.layers.0.mlp.up_proj.weight.exp_avg'"), std::string::npos)
      << message;
  EXPECT_EQ(trainer2->steps(), 0);
  for (const auto& [name, t] : model2->weights().all())
    EXPECT_TRUE(same_bytes(t, before.at(name))) << name;

  // Another model's checkpoint.
  TinyOptions three;
  three.layers = 3;
  auto model3 = tiny_model(three);
  auto trainer3 = make_trainer(*model3);
  EXPECT_NE(error_of([&] {
              trainer3->load(dir.path / "ckpt");
            }).find("has no tensor 'model.layers.2.input_layernorm.weight'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { trainer->load(dir.path / "missing"); }).find("is not a folder"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera::test
