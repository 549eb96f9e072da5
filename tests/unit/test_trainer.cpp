// The trainer end to end on a tiny model of the trainable fixture blocks: the block wrappers,
// the "no backward" error, the training forward against inference, gradients against finite
// differences, recompute policies, accumulation, frozen tensors, determinism, a short run that
// learns, the activation-memory report, and the distillation objectives (GKD, BLD).
#include "train_fixtures.hpp"

#include <tessera/train/losses.hpp>
#include <tessera/train/memory.hpp>
#include <tessera/train/trainer.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

using train::TrainBatch;
using train::Trainer;
using train::TrainerConfig;

std::unique_ptr<Trainer> lm_trainer(Model& model, TrainerConfig config = {}) {
  return std::make_unique<Trainer>(model, train_plugins(), std::move(config),
                                   std::make_unique<train::LmObjective>());
}

std::map<std::string, std::vector<float>> gradients(const Trainer& t) {
  std::map<std::string, std::vector<float>> out;
  for (const std::string& name : t.trainable()) out[name] = values(t.state(name)->grad);
  return out;
}

// ---------------------------------------------------------------- block wrappers

TEST(TrainBlock, WrappersReachTheTrainingEntries) {
  auto model = tiny_model();
  Block& ffn = model->ffn(0);
  ASSERT_TRUE(ffn.can_train());
  ts_batch b{};
  const std::vector<int32_t> offsets = {0, 3}, slots = {0}, positions = {0, 1, 2};
  b.struct_size = sizeof(ts_batch);
  b.n_seqs = 1;
  b.n_tokens = 3;
  b.offsets = offsets.data();
  b.slots = slots.data();
  b.positions = positions.data();
  // train-mlp keeps up(x) and its tanh: 2 * 3 tokens * 24 floats, nothing under ALL.
  EXPECT_EQ(ffn.train_workspace(b, TS_RECOMPUTE_NONE), 2u * 3 * 24 * sizeof(float));
  EXPECT_EQ(ffn.train_workspace(b, TS_RECOMPUTE_ALL), 0u);
  // forward_train refuses a KV cache.
  std::vector<float> x(48, 0.5f), y(48);
  ts_tensor xv{}, yv{};
  xv.data = x.data();
  yv.data = y.data();
  ts_kv_layer kv{};
  ts_block_io io{};
  io.x = &xv;
  io.y = &yv;
  io.batch = &b;
  io.kv = &kv;
  const std::string message = error_of([&] { ffn.forward_train(io, TS_RECOMPUTE_ALL, nullptr); });
  EXPECT_NE(message.find("layer 0 ffn train-mlp (fixture-train): forward_train: io.kv is set"),
            std::string::npos)
      << message;
}

