// Medusa: heads trained on a frozen model (gradients against finite differences, checkpoints
// that resume exactly, the folder the decoder reads), and the "medusa" decoder: greedy
// acceptance gives plain greedy decoding's tokens for every tree, budget and end token, with
// several tokens per step; a batch gives each sequence what it gets alone; typical acceptance
// draws its first token from the model's distribution; bad heads and trees are refused.
#include "hf_fixtures.hpp"
#include "model_fixtures.hpp"

#include <tessera/decoding/medusa_heads.hpp>
#include <tessera/engine/generator.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/formats/decoder_weights.hpp>
#include <tessera/formats/safetensors.hpp>
#include <tessera/train/medusa_trainer.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

namespace fs = std::filesystem;
using train::MedusaTrainConfig;
using train::MedusaTrainer;
using train::TrainBatch;

ModelOptions slots(int32_t n, int32_t capacity = 0) {
  ModelOptions o;
  o.slots = n;
  o.capacity = capacity;
  return o;
}

TrainBatch batch_of(const std::vector<std::vector<int32_t>>& seqs) {
  TrainBatch b;
  b.offsets.push_back(0);
  for (const auto& s : seqs) {
    b.tokens.insert(b.tokens.end(), s.begin(), s.end());
    b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  return b;
}

// Every head parameter set to small pseudo-random values (heads from the paper's zero start
// all propose the base model's own next token).
void randomise(MedusaTrainer& t, uint64_t seed, float scale) {
  uint64_t x = seed;
  for (const std::string& name : t.names()) {
    float* v = t.value(name);
    for (int64_t i = 0; i < t.size(name); ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      v[i] = scale * (static_cast<float>(x >> 40) / static_cast<float>(1 << 24) - 0.5f);
    }
  }
}

class MedusaTest : public TempFolderTest {
 protected:
  MedusaTest()
      : manifest(hetero_manifest("{ kind = \"swiglu\" }", true, 160)),
        weights(init_random_weights(manifest, plugins(), 11)),
        model(manifest, plugins(), weights, test_pool(), slots(4)) {}

  // Heads written as `tessera train` writes them: randomised, then trained for `steps` steps on
  // the model's own greedy continuations of a few prompts (so that they guess right often).
  fs::path write_heads(int32_t heads, int32_t layers, uint64_t seed, float scale = 2.0f,
                       int steps = 0) {
    MedusaTrainConfig c;
    c.heads = heads;
    c.layers = layers;
    c.adamw.lr = 1e-2;
    std::vector<TrainBatch> batches;
    if (steps > 0) {
      std::vector<std::vector<int32_t>> seqs;
      for (int32_t i = 0; i < 8; ++i) {
        std::vector<int32_t> s = {i * 11 + 1, i * 7 + 3};
        const auto r = run({{0, 0, s}}, options("greedy", 60)).front().tokens;
        s.insert(s.end(), r.begin(), r.end());
        seqs.push_back(s);
      }
      batches = {batch_of({seqs[0], seqs[1], seqs[2], seqs[3]}),
                 batch_of({seqs[4], seqs[5], seqs[6], seqs[7]})};
    }
    MedusaTrainer t(model, c);
    randomise(t, seed, scale);
    for (int i = 0; i < steps; ++i) t.step(batches);
    const fs::path folder = dir_ / ("heads-" + std::to_string(heads) + "-" +
                                    std::to_string(layers) + "-" + std::to_string(seed));
    t.write_heads(folder, nullptr);
    return folder;
  }

  GenerateOptions options(const std::string& kind, int32_t max_new) const {
    GenerateOptions o;
    o.max_new_tokens = max_new;
    o.decoder.kind = kind;
    o.decoder.params.set("eos_token_ids", std::vector<int64_t>{});
    return o;
  }

  std::vector<GenerateResult> run(const std::vector<SequenceRequest>& requests, GenerateOptions o,
                                  const fs::path& heads = {}) {
    std::unique_ptr<DecoderWeights> w;
    if (!heads.empty()) {
      w = std::make_unique<DecoderWeights>(heads, o.decoder.kind, o.decoder.params,
                                           &model.lm_head());
      o.decoder_weights = w->c_weights();
    }
    Generator g(model, plugins());
    return g.generate_batch(requests, o);
  }

  Manifest manifest;
  WeightStore weights;
  Model model;
  const std::vector<std::vector<int32_t>> prompts{
      {1, 17, 42, 99, 5}, {7}, {33, 34, 35, 36, 37, 38}, {64, 2}};
};

// ------------------------------------------------------------------ the heads' training

TEST_F(MedusaTest, GradientsMatchFiniteDifferences) {
  for (int32_t layers : {1, 2}) {
    MedusaTrainConfig c;
    c.heads = 2;
    c.layers = layers;
    MedusaTrainer t(model, c);
    randomise(t, 5, 0.5f);
    const std::vector<TrainBatch> batches = {batch_of({{1, 5, 9, 20, 33, 7, 8}, {4, 4, 60, 2}})};
    t.compute_gradients(batches);
    for (const std::string& name : t.names()) {
      const std::vector<float> grad(t.gradient(name), t.gradient(name) + t.size(name));
      float* v = t.value(name);
      for (int64_t i : {int64_t{0}, t.size(name) / 3, t.size(name) - 1}) {
        const float keep = v[i];
        const float h = 2e-3f;
        v[i] = keep + h;
        const double up = t.compute_gradients(batches);
        v[i] = keep - h;
        const double down = t.compute_gradients(batches);
        v[i] = keep;
        const double fd = (up - down) / (2.0 * h);
        EXPECT_NEAR(grad[static_cast<size_t>(i)], fd, 2e-3 + 2e-2 * std::fabs(fd))
            << name << "[" << i << "], " << layers << " layer(s)";
      }
    }
  }
}

TEST_F(MedusaTest, TrainingLowersTheLossAndResumesExactly) {
  MedusaTrainConfig c;
  c.heads = 3;
  c.adamw.lr = 3e-3;
  // The model's own greedy continuations: text the heads can learn.
  std::vector<std::vector<int32_t>> seqs;
  for (const auto& p : prompts) {
    std::vector<int32_t> s = p;
    const auto r = run({{0, 0, p}}, options("greedy", 30)).front().tokens;
    s.insert(s.end(), r.begin(), r.end());
    seqs.push_back(s);
  }
  const std::vector<TrainBatch> batches = {batch_of({seqs[0], seqs[1]}),
                                           batch_of({seqs[2], seqs[3]})};
  MedusaTrainer a(model, c);
  const double before = a.evaluate(batches).loss;
  for (int i = 0; i < 4; ++i) a.step(batches);
  a.save(dir_ / "ckpt");
  for (int i = 0; i < 4; ++i) a.step(batches);
  const train::MedusaEval after = a.evaluate(batches);
  EXPECT_LT(after.loss, before * 0.9);
  EXPECT_GE(after.top(0, 10), after.top(0, 1));

  MedusaTrainer b(model, c);
  b.load(dir_ / "ckpt");
  EXPECT_EQ(b.steps(), 4);
  for (int i = 0; i < 4; ++i) b.step(batches);
  for (const std::string& name : a.names())
    for (int64_t i = 0; i < a.size(name); ++i)
      ASSERT_EQ(a.value(name)[i], b.value(name)[i]) << name << "[" << i << "]";

  // A checkpoint of other heads is refused before anything changes.
  MedusaTrainConfig other = c;
  other.heads = 2;
  MedusaTrainer d(model, other);
  EXPECT_NE(error_of([&] { d.load(dir_ / "ckpt"); }).find("holds 6 tensors, expected 4"),
            std::string::npos);
  EXPECT_EQ(d.steps(), 0);

  // The heads' folder: tensors under the public names, accuracies in config.json.
  a.write_heads(dir_ / "heads", &after);
  const WeightStore w = read_safetensors(dir_ / "heads" / "medusa_lm_head.safetensors");
  EXPECT_TRUE(w.has("medusa_head.2.0.linear.weight"));
  EXPECT_TRUE(w.has("medusa_head.2.0.linear.bias"));
  EXPECT_FALSE(w.has("medusa_head.0.1.weight"));  // the projection is the base lm head
  const std::string config = read_file(dir_ / "heads" / "config.json");
  EXPECT_NE(config.find("\"medusa_num_heads\": 3"), std::string::npos);
  EXPECT_NE(config.find("medusa_top_k_accuracy"), std::string::npos);
}

// ------------------------------------------------------------------ the decoder

TEST_F(MedusaTest, GreedyAcceptanceGivesGreedyDecodingsTokens) {
  const fs::path heads = write_heads(4, 1, 3, 0.1f, 30);
  std::vector<SequenceRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i) requests.push_back({0, 0, prompts[i]});
  int64_t tokens = 0, steps = 0;
  for (const char* tree :
       {"chain-1", "chain-3", "[[0], [1], [0, 0], [1, 0], [0, 1]]", "mc_sim_7b_63"})
    for (const SequenceRequest& r : requests)
      for (int32_t max_new : {1, 2, 3, 40}) {
        const auto greedy = run({r}, options("greedy", max_new)).front();
        GenerateOptions o = options("medusa", max_new);
        o.decoder.params.set("tree", std::string(tree));
        const auto medusa = run({r}, o, heads).front();
        EXPECT_EQ(medusa.tokens, greedy.tokens) << "tree " << tree << ", " << max_new << " tokens";
        tokens += static_cast<int64_t>(medusa.tokens.size());
        steps += medusa.decode_steps;
      }
  // Speculation happened: fewer steps than tokens.
  EXPECT_LT(steps, tokens * 9 / 10) << tokens << " tokens in " << steps << " steps";
}

