// The trainer's gradients on the heterogeneous DeciLM model (tests/data/models/decilm_hetero.toml:
// gqa with 4/2/1 KV heads, linear and no-op attention, swiglu of two widths, linear and no-op
// FFN) against torch autograd through an independent float64 forward pass
// (tests/golden/models/make_decilm_train_golden.py): the language-modelling loss of one packed
// batch of two sequences and every weight's gradient. The CPU plugins' backward passes are what
// is checked, end to end, under each recompute policy.
#include <gtest/gtest.h>
#include <tessera/formats/model_source.hpp>
#include <tessera/train/trainer.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "golden_model.hpp"
#include "model_fixtures.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Tessera runs in f32 on the same f32 weights as the float64 golden; the file keeps 9
// significant digits. Measured (2 threads, every policy alike): loss relative error 5e-9, worst
// gradient norm relative error 9.9e-7, worst sampled entry 2.1e-6 of its tensor's largest
// entry. The tolerances are about 10x that.
constexpr double kLossTolerance = 1e-7;
constexpr double kNormTolerance = 1e-5;
constexpr double kEntryTolerance = 2e-5;  // relative to the tensor's largest |entry|

const fs::path kSource = TESSERA_SOURCE_DIR;
const fs::path kManifest = kSource / "tests" / "data" / "models" / "decilm_hetero.toml";
const fs::path kGolden =
    kSource / "tests" / "golden" / "models" / "decilm_hetero_train_golden.json";

train::TrainBatch golden_batch(const json& golden) {
  train::TrainBatch batch;
  batch.offsets.push_back(0);
  for (const json& sequence : golden.at("sequences")) {
    for (const json& id : sequence) batch.tokens.push_back(id.get<int32_t>());
    batch.offsets.push_back(static_cast<int32_t>(batch.tokens.size()));
  }
  return batch;
}

TEST(GoldenTrain, GradientsOfEveryWeightMatchTorchAutograd) {
  const json golden = test::read_golden_json(kGolden);
  const train::TrainBatch batch = golden_batch(golden);
  const json& want = golden.at("gradients");
  ASSERT_GE(want.size(), 30u);

  std::vector<std::vector<float>> by_policy;
  for (const ts_recompute policy : {TS_RECOMPUTE_NONE, TS_RECOMPUTE_CORE, TS_RECOMPUTE_ALL}) {
    LoadedModel loaded = open_model(kManifest);
    Model model(loaded.manifest, test::plugins(), std::move(loaded.weights), test::test_pool());
    train::TrainerConfig config;
    config.recompute = policy;
    train::Trainer trainer(model, test::plugins(), config, std::make_unique<train::LmObjective>());
    const double loss = trainer.compute_gradients({batch});
    const double golden_loss = golden.at("loss").get<double>();
    EXPECT_LE(std::fabs(loss - golden_loss) / golden_loss, kLossTolerance)
        << "loss " << loss << ", golden " << golden_loss;

    // The same tensors train as torch has gradients for.
    std::vector<std::string> names = trainer.trainable();
    EXPECT_EQ(names.size(), want.size());
    double worst_norm = 0, worst_entry = 0;
    std::vector<float> all;
    for (const auto& [name, g] : want.items()) {
      const train::ParamState* state = trainer.state(name);
      ASSERT_NE(state, nullptr) << name << " has a golden gradient but does not train";
      const float* data = state->grad.data<float>();
      const int64_t n = state->grad.numel();
      std::vector<int64_t> shape;
      for (const json& d : g.at("shape")) shape.push_back(d.get<int64_t>());
      EXPECT_EQ(state->grad.shape(), shape) << name;
      double norm = 0, largest = 0;
      for (int64_t i = 0; i < n; ++i) {
        norm += static_cast<double>(data[i]) * data[i];
        largest = std::max(largest, std::fabs(static_cast<double>(data[i])));
      }
      norm = std::sqrt(norm);
      const double golden_norm = g.at("norm").get<double>();
      const double norm_error = std::fabs(norm - golden_norm) / golden_norm;
      worst_norm = std::max(worst_norm, norm_error);
      EXPECT_LE(norm_error, kNormTolerance)
          << name << ": norm " << norm << ", golden " << golden_norm;
      for (const json& s : g.at("samples")) {
        const auto index = s.at(0).get<int64_t>();
        ASSERT_LT(index, n) << name;
        const double error = std::fabs(data[index] - s.at(1).get<double>()) / largest;
        worst_entry = std::max(worst_entry, error);
        EXPECT_LE(error, kEntryTolerance)
            << name << "[" << index << "]: " << data[index] << ", golden " << s.at(1).get<double>();
      }
      all.insert(all.end(), data, data + n);
    }
    std::printf(
        "[ measured ] recompute %d: loss %.9g (golden %.9g), worst gradient norm error "
        "%.2e, worst entry error %.2e of its tensor's largest\n",
        static_cast<int>(policy), loss, golden_loss, worst_norm, worst_entry);
    by_policy.push_back(std::move(all));
  }
  // recompute = stored: every policy gives the same gradients, bit for bit.
  EXPECT_EQ(by_policy[0], by_policy[1]);
  EXPECT_EQ(by_policy[0], by_policy[2]);
}

}  // namespace
}  // namespace tessera