TEST(TrainBlock, ABlockWithoutBackwardCannotBeTrained) {
  TinyOptions o;
  o.ffn = "{ kind = \"fixture-ffn\" }";
  auto model = tiny_model(o);
  EXPECT_FALSE(model->ffn(0).can_train());
  const std::string message = error_of([&] { lm_trainer(*model); });
  // The error names the layer, the kind and the plugin.
  EXPECT_NE(message.find("layer 0 ffn fixture-ffn (fixture-ffn): cannot be trained: its plugin "
                         "has no backward"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("a model with a block that has no backward cannot be trained"),
            std::string::npos)
      << message;
}

TEST(TrainBlock, APluginWithSomeTrainingEntriesNamesTheMissingOnes) {
  TinyOptions o;
  o.layer1_ffn = "{ kind = \"train-mlp-partial\" }";
  auto model = tiny_model(o);
  const std::string message = error_of([&] { lm_trainer(*model); });
  EXPECT_NE(message.find("layer 1 ffn train-mlp-partial (fixture-train): cannot be trained: its "
                         "plugin lacks backward"),
            std::string::npos)
      << message;
}

TEST(TrainBlock, ABackwardFailureNamesTheBlock) {
  TinyOptions o;
  o.ffn = "{ kind = \"train-mlp-fails\" }";
  auto model = tiny_model(o);
  auto trainer = lm_trainer(*model);
  const std::string message = error_of([&] { trainer->step({random_batch({5}, 1)}); });
  EXPECT_NE(message.find("layer 1 ffn train-mlp-fails (fixture-train): backward: deliberate "
                         "backward failure"),
            std::string::npos)
      << message;
}

// ------------------------------------------------------------------ the trainer

TEST(Trainer, TheTrainingForwardIsTheInferenceForward) {
  for (const bool tied : {false, true}) {
    TinyOptions o;
    o.tied = tied;
    auto model = tiny_model(o);
    auto trainer = lm_trainer(*model);
    const TrainBatch batch = random_batch({7, 4, 9}, 2);
    const double loss = trainer->evaluate({batch});
    // The same tokens through Model::forward (slots, the inference path), then the loss.
    ForwardBatch fb;
    fb.slots = {0, 1, 2};
    fb.offsets = batch.offsets;
    fb.tokens = batch.tokens;
    std::vector<float> logits(batch.tokens.size() * 23);
    model->forward(fb, logits.data(), nullptr);
    const std::vector<int32_t> targets = train::batch_targets(batch);
    int64_t counted = 0;
    const double sum =
        train::cross_entropy(nullptr, logits.data(), static_cast<int64_t>(batch.tokens.size()), 23,
                             targets.data(), train::kIgnoreIndex, nullptr, 1.0, &counted);
    EXPECT_EQ(counted, 17);  // 20 tokens, the last of each sequence has no target
    EXPECT_DOUBLE_EQ(loss, sum / static_cast<double>(counted)) << "tied " << tied;
  }
}

// Directional finite differences of the trainer's loss along each tensor's own gradient:
// (L(w + h d) - L(w - h d)) / 2h against |g| (d = g / |g|), for every trainable tensor.
void check_against_finite_differences(Model& model, Trainer& trainer,
                                      const std::vector<TrainBatch>& batches,
                                      const std::string& what, double tolerance = 2e-2) {
  const double loss = trainer.compute_gradients(batches);
  const auto grads = gradients(trainer);
  double worst = 0;
  for (const auto& [name, g] : grads) {
    double norm = 0;
    for (float v : g) norm += static_cast<double>(v) * v;
    norm = std::sqrt(norm);
    ASSERT_GT(norm, 0.0) << name << " has no gradient";
    const Tensor& w = model.weights().get(name);
    ASSERT_EQ(w.dtype(), TS_F32);
    float* data = w.data<float>();
    const std::vector<float> keep(data, data + w.numel());
    const double h = 1e-2;
    auto at = [&](double sign) {
      for (size_t i = 0; i < keep.size(); ++i)
        data[i] = static_cast<float>(keep[i] + sign * h * g[i] / norm);
      return trainer.evaluate(batches);
    };
    const double fd = (at(1) - at(-1)) / (2 * h);
    std::copy(keep.begin(), keep.end(), data);
    const double error = std::fabs(fd - norm) / norm;
    worst = std::max(worst, error);
    EXPECT_LT(error, tolerance) << what << ": " << name << ": |g| " << norm << ", finite "
                                << "difference " << fd;
  }
  EXPECT_DOUBLE_EQ(trainer.evaluate(batches), loss) << "the weights were not restored";
  std::printf("[trainer] %-44s %zu tensors, worst directional error %.2e\n", what.c_str(),
              grads.size(), worst);
}

TEST(Trainer, GradientsMatchFiniteDifferences) {
  for (const bool tied : {false, true}) {
    TinyOptions o;
    o.tied = tied;
    auto model = tiny_model(o);
    auto trainer = lm_trainer(*model);
    check_against_finite_differences(*model, *trainer, {random_batch({6, 3}, 4)},
                                     tied ? "lm, tied embeddings" : "lm, untied");
  }
}

TEST(Trainer, PoliciesGiveBitIdenticalGradients) {
  const TrainBatch batch = random_batch({8, 3, 5}, 5);
  std::map<std::string, std::vector<float>> first;
  double first_loss = 0;
  for (const ts_recompute policy : {TS_RECOMPUTE_NONE, TS_RECOMPUTE_CORE, TS_RECOMPUTE_ALL}) {
    auto model = tiny_model();
    TrainerConfig config;
    config.recompute = policy;
    auto trainer = lm_trainer(*model, config);
    const double loss = trainer->compute_gradients({batch});
    const auto grads = gradients(*trainer);
    if (policy == TS_RECOMPUTE_NONE) {
      first = grads;
      first_loss = loss;
      continue;
    }
    EXPECT_EQ(loss, first_loss) << "policy " << policy;
    for (const auto& [name, g] : grads)
      EXPECT_EQ(g, first.at(name)) << name << " policy " << policy;
  }
}

TEST(Trainer, TwoMicroBatchesOfOneAreOneBatchOfTwo) {
  const TrainBatch both = random_batch({6, 6}, 6);
  auto model = tiny_model();
  auto trainer = lm_trainer(*model);
  const double loss_one = trainer->compute_gradients({both});
  const auto one = gradients(*trainer);
  const double loss_two =
      trainer->compute_gradients({sub_batch(both, 0, 1), sub_batch(both, 1, 2)});
  const auto two = gradients(*trainer);
  EXPECT_NEAR(loss_two, loss_one, 1e-6 * loss_one);
  double worst = 0;
  for (const auto& [name, g] : one) {
    const double error = relative_error(two.at(name), g);
    worst = std::max(worst, error);
    EXPECT_LT(error, 1e-5) << name;
  }
  std::printf("[trainer] accumulation: worst relative difference %.2e\n", worst);
  // Sequences of different lengths: normalised by the step's total count, not per micro-batch.
  const TrainBatch uneven = random_batch({9, 3}, 7);
  trainer->compute_gradients({uneven});
  const auto whole = gradients(*trainer);
  trainer->compute_gradients({sub_batch(uneven, 0, 1), sub_batch(uneven, 1, 2)});
  for (const auto& [name, g] : gradients(*trainer))
    EXPECT_LT(relative_error(g, whole.at(name)), 1e-5) << name;
}

TEST(Trainer, FrozenTensorsStayUntouchedAndHaveNoState) {
  auto model = tiny_model();
  TrainerConfig config;
  config.frozen = {"model.embed_tokens.", "model.layers.0.self_attn.*_proj.weight", "*.norm.*"};
  config.adamw.weight_decay = 0.1;
  auto trainer = lm_trainer(*model, config);
  const std::vector<std::string> frozen = {
      "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
      "model.layers.0.self_attn.o_proj.weight", "model.norm.weight"};
  std::map<std::string, Tensor> before;
  for (const auto& [name, t] : model->weights().all()) before[name] = t.clone();
  for (const std::string& name : frozen) EXPECT_EQ(trainer->state(name), nullptr) << name;
  EXPECT_NE(trainer->state("model.layers.1.self_attn.q_proj.weight"), nullptr);
  EXPECT_NE(trainer->state("model.layers.0.input_layernorm.weight"), nullptr);
  for (int i = 0; i < 3; ++i) trainer->step({random_batch({5, 4}, 10 + i)});
  for (const auto& [name, t] : model->weights().all()) {
    const bool is_frozen = trainer->state(name) == nullptr;
    EXPECT_EQ(same_bytes(t, before.at(name)), is_frozen) << name;
  }
  // Only the trainable tensors hold gradients and moments.
  EXPECT_EQ(trainer->trainable().size(), model->weights().all().size() - 6);

  TrainerConfig only;
  only.train_only = {"model.layers.1.mlp."};
  auto model2 = tiny_model();
  auto trainer2 = lm_trainer(*model2, only);
  EXPECT_EQ(trainer2->trainable(), (std::vector<std::string>{"model.layers.1.mlp.down_proj.weight",
                                                             "model.layers.1.mlp.up_proj.weight"}));
  // Nothing before layer 1's FFN trains: the backward stops there, and the gradients are
  // still those of the whole model.
  auto model3 = tiny_model();
  auto trainer3 = lm_trainer(*model3);
  const TrainBatch batch = random_batch({6, 2}, 20);
  trainer2->compute_gradients({batch});
  trainer3->compute_gradients({batch});
  for (const std::string& name : trainer2->trainable())
    EXPECT_EQ(values(trainer2->state(name)->grad), values(trainer3->state(name)->grad)) << name;
}

TEST(Trainer, ConfigurationErrorsNameTheField) {
  auto model = tiny_model();
  TrainerConfig typo;
  typo.frozen = {"model.embed_token."};
  EXPECT_NE(error_of([&] {
              lm_trainer(*model, typo);
            }).find("the pattern 'model.embed_token.' (frozen) matches no tensor of the model"),
            std::string::npos);
  TrainerConfig all;
  all.frozen = {"*"};
  EXPECT_NE(error_of([&] { lm_trainer(*model, all); }).find("every tensor of the model is frozen"),
            std::string::npos);
  TrainerConfig lr;
  lr.adamw.lr = 0;
  EXPECT_NE(error_of([&] { lm_trainer(*model, lr); }).find("adamw lr 0"), std::string::npos);
  TrainerConfig betas;
  betas.adamw.beta2 = 1.0;
  EXPECT_NE(error_of([&] { lm_trainer(*model, betas); }).find("adamw betas"), std::string::npos);
  TrainerConfig ratio;
  ratio.schedule.min_lr_ratio = 2;
  EXPECT_NE(error_of([&] { lm_trainer(*model, ratio); }).find("min_lr_ratio"), std::string::npos);

  auto trainer = lm_trainer(*model);
  TrainBatch bad = random_batch({4}, 1);
  bad.tokens[2] = 99;
  EXPECT_NE(error_of([&] {
              trainer->step({random_batch({3}, 1), bad});
            }).find("micro-batch 1: training batch: token 99 at 2 is outside [0, 23)"),
            std::string::npos);
  TrainBatch single = random_batch({1}, 1);  // one token: no next token to predict
  EXPECT_NE(error_of([&] { trainer->step({single}); }).find("counts 0 tokens with a target"),
            std::string::npos);
  EXPECT_NE(error_of([&] { trainer->step({}); }).find("at least one micro-batch"),
            std::string::npos);
  EXPECT_EQ(trainer->steps(), 0);
}

TEST(Trainer, IsDeterministicForAGivenThreadCount) {
  std::vector<std::vector<double>> runs;
  std::vector<std::map<std::string, Tensor>> weights;
  for (int run = 0; run < 2; ++run) {
    ThreadPool pool(3);
    auto model = tiny_model({}, pool);
    TrainerConfig config;
    config.adamw.lr = 5e-3;
    auto trainer = lm_trainer(*model, config);
    std::vector<double> losses;
    for (int i = 0; i < 4; ++i)
      losses.push_back(
          trainer->step({random_batch({7, 5}, 30 + i), random_batch({4}, 40 + i)}).loss);
    runs.push_back(losses);
    std::map<std::string, Tensor> w;
    for (const auto& [name, t] : model->weights().all()) w[name] = t.clone();
    weights.push_back(std::move(w));
  }
  EXPECT_EQ(runs[0], runs[1]);
  for (const auto& [name, t] : weights[0]) EXPECT_TRUE(same_bytes(t, weights[1].at(name))) << name;
}

TEST(Trainer, AShortRunLowersTheLoss) {
  auto model = tiny_model();
  TrainerConfig config;
  config.adamw.lr = 2e-2;
  config.adamw.weight_decay = 0.01;
  config.schedule.warmup_steps = 5;
  config.schedule.total_steps = 60;
  config.schedule.min_lr_ratio = 0.1;
  auto trainer = lm_trainer(*model, config);
  const std::vector<TrainBatch> data = {random_batch({12, 12}, 50), random_batch({12, 12}, 51)};
  const double initial = trainer->evaluate(data);
  train::StepStats last;
  for (int i = 0; i < 60; ++i) last = trainer->step({data[static_cast<size_t>(i % 2)]});
  const double final_loss = trainer->evaluate(data);
  std::printf("[trainer] 60 steps: loss %.4f -> %.4f (last step lr %.2e, grad norm %.3f)\n",
              initial, final_loss, last.lr, last.grad_norm);
  EXPECT_EQ(last.step, 60);
  EXPECT_EQ(trainer->steps(), 60);
  EXPECT_EQ(last.tokens, 24);
  EXPECT_EQ(last.count, 22);
  EXPECT_NEAR(last.lr, 2e-3, 1e-12);  // the floor at the end of the decay
  EXPECT_LT(final_loss, 0.5 * initial);
}

TEST(Trainer, ClipsByTheGlobalNorm) {
  // A clipped step = the unclipped gradients, scaled by max_norm / norm, through AdamW.
  auto model = tiny_model();
  auto same = tiny_model();
  TrainerConfig config;
  config.clip_norm = 1e-3;
  auto trainer = lm_trainer(*model, config);
  const train::TrainBatch batch = random_batch({6}, 60);
  const train::StepStats stats = trainer->step({batch});
  EXPECT_GT(stats.grad_norm, 1e-3);
  EXPECT_NEAR(stats.clip_factor, 1e-3 / stats.grad_norm, 1e-12);
  double norm = 0;
  for (const std::string& name : trainer->trainable())
    for (float g : values(trainer->state(name)->grad)) norm += static_cast<double>(g) * g;
  EXPECT_NEAR(std::sqrt(norm), stats.grad_norm, 1e-9 * stats.grad_norm);  // left unclipped

  TrainerConfig plain = config;
  plain.clip_norm = 0;
  auto by_hand = lm_trainer(*same, plain);
  by_hand->compute_gradients({batch});
  for (const std::string& name : by_hand->trainable()) {
    const train::ParamState& s = *by_hand->state(name);  // tensors share their storage
    std::vector<float> clipped = values(s.grad);
    for (float& g : clipped) g *= static_cast<float>(stats.clip_factor);
    train::adamw_update(nullptr, plain.adamw, stats.lr, 1, s.decay, s.master.data<float>(),
                        clipped.data(), s.m.data<float>(), s.v.data<float>(), s.master.numel());
    EXPECT_TRUE(same_bytes(s.master, trainer->state(name)->master)) << name;
  }
}

TEST(Trainer, WeightsInBf16AreUpdatedFromF32Masters) {
  TinyOptions o;
  o.weight_dtype = "bf16";
  auto model = tiny_model(o);
  auto trainer = lm_trainer(*model);
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  ASSERT_EQ(model->weights().get(name).dtype(), TS_BF16);
  const train::ParamState& s = *trainer->state(name);
  EXPECT_EQ(s.master.dtype(), TS_F32);
  EXPECT_NE(s.master.raw(), model->weights().get(name).raw());
  for (int i = 0; i < 3; ++i) trainer->step({random_batch({6, 6}, 70 + i)});
  // The block reads the master rounded to bf16.
  EXPECT_TRUE(same_bytes(model->weights().get(name), s.master.to(TS_BF16)));
  const train::MemoryReport m = trainer->memory();
  EXPECT_GT(m.master_bytes, 0u);
}

TEST(Trainer, MeasuresActivationMemoryPerLayer) {
  const std::vector<int32_t> lengths = {9, 5};
  const int64_t n = 14, h = 16, qd = 16, inter = 24, heads = 2;
  const int64_t squares = 81 + 25;
  std::map<ts_recompute, train::MemoryReport> reports;
  for (const ts_recompute policy : {TS_RECOMPUTE_NONE, TS_RECOMPUTE_CORE, TS_RECOMPUTE_ALL}) {
    auto model = tiny_model();
    TrainerConfig config;
    config.recompute = policy;
    auto trainer = lm_trainer(*model, config);
    trainer->compute_gradients({random_batch(lengths, 80)});
    const train::MemoryReport report = trainer->memory();
    reports[policy] = report;
    ASSERT_EQ(report.layers.size(), 2u);
    // What the host keeps: the layer's input; without ALL also the FFN's input, both norms'
    // outputs and scales.
    const uint64_t host = policy == TS_RECOMPUTE_ALL ? 4 * n * h : 4 * (n * h * 4 + 2 * n);
    // What the fixture blocks keep: q, k, v, context (+ the probabilities without CORE) and
    // the MLP's up(x) and tanh; nothing under ALL.
    const uint64_t workspace =
        policy == TS_RECOMPUTE_ALL
            ? 0
            : 4 * (4 * n * qd + (policy == TS_RECOMPUTE_NONE ? heads * squares : 0) +
                   2 * n * inter);
    for (const train::LayerMemory& layer : report.layers) {
      EXPECT_EQ(layer.host_bytes, host) << "policy " << policy;
      EXPECT_EQ(layer.workspace_bytes, workspace) << "policy " << policy;
    }
    EXPECT_EQ(report.head_bytes, 4u * (2 * n * h + n + n * 23));
    EXPECT_GT(report.peak_bytes, 2 * (host + workspace));
    EXPECT_EQ(report.gradient_bytes, report.optimizer_bytes / 2);
    EXPECT_EQ(report.master_bytes, 0u);  // f32 weights are their own masters
    std::printf("%s", train::format_memory_report(report).c_str());
    // The formula for the gqa + swiglu equivalent of this layer, side by side.
    train::LayerShape shape;
    shape.hidden = h;
    shape.heads = heads;
    shape.kv_heads = heads;
    shape.head_dim = 8;
    shape.intermediate = inter;
    std::printf("  formula (gqa + swiglu of these sizes): %.0f bytes per layer\n",
                train::formula_layer_bytes(shape, {9, 5}, policy, 4.0));
  }
  EXPECT_GT(reports[TS_RECOMPUTE_NONE].peak_bytes, reports[TS_RECOMPUTE_CORE].peak_bytes);
  EXPECT_GT(reports[TS_RECOMPUTE_CORE].peak_bytes, reports[TS_RECOMPUTE_ALL].peak_bytes);
}

TEST(TrainMemory, TheFormulaFollowsMegatronsTerms) {
  train::LayerShape l;
  l.hidden = 64;
  l.heads = 4;
  l.kv_heads = 2;
  l.head_dim = 16;
  l.intermediate = 96;
  const std::vector<int64_t> lengths = {10, 6};  // 16 tokens, 136 squared
  // gqa: 16 (2*64 + 2*64 + 2*32) + 4 * 136; swiglu 16 (2*64 + 3*96); f32.
  const double none = 4.0 * (16 * (128 + 128 + 64) + 4 * 136 + 16 * (128 + 288));
  EXPECT_DOUBLE_EQ(train::formula_layer_bytes(l, lengths, TS_RECOMPUTE_NONE, 4), none);
  EXPECT_DOUBLE_EQ(train::formula_layer_bytes(l, lengths, TS_RECOMPUTE_CORE, 4),
                   none - 4.0 * 4 * 136);
  EXPECT_DOUBLE_EQ(train::formula_layer_bytes(l, lengths, TS_RECOMPUTE_ALL, 4), 4.0 * 16 * 64);
  l.attention = train::LayerShape::Attention::none;
  l.ffn = train::LayerShape::Ffn::none;
  EXPECT_DOUBLE_EQ(train::formula_layer_bytes(l, lengths, TS_RECOMPUTE_ALL, 4), 0.0);
  // Megatron's own: s b h (34 + 5 a s / h).
  EXPECT_DOUBLE_EQ(train::megatron_paper_layer_bytes(2048, 1, 12288, 96),
                   2048.0 * 12288 * (34 + 5.0 * 96 * 2048 / 12288));
  // From a manifest of known kinds; nullopt for others.
  const Manifest hetero = hetero_manifest();
  const std::optional<train::LayerShape> l1 = train::layer_shape(hetero, 1);
  ASSERT_TRUE(l1);
  EXPECT_EQ(l1->kv_heads, 1);
  EXPECT_EQ(l1->intermediate, 96);
  EXPECT_EQ(train::layer_shape(hetero, 2)->attention, train::LayerShape::Attention::linear);
  EXPECT_EQ(train::layer_shape(hetero, 3)->intermediate, 40);
  EXPECT_EQ(train::layer_shape(hetero, 5)->ffn, train::LayerShape::Ffn::none);
  EXPECT_FALSE(train::layer_shape(tiny_manifest(), 0));
}

TEST(TrainName, PatternsAreGlobsOrPrefixes) {
  EXPECT_TRUE(train::name_matches("model.layers.1.", "model.layers.1.mlp.up_proj.weight"));
  EXPECT_FALSE(train::name_matches("model.layers.1.", "model.layers.10.mlp.up_proj.weight"));
  EXPECT_TRUE(train::name_matches("*.mlp.*", "model.layers.3.mlp.up_proj.weight"));
  EXPECT_TRUE(train::name_matches("model.layers.?.self_attn.q_proj.weight",
                                  "model.layers.4.self_attn.q_proj.weight"));
  EXPECT_FALSE(train::name_matches("*.mlp", "model.layers.3.mlp.up_proj.weight"));
}

// --------------------------------------------------------------------- distill

TEST(TrainDistill, GkdOfAModelAgainstItselfIsZero) {
  auto parent = tiny_model();
  auto child = tiny_model();
  Trainer trainer(*child, train_plugins(), {},
                  std::make_unique<train::DistillObjective>(*parent, train::DistillConfig{}));
  const double loss = trainer.evaluate({random_batch({6, 4}, 90)});
  EXPECT_NEAR(loss, 0.0, 1e-6);
}

TEST(TrainDistill, GkdGradientsMatchFiniteDifferencesAndTheLossFalls) {
  TinyOptions p;
  p.seed = 11;
  auto parent = tiny_model(p);
  auto child = tiny_model();
  train::DistillConfig dc;
  dc.temperature = 2.0;
  dc.cosine_weight = 0.5;
  TrainerConfig config;
  config.adamw.lr = 1e-2;
  Trainer trainer(*child, train_plugins(), config,
                  std::make_unique<train::DistillObjective>(*parent, dc));
  const std::vector<TrainBatch> batches = {random_batch({6, 4}, 91)};
  check_against_finite_differences(*child, trainer, batches, "distill (GKD), T = 2");
  const double before = trainer.evaluate(batches);
  for (int i = 0; i < 20; ++i) trainer.step(batches);
  const double after = trainer.evaluate(batches);
  std::printf("[trainer] GKD 20 steps: %.4f -> %.4f\n", before, after);
  EXPECT_LT(after, 0.7 * before);
  // The objective checks the parent's slots.
  auto small = tiny_model(p, test_pool(), 1);
  Trainer t2(*child, train_plugins(), config,
             std::make_unique<train::DistillObjective>(*small, dc));
  EXPECT_NE(error_of([&] { t2.evaluate(batches); })
                .find("the batch has 2 sequences but the "
                      "model has 1 slots"),
            std::string::npos);
}

TEST(TrainDistill, BldTrainsOneBlockAgainstTheParentsBlock) {
  TinyOptions p;
  p.seed = 12;
  auto parent = tiny_model(p);
  auto child = tiny_model();
  const TrainBatch tokens = random_batch({8, 6}, 92);
  const train::BlockRecord record = train::record_block_io(*parent, tokens, 1, TS_KIND_FFN);
  train::BlockBatch batch;
  batch.offsets = tokens.offsets;
  batch.input = record.input;
  batch.target = record.output;

  TrainerConfig config;
  config.train_only = {"model.layers.1.mlp.", "model.layers.1.post_attention_layernorm."};
  config.adamw.lr = 1e-2;
  Trainer trainer(*child, train_plugins(), config, std::make_unique<train::LmObjective>());

  // The block's gradients against directional finite differences of the block loss.
  trainer.compute_block_gradients(1, TS_KIND_FFN, {batch});
  for (const std::string& name : trainer.trainable()) {
    const std::vector<float> g = values(trainer.state(name)->grad);
    double norm = 0;
    for (float v : g) norm += static_cast<double>(v) * v;
    norm = std::sqrt(norm);
    float* data = child->weights().get(name).data<float>();
    const std::vector<float> keep(data, data + g.size());
    auto at = [&](double sign) {
      for (size_t i = 0; i < g.size(); ++i)
        data[i] = static_cast<float>(keep[i] + sign * 1e-2 * g[i] / norm);
      return trainer.compute_block_gradients(1, TS_KIND_FFN, {batch});
    };
    const double fd = (at(1) - at(-1)) / 2e-2;
    std::copy(keep.begin(), keep.end(), data);
    EXPECT_LT(std::fabs(fd - norm) / norm, 2e-2) << name;
  }

  const double before = trainer.compute_block_gradients(1, TS_KIND_FFN, {batch});
  train::StepStats stats;
  for (int i = 0; i < 30; ++i) stats = trainer.step_block(1, TS_KIND_FFN, {batch});
  const double after = trainer.compute_block_gradients(1, TS_KIND_FFN, {batch});
  std::printf("[trainer] BLD 30 steps (normalised MSE): %.4f -> %.4f\n", before, after);
  EXPECT_LT(after, 0.5 * before);
  EXPECT_EQ(stats.tokens, 14);

  // The parent against itself scores 0; the child fed the parent's input, with the parent's
  // weights, reproduces the parent's output.
  auto same = tiny_model(p);
  Trainer own(*same, train_plugins(), config, std::make_unique<train::LmObjective>());
  EXPECT_NEAR(own.compute_block_gradients(1, TS_KIND_FFN, {batch}), 0.0, 1e-10);

  // Errors: an identity block, a block with nothing trainable, sizes.
  EXPECT_NE(error_of([&] {
              trainer.step_block(0, TS_KIND_FFN, {batch});
            }).find("nothing of layer 0 ffn train-mlp (fixture-train) trains"),
            std::string::npos);
  train::BlockBatch short_batch = batch;
  short_batch.input.pop_back();
  EXPECT_NE(error_of([&] {
              trainer.step_block(1, TS_KIND_FFN, {short_batch});
            }).find("expected 224 (n_tokens * hidden) each"),
            std::string::npos);
}

TEST(TrainDistill, OnePassRecordsEqualEachBlockRecordedAlone) {
  TinyOptions p;
  p.seed = 14;
  auto parent = tiny_model(p);
  const TrainBatch tokens = random_batch({7, 4}, 95);
  const std::vector<train::BlockRef> blocks = {
      {1, TS_KIND_FFN}, {0, TS_KIND_ATTENTION}, {1, TS_KIND_ATTENTION}, {0, TS_KIND_FFN}};
  const std::vector<train::BlockRecord> together = train::record_blocks_io(*parent, tokens, blocks);
  ASSERT_EQ(together.size(), blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    const train::BlockRecord alone =
        train::record_block_io(*parent, tokens, blocks[i].layer, blocks[i].kind);
    EXPECT_EQ(together[i].input, alone.input) << i;
    EXPECT_EQ(together[i].output, alone.output) << i;
  }
  EXPECT_NE(error_of([&] {
              train::record_blocks_io(*parent, tokens, {{1, TS_KIND_FFN}, {1, TS_KIND_FFN}});
            }).find("layer 1 ffn is listed twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              train::record_blocks_io(*parent, tokens, {{2, TS_KIND_FFN}});
            }).find("layer 2 out of range [0, 2)"),
            std::string::npos);
}