TEST_F(MedusaTest, EndTokensStopItAsTheyStopGreedy) {
  const fs::path heads = write_heads(4, 1, 4);
  for (const auto& p : prompts) {
    const auto free_run = run({{0, 0, p}}, options("greedy", 30)).front().tokens;
    // Each token that occurs in the continuation in turn as the end token.
    for (size_t i = 0; i < free_run.size(); i += 7) {
      GenerateOptions g = options("greedy", 30), m = options("medusa", 30);
      g.decoder.params.set("eos_token_ids", std::vector<int64_t>{free_run[i]});
      m.decoder.params.set("eos_token_ids", std::vector<int64_t>{free_run[i]});
      m.decoder.params.set("tree", std::string("mc_sim_7b_63"));
      const auto a = run({{0, 0, p}}, g).front();
      const auto b = run({{0, 0, p}}, m, heads).front();
      EXPECT_EQ(b.tokens, a.tokens);
      EXPECT_EQ(b.stopped_on_eos, a.stopped_on_eos);
    }
  }
}

TEST_F(MedusaTest, ABatchGivesEachSequenceWhatItGetsAlone) {
  const fs::path heads = write_heads(4, 1, 6);
  std::vector<SequenceRequest> requests;
  for (int32_t i = 0; i < 4; ++i) requests.push_back({i, 0, prompts[static_cast<size_t>(i)]});
  GenerateOptions o = options("medusa", 24);
  o.decoder.params.set("tree", std::string("[[0], [1], [2], [0, 0], [1, 0], [0, 0, 0]]"));
  const auto batch = run(requests, o, heads);
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto alone = run({requests[i]}, o, heads).front();
    const auto greedy = run({requests[i]}, options("greedy", 24)).front();
    EXPECT_EQ(batch[i].tokens, alone.tokens) << "sequence " << i;
    EXPECT_EQ(batch[i].tokens, greedy.tokens) << "sequence " << i;
  }
}

TEST_F(MedusaTest, SixteenBitCachesAndTwoLayerHeadsKeepTheEquivalence) {
  Manifest m16 = manifest;
  m16.runtime.kv_dtype = TS_BF16;
  Model bf16(m16, plugins(), weights, test_pool(), slots(1));
  const fs::path heads = write_heads(2, 2, 8);
  for (const auto& p : prompts) {
    GenerateOptions g = options("greedy", 30), m = options("medusa", 30);
    m.decoder.params.set("tree", std::string("[[0], [1], [0, 0], [0, 1]]"));
    Generator gen(bf16, plugins());
    const auto a = gen.generate(p, g);
    DecoderWeights w(heads, "medusa", m.decoder.params, &bf16.lm_head());
    m.decoder_weights = w.c_weights();
    const auto b = gen.generate(p, m);
    EXPECT_EQ(b.tokens, a.tokens);
  }
}

// ------------------------------------------------------------------ exact mode

// One forward of `tokens` in `slot` (positions and mask as given, or consecutive and causal),
// every row's logits.
std::vector<float> logits_of(Model& m, int32_t slot, const std::vector<int32_t>& tokens,
                             std::vector<int32_t> positions, const uint8_t* mask,
                             bool row_invariant) {
  ForwardBatch b;
  b.slots = {slot};
  b.offsets = {0, static_cast<int32_t>(tokens.size())};
  b.tokens = tokens;
  b.positions = std::move(positions);
  if (mask != nullptr) b.tree_masks = {mask};
  b.row_invariant = row_invariant;
  std::vector<float> logits(tokens.size() * static_cast<size_t>(m.vocab()));
  m.forward(b, logits.data(), nullptr);
  return logits;
}