TEST(TrainDistill, SeveralBlocksInOneStepEqualEachBlockAlone) {
  TinyOptions p;
  p.seed = 15;
  auto parent = tiny_model(p);
  const TrainBatch tokens = random_batch({6, 5}, 96);
  const std::vector<train::BlockRef> refs = {{1, TS_KIND_FFN}, {1, TS_KIND_ATTENTION}};
  const std::vector<train::BlockRecord> records = train::record_blocks_io(*parent, tokens, refs);
  std::vector<train::BlockStep> steps;
  for (size_t i = 0; i < refs.size(); ++i) {
    train::BlockBatch b;
    b.offsets = tokens.offsets;
    b.input = records[i].input;
    b.target = records[i].output;
    steps.push_back({refs[i].layer, refs[i].kind, {b}});
  }
  TrainerConfig config;
  config.train_only = {"model.layers.1."};
  config.clip_norm = 0;  // clipping is the one thing that couples the blocks
  config.adamw.lr = 1e-2;

  auto both_model = tiny_model();
  Trainer both(*both_model, train_plugins(), config, std::make_unique<train::LmObjective>());
  const double before = both.evaluate_blocks(steps);
  // Evaluation runs forwards only: the gradient buffers keep what a computation left there.
  const double loss = both.compute_block_gradients(1, TS_KIND_FFN, steps[0].micro_batches);
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  const std::vector<float> grads = values(both.state(up)->grad);
  EXPECT_EQ(both.evaluate_blocks({steps[0]}), loss);
  EXPECT_EQ(values(both.state(up)->grad), grads);
  train::StepStats stats;
  for (int i = 0; i < 3; ++i) stats = both.step_blocks(steps);
  EXPECT_LT(both.evaluate_blocks(steps), before);
  EXPECT_EQ(stats.tokens, 2 * 11);
  EXPECT_EQ(both.steps(), 3);

  for (const train::BlockStep& step : steps) {
    auto alone_model = tiny_model();
    Trainer alone(*alone_model, train_plugins(), config, std::make_unique<train::LmObjective>());
    for (int i = 0; i < 3; ++i) alone.step_block(step.layer, step.kind, step.micro_batches);
    const std::string part = step.kind == TS_KIND_FFN ? "mlp." : "self_attn.";
    int compared = 0;
    for (const std::string& name : alone.trainable()) {
      if (name.find(part) == std::string::npos) continue;
      EXPECT_TRUE(same_bytes(alone.state(name)->master, both.state(name)->master)) << name;
      ++compared;
    }
    EXPECT_GT(compared, 0);
  }
  EXPECT_NE(error_of([&] {
              both.step_blocks({steps[0], steps[0]});
            }).find("listed twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] { both.step_blocks({}); }).find("no block was given"), std::string::npos);
}

TEST(TrainDistill, IdentityBlocksAreSkippedAndHaveNothingToTrain) {
  TinyOptions o;
  o.layer1_attention = "{ kind = \"noop\" }";
  auto model = tiny_model(o);
  auto trainer = lm_trainer(*model);
  EXPECT_EQ(trainer->state("model.layers.1.input_layernorm.weight"), nullptr);
  check_against_finite_differences(*model, *trainer, {random_batch({5, 5}, 93)},
                                   "lm, a no-op attention in layer 1");
  EXPECT_NE(error_of([&] {
              trainer->step_block(1, TS_KIND_ATTENTION, {});
            }).find("layer 1 attention is an identity (no-op): it has nothing to train"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera::test