bool same_bits(const float* a, const float* b, size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

// The property exact mode rests on: in a row-invariant pass, each node of a verified tree gets
// the very bits that feeding its path one token at a time gives, with f32 and bf16 caches,
// before and after the 64-row chunk bound of the attention's reduction.
TEST_F(MedusaTest, ARowInvariantTreePassGivesEachNodeTheBitsOfTokenByTokenDecoding) {
  // Parents of a 7-node tree (node 0 the root) and its tokens.
  const std::vector<int32_t> parent = {-1, 0, 0, 1, 3, 2, 0};
  const std::vector<int32_t> tree_tokens = {5, 77, 12, 93, 9, 64, 3};
  const auto n = static_cast<int32_t>(parent.size());
  std::vector<uint8_t> mask(static_cast<size_t>(n * n), 0);
  std::vector<int32_t> depth(static_cast<size_t>(n), 0);
  for (int32_t i = 0; i < n; ++i)
    for (int32_t j = i; j >= 0; j = parent[static_cast<size_t>(j)]) {
      mask[static_cast<size_t>(i * n + j)] = 1;
      if (j != i) ++depth[static_cast<size_t>(i)];
    }
  for (const ts_dtype kv : {TS_F32, TS_BF16}) {
    Manifest mk = manifest;
    mk.runtime.kv_dtype = kv;
    Model m(mk, plugins(), weights, test_pool(), slots(1));
    for (const int32_t prompt_len : {3, 61, 70}) {
      std::vector<int32_t> prompt;
      for (int32_t i = 0; i < prompt_len; ++i) prompt.push_back((i * 37 + 11) % m.vocab());
      m.reset(0);
      logits_of(m, 0, prompt, {}, nullptr, true);
      std::vector<int32_t> positions;
      for (int32_t i = 0; i < n; ++i)
        positions.push_back(prompt_len + depth[static_cast<size_t>(i)]);
      const auto tree = logits_of(m, 0, tree_tokens, positions, mask.data(), true);
      const auto v = static_cast<size_t>(m.vocab());
      for (int32_t i = 0; i < n; ++i) {
        std::vector<int32_t> path;
        for (int32_t j = i; j >= 0; j = parent[static_cast<size_t>(j)])
          path.insert(path.begin(), tree_tokens[static_cast<size_t>(j)]);
        m.compact_kv(0, prompt_len, nullptr, 0);  // back to the prompt
        std::vector<float> alone;
        for (const int32_t t : path) alone = logits_of(m, 0, {t}, {}, nullptr, true);
        EXPECT_TRUE(same_bits(alone.data(), tree.data() + static_cast<size_t>(i) * v, v))
            << "node " << i << ", prompt of " << prompt_len << ", kv dtype " << kv;
      }
    }
  }
}

TEST_F(MedusaTest, ARowInvariantBatchGivesEachSequenceTheBitsItGetsAlone) {
  // Prefill of two prompts at once against each alone, then one decode token each.
  const std::vector<int32_t> a = {1, 17, 42, 99, 5, 8, 13}, b = {64, 2};
  ForwardBatch both;
  both.slots = {0, 1};
  both.offsets = {0, 7, 9};
  both.tokens = a;
  both.tokens.insert(both.tokens.end(), b.begin(), b.end());
  both.row_invariant = true;
  model.reset(0);
  model.reset(1);
  const auto v = static_cast<size_t>(model.vocab());
  std::vector<float> together(9 * v);
  model.forward(both, together.data(), nullptr);
  model.reset(2);
  const auto alone_a = logits_of(model, 2, a, {}, nullptr, true);
  model.reset(3);
  const auto alone_b = logits_of(model, 3, b, {}, nullptr, true);
  EXPECT_TRUE(same_bits(together.data(), alone_a.data(), 7 * v));
  EXPECT_TRUE(same_bits(together.data() + 7 * v, alone_b.data(), 2 * v));
}

TEST_F(MedusaTest, ExactModeGivesGreedysTokensOnLongGenerationsAndBatches) {
  const fs::path heads = write_heads(4, 1, 12, 0.1f, 30);
  std::vector<SequenceRequest> requests;
  for (int32_t i = 0; i < 4; ++i) requests.push_back({i, 0, prompts[static_cast<size_t>(i)]});
  GenerateOptions g = options("greedy", 150), m = options("medusa", 150);
  g.row_invariant = m.row_invariant = true;
  m.decoder.params.set("tree", std::string("mc_sim_7b_63"));
  const auto batch = run(requests, m, heads);
  int64_t tokens = 0, steps = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto greedy = run({requests[i]}, g).front();
    const auto alone = run({requests[i]}, m, heads).front();
    EXPECT_EQ(alone.tokens, greedy.tokens) << "sequence " << i;
    EXPECT_EQ(batch[i].tokens, greedy.tokens) << "sequence " << i;
    tokens += static_cast<int64_t>(alone.tokens.size());
    steps += alone.decode_steps;
  }
  EXPECT_LT(steps, tokens * 9 / 10) << tokens << " tokens in " << steps << " steps";
}

// The heads of a batch run in one product per weight, row by row: with row-invariant passes
// a sampled batch draws, sequence by sequence, what each draws alone in its slot.
TEST_F(MedusaTest, InExactModeTypicalAcceptanceGivesABatchWhatEachSequenceDrawsAlone) {
  const fs::path heads = write_heads(4, 1, 13, 0.1f, 30);
  std::vector<SequenceRequest> requests;
  for (int32_t i = 0; i < 4; ++i) requests.push_back({i, 0, prompts[static_cast<size_t>(i)]});
  GenerateOptions o = options("medusa", 40);
  o.row_invariant = true;
  o.decoder.params.set("tree", std::string("[[0], [1], [2], [0, 0], [1, 0], [0, 0, 0]]"));
  o.decoder.params.set("temperature", 0.7);
  o.decoder.params.set("seed", int64_t{5});
  const auto batch = run(requests, o, heads);
  int64_t tokens = 0, steps = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto alone = run({requests[i]}, o, heads).front();
    EXPECT_EQ(batch[i].tokens, alone.tokens) << "sequence " << i;
    EXPECT_EQ(batch[i].decode_steps, alone.decode_steps) << "sequence " << i;
    tokens += static_cast<int64_t>(alone.tokens.size());
    steps += alone.decode_steps;
  }
  EXPECT_LT(steps, tokens) << tokens << " tokens in " << steps << " steps";
}

TEST_F(MedusaTest, ExactModeIsRefusedForABlockThatCannotPromiseIt) {
  const Manifest affine = hetero_manifest("{ kind = \"affine\" }", true, 160);
  const WeightStore w = init_random_weights(affine, fixture_plugins(), 3);
  Model m(affine, fixture_plugins(), w, test_pool(), slots(1));
  GenerateOptions o = options("greedy", 4);
  o.row_invariant = true;
  Generator gen(m, fixture_plugins());
  const std::string why = error_of([&] { gen.generate({1, 2}, o); });
  EXPECT_NE(why.find("row-invariant (exact) decoding was asked for"), std::string::npos) << why;
  EXPECT_NE(why.find("layer 2 ffn affine"), std::string::npos) << why;
  EXPECT_NE(why.find("TS_BLOCK_ROW_INVARIANT"), std::string::npos) << why;
  ForwardBatch b;
  b.slots = {0};
  b.offsets = {0, 2};
  b.tokens = {1, 2};
  b.row_invariant = true;
  std::vector<float> logits(2 * static_cast<size_t>(m.vocab()));
  EXPECT_NE(error_of([&] { m.forward(b, logits.data(), nullptr); }).find("layer 2 ffn affine"),
            std::string::npos);
  o.row_invariant = false;  // the fast passes still run
  EXPECT_EQ(gen.generate({1, 2}, o).tokens.size(), 4u);
}

TEST_F(MedusaTest, TypicalAcceptanceDrawsItsFirstTokenFromTheModel) {
  const fs::path heads = write_heads(2, 1, 9);
  const std::vector<int32_t> prompt = {1, 17, 42};
  const double temperature = 0.7;
  // The model's distribution of the first token.
  ForwardBatch fb = one_sequence(prompt);
  model.reset(0);
  const std::vector<float> logits = run_logits(model, fb);
  const size_t vocab = static_cast<size_t>(model.vocab());
  std::vector<double> p(vocab);
  double z = 0, mx = -1e30;
  for (size_t i = 0; i < vocab; ++i) mx = std::max<double>(mx, logits[logits.size() - vocab + i]);
  for (size_t i = 0; i < vocab; ++i)
    z += p[i] = std::exp((logits[logits.size() - vocab + i] - mx) / temperature);
  for (double& v : p) v /= z;

  std::vector<int> counts(vocab, 0);
  const int draws = 600;
  std::vector<int32_t> first_run;
  for (int d = 0; d < draws; ++d) {
    GenerateOptions o = options("medusa", 2);
    o.decoder.params.set("temperature", temperature);
    o.decoder.params.set("seed", int64_t{d});
    o.decoder.params.set("tree", std::string("chain-2"));
    const auto r = run({{0, 0, prompt}}, o, heads).front();
    ASSERT_EQ(r.tokens.size(), 2u);
    ++counts[static_cast<size_t>(r.tokens[0])];
    if (d == 0) first_run = r.tokens;
  }
  // Chi-square over the likely tokens (expected count >= 5) and the rest pooled.
  double stat = 0, rest_p = 0;
  int rest_n = 0, dof = 0;
  for (size_t i = 0; i < vocab; ++i) {
    const double e = p[i] * draws;
    if (e >= 5) {
      stat += (counts[i] - e) * (counts[i] - e) / e;
      ++dof;
    } else {
      rest_p += p[i];
      rest_n += counts[i];
    }
  }
  if (rest_p * draws >= 5) {
    stat += (rest_n - rest_p * draws) * (rest_n - rest_p * draws) / (rest_p * draws);
    ++dof;
  }
  ASSERT_GE(dof, 3);
  // P(chi2 > 3 * dof + 10) is far below 1e-3 for these dof; the seeds are fixed.
  EXPECT_LT(stat, 3.0 * dof + 10) << dof << " degrees of freedom";
  // The same seed draws the same tokens.
  GenerateOptions o = options("medusa", 2);
  o.decoder.params.set("temperature", temperature);
  o.decoder.params.set("seed", int64_t{0});
  o.decoder.params.set("tree", std::string("chain-2"));
  EXPECT_EQ(run({{0, 0, prompt}}, o, heads).front().tokens, first_run);
}

TEST_F(MedusaTest, BadHeadsAndTreesAreRefusedClearly) {
  const fs::path heads = write_heads(2, 1, 10);
  const auto fails = [&](GenerateOptions o, const fs::path& h) {
    return error_of([&] { run({{0, 0, {1, 2}}}, o, h); });
  };
  GenerateOptions o = options("medusa", 4);
  EXPECT_NE(fails(o, {}).find("--decoder-weights"), std::string::npos);
  o.decoder.params.set("tree", std::string("chain-3"));
  EXPECT_NE(fails(o, heads).find("is 3 deep, but there are only 2 heads"), std::string::npos);
  o.decoder.params.set("tree", std::string("[[0], [0, 0, 1]]"));
  EXPECT_NE(fails(o, heads).find("has no parent"), std::string::npos);
  GenerateOptions u = options("medusa", 4);
  u.decoder.params.set("tre", std::string("chain-1"));
  EXPECT_NE(fails(u, heads).find("unknown parameter 'tre'"), std::string::npos);
  GenerateOptions s = options("medusa", 4);
  s.decoder.params.set("seed", int64_t{3});
  EXPECT_NE(fails(s, heads).find("without 'temperature'"), std::string::npos);
  // Heads of the wrong width.
  WeightStore bad = read_safetensors(heads / "medusa_lm_head.safetensors");
  bad.add("medusa_head.1.0.linear.bias", Tensor({7}, TS_F32));
  fs::create_directories(dir_ / "bad");
  write_safetensors(dir_ / "bad" / "medusa_lm_head.safetensors", bad);
  EXPECT_NE(fails(options("medusa", 4), dir_ / "bad")
                .find("medusa_head.1.0.linear.bias has 1 dims [7], expected [64]"),
            std::string::npos);
  // Decoder weights that are not there, or a folder without tensors.
  EXPECT_NE(fails(options("medusa", 4), dir_ / "nothing").find("no such file or folder"),
            std::string::npos);
  fs::create_directories(dir_ / "empty");
  EXPECT_NE(fails(options("medusa", 4), dir_ / "empty").find("holds no .safetensors"),
            std::string::npos);
  // A config that disagrees with the tensors: the tensors win (2 heads), the run goes on.
  write_file(heads / "config.json", "{\"medusa_num_heads\": 5, \"medusa_num_layers\": 1}");
  GenerateOptions ok = options("medusa", 6);
  ok.decoder.params.set("tree", std::string("chain-2"));
  EXPECT_EQ(run({{0, 0, {1, 2}}}, ok, heads).front().tokens,
            run({{0, 0, {1, 2}}}, options("greedy", 6)).front().tokens);
}

}  // namespace
}  // namespace tessera::test
