// Puzzle's score and cost stages on the small parent: a replace-1-block score equals the KL of
// the whole model with that block swapped in (running only the layers after it from the parent's
// recorded stream changes nothing), the parent's own blocks score 0, batching adds up, the model
// is the parent again afterwards; costs are measured for every variant, shared by equal blocks,
// with the right bytes; both artefacts round-trip and refuse another library.
#include <gtest/gtest.h>

#include <tessera/puzzle/cost_file.hpp>
#include <tessera/puzzle/costs.hpp>
#include <tessera/puzzle/evaluation.hpp>
#include <tessera/puzzle/puzzle_config.hpp>
#include <tessera/puzzle/score_file.hpp>
#include <tessera/puzzle/scoring.hpp>
#include <tessera/train/reference.hpp>

#include <cmath>

#include "puzzle_fixtures.hpp"

namespace tessera::puzzle {
namespace {

using test::error_of;
using namespace test_fixtures;

// The held-out text of these tests: two batches.
std::vector<train::TrainBatch> held_out() {
  return {test::random_batch({20, 13}, 21, 41), test::random_batch({16}, 22, 41)};
}

TEST(PuzzleScoring, CompareLogitsMatchesTheReference) {
  const int64_t rows = 5, vocab = 7;
  std::vector<float> a(rows * vocab), b(rows * vocab);
  Rng rng(3);
  for (float& v : a) v = 3.0f * rng.normal();
  for (float& v : b) v = 3.0f * rng.normal();
  // Row 2 agrees by construction; row 4 is a tie in both (the lowest index wins).
  for (int64_t v = 0; v < vocab; ++v) b[2 * vocab + v] = a[2 * vocab + v] + 0.01f;
  for (int64_t v = 0; v < vocab; ++v) a[4 * vocab + v] = b[4 * vocab + v] = 1.0f;
  const ScoreSums s = compare_logits(nullptr, a.data(), b.data(), rows, vocab);
  const train::reference::Vec av(a.begin(), a.end()), bv(b.begin(), b.end());
  EXPECT_NEAR(s.kl, train::reference::kl_divergence(av, bv, rows, vocab, 1.0, nullptr), 1e-5);
  int64_t agreed = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const auto arg = [&](const std::vector<float>& m) {
      return std::max_element(m.begin() + r * vocab, m.begin() + (r + 1) * vocab) - m.begin();
    };
    agreed += arg(a) == arg(b) ? 1 : 0;
  }
  EXPECT_EQ(s.agreed, agreed);
  EXPECT_GE(s.agreed, 2);
  EXPECT_DOUBLE_EQ(compare_logits(nullptr, a.data(), a.data(), rows, vocab).kl, 0.0);
}

TEST(PuzzleScoring, AScoreIsTheWholeModelsKlWithThatBlockSwappedIn) {
  Built b = build(parent_weights());
  auto model = model_of(parent_manifest(), b.weights);
  const std::vector<train::TrainBatch> batches = held_out();
  ScoreState state = empty_scores(b.library);
  int64_t last_done = 0, total = 0;
  for (const train::TrainBatch& batch : batches)
    score_batch(*model, b.library, batch, state, [&](int64_t done, int64_t all) {
      EXPECT_EQ(done, last_done % all + 1);
      last_done = done;
      total = all;
    });
  EXPECT_EQ(state.batches, 2);
  EXPECT_EQ(state.tokens, 49);
  EXPECT_EQ(total, 4 + 4 + 3 + 3 + 1);  // the non-parent variants of the three layers

  // The model is the parent again.
  auto fresh = model_of(parent_manifest(), b.weights);
  EXPECT_EQ(logits_of(*model, kPrompt), logits_of(*fresh, kPrompt));

  for (int32_t l = 0; l < 3; ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::vector<Variant>& list = b.library[static_cast<size_t>(l)].of(part);
      for (size_t i = 0; i < list.size(); ++i) {
        SCOPED_TRACE("layer " + std::to_string(l) + " " + list[i].name);
        const ScoreSums& got = state.layers[static_cast<size_t>(l)].of(part)[i];
        if (list[i].init == VariantInit::kParent) {
          EXPECT_EQ(got.kl, 0.0);
          EXPECT_EQ(got.agreed, 49);
          EXPECT_DOUBLE_EQ(agreement(state, got), 1.0);
          continue;
        }
        // The reference: the whole child, from the embedding, against the whole parent.
        auto child = model_of(parent_manifest(), b.weights);
        child->swap_block(l, part, list[i].block);
        double kl = 0;
        int64_t agreed = 0;
        for (const train::TrainBatch& batch : batches) {
          const train::RecordedOutputs p = train::record_outputs(*fresh, batch);
          const train::RecordedOutputs c = train::record_outputs(*child, batch);
          const ScoreSums s = compare_logits(nullptr, c.logits.data(), p.logits.data(),
                                             static_cast<int64_t>(batch.tokens.size()), 41);
          kl += s.kl;
          agreed += s.agreed;
        }
        EXPECT_NEAR(got.kl, kl, 1e-6 * std::max(1.0, kl));
        EXPECT_EQ(got.agreed, agreed);
        EXPECT_GT(got.kl, 0.0);
        EXPECT_NEAR(mean_kl(state, got), got.kl / 49.0, 1e-15);
      }
    }
}

TEST(PuzzleScoring, ScoresFileRoundTripsAndRefusesAnotherLibrary) {
  Built b = build(parent_weights());
  auto model = model_of(parent_manifest(), b.weights);
  ScoreFile f;
  f.plan = {32, 2, 2};
  f.state = empty_scores(b.library);
  score_batch(*model, b.library, held_out()[0], f.state);
  f.state.seconds = 1.25;
  const std::string text = scores_json(f, b.library);
  const ScoreFile back = parse_scores_json(text, "scores.json", b.library);
  EXPECT_EQ(back.plan, f.plan);
  EXPECT_FALSE(back.complete);
  EXPECT_EQ(back.state.batches, 1);
  EXPECT_EQ(back.state.tokens, 33);
  EXPECT_DOUBLE_EQ(back.state.seconds, 1.25);
  for (size_t l = 0; l < 3; ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
      for (size_t i = 0; i < b.library[l].of(part).size(); ++i) {
        EXPECT_DOUBLE_EQ(back.state.layers[l].of(part)[i].kl, f.state.layers[l].of(part)[i].kl);
        EXPECT_EQ(back.state.layers[l].of(part)[i].agreed, f.state.layers[l].of(part)[i].agreed);
      }
  // Resuming adds the next batch to the sums read back: the same as scoring both in one go.
  ScoreState resumed = back.state;
  score_batch(*model, b.library, held_out()[1], resumed);
  ScoreState straight = empty_scores(b.library);
  for (const train::TrainBatch& batch : held_out()) score_batch(*model, b.library, batch, straight);
  EXPECT_EQ(resumed.tokens, straight.tokens);
  EXPECT_NEAR(resumed.layers[0].ffn[2].kl, straight.layers[0].ffn[2].kl, 1e-9);

  LibraryOptions narrow;
  narrow.ffn_fractions = {1.0};
  const std::vector<LayerVariants> other = plan_variants(parent_manifest(), narrow);
  const std::string e = error_of([&] { parse_scores_json(text, "scores.json", other); });
  EXPECT_NE(e.find("scores.json: layers[0].ffn must list the library's 3 variants"),
            std::string::npos)
      << e;
  std::string renamed = text;
  renamed.replace(renamed.find("\"gqa_kv2\""), 9, "\"gqa_kv9\"");
  const std::string e2 = error_of([&] { parse_scores_json(renamed, "scores.json", b.library); });
  EXPECT_NE(e2.find("layers[0].attention[1].name is 'gqa_kv9' but the library's variant there "
                    "is 'gqa_kv2'"),
            std::string::npos)
      << e2;
  std::string version = text;
  version.replace(version.find("\"version\": 1"), 12, "\"version\": 7");
  EXPECT_NE(error_of([&] {
              parse_scores_json(version, "scores.json", b.library);
            }).find("version is 7; this build reads version 1"),
            std::string::npos);
}

TEST(PuzzleCosts, SummariseTakesTheMedianAndTheSpread) {
  const Timing t = summarise({3.0, 1.0, 2.0, 10.0, 2.5});
  EXPECT_DOUBLE_EQ(t.seconds, 2.5);
  EXPECT_DOUBLE_EQ(t.noise, 9.0 / 5.0);
  EXPECT_DOUBLE_EQ(summarise({4.0, 2.0}).seconds, 3.0);
  EXPECT_NE(error_of([] { summarise({}); }).find("no timings"), std::string::npos);
}

TEST(PuzzleCosts, EveryVariantIsMeasuredInTheModelWithItsBytesAndTheModelIsTheParentAgain) {
  Built b = build(parent_weights());
  ModelOptions options;
  options.slots = 2;
  options.capacity = 24;
  auto model =
      std::make_unique<Model>(parent_manifest(), plugins(), b.weights, test_pool(), options);
  const std::vector<float> before = logits_of(*model, kPrompt);
  Scenario s;
  s.prefill_len = 12;
  s.decode_len = 8;
  s.batch_sizes = {1, 2};
  s.repeats = 3;
  int64_t calls = 0;
  const Costs c = measure_costs(*model, b.library, s, [&](int64_t done, int64_t total) {
    EXPECT_EQ(done, ++calls);
    EXPECT_LE(done, total);
  });
  EXPECT_EQ(logits_of(*model, kPrompt), before);
  EXPECT_EQ(c.measurements + 1, calls);  // the parent, then every variant group
  EXPECT_EQ(c.weight_dtype, "f32");
  ASSERT_EQ(c.layers.size(), 3U);
  ASSERT_EQ(c.fixed_decode.size(), 2U);
  ASSERT_EQ(c.whole_decode.size(), 2U);
  for (size_t bi = 0; bi < 2; ++bi) {
    EXPECT_GT(c.whole_prefill[bi].seconds, 0.0);
    EXPECT_GT(c.whole_decode[bi].seconds, 0.0);
    // The parent's parts add up to its whole: its blocks plus the fixed part.
    EXPECT_NEAR(parts_decode(c, b.library, bi), c.whole_decode[bi].seconds,
                1e-9 + 1e-9 * c.whole_decode[bi].seconds);
    EXPECT_NEAR(parts_prefill(c, b.library, bi), c.whole_prefill[bi].seconds,
                1e-9 + 1e-9 * c.whole_prefill[bi].seconds);
  }
  for (size_t l = 0; l < 3; ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::vector<Variant>& list = b.library[l].of(part);
      for (size_t i = 0; i < list.size(); ++i) {
        SCOPED_TRACE("layer " + std::to_string(l) + " " + list[i].name);
        const VariantCost& v = c.layers[l].of(part)[i];
        ASSERT_EQ(v.prefill.size(), 2U);
        ASSERT_EQ(v.decode.size(), 2U);
        EXPECT_GE(v.measured_in, 0);
        EXPECT_LE(v.measured_in, static_cast<int32_t>(l));
        // f32 weights: 4 bytes per declared parameter.
        EXPECT_EQ(v.weight_bytes, 4 * list[i].parameters);
        const int64_t kv = part == TS_KIND_ATTENTION ? list[i].kv_heads : 0;
        EXPECT_EQ(v.kv_bytes_per_token, 2 * kv * 8 * 4);  // K and V, head_dim 8, f32
        for (const Timing& t : v.prefill) EXPECT_GE(t.seconds, 0.0);
        if (list[i].block.kind == "noop") {
          EXPECT_EQ(v.decode[0].seconds, 0.0);
        }
      }
    }
  // A variant name is timed once for every layer that offers it: layer 1's own gqa_kv2 with
  // layer 0's pooled one, gqa_kv1 and swiglu_32 with layer 0's; swiglu_40 only in layer 1.
  EXPECT_EQ(c.layers[1].attention[0].measured_in, 0);  // gqa_kv2 (layer 1's own block)
  EXPECT_EQ(c.layers[1].attention[1].measured_in, 0);  // gqa_kv1
  EXPECT_EQ(c.layers[1].ffn[1].measured_in, 0);        // swiglu_32
  EXPECT_EQ(c.layers[1].ffn[0].measured_in, 1);        // swiglu_40
  EXPECT_EQ(c.layers[1].attention[1].decode[0].seconds, c.layers[0].attention[2].decode[0].seconds);
  // (Which block is cheaper is a timing, and timings of a model this small on a shared machine
  // are noise: the tests check the bookkeeping, bench runs on SmolLM2 the figures.)

  const Costs back = parse_costs_json(costs_json(c, b.library), "costs.json", b.library);
  EXPECT_EQ(back.scenario.batch_sizes, s.batch_sizes);
  EXPECT_EQ(back.threads, c.threads);
  EXPECT_EQ(back.measurements, c.measurements);
  EXPECT_DOUBLE_EQ(back.whole_decode[1].seconds, c.whole_decode[1].seconds);
  EXPECT_DOUBLE_EQ(back.layers[2].attention[0].prefill[1].noise,
                   c.layers[2].attention[0].prefill[1].noise);
  EXPECT_EQ(back.layers[0].attention[0].kv_bytes_per_token, 256);

  Scenario too_big = s;
  too_big.batch_sizes = {3};
  EXPECT_NE(error_of([&] {
              measure_costs(*model, b.library, too_big);
            }).find("the model has 2 slots of 24 tokens; the scenario needs 3 of 20"),
            std::string::npos);
}

TEST(PuzzleEvaluation, QualityIsZeroAgainstItselfAndPerplexityIsTheCrossEntropy) {
  Built b = build(parent_weights());
  auto parent = model_of(parent_manifest(), b.weights);
  auto same = model_of(parent_manifest(), b.weights);
  auto child = model_of(parent_manifest(), b.weights);
  child->swap_block(0, TS_KIND_FFN, find(b.library[0].ffn, "swiglu_32").block);
  std::vector<EvalBatch> batches;
  for (const train::TrainBatch& t : held_out()) {
    EvalBatch e;
    e.inputs = t;
    for (size_t i = 0; i < t.tokens.size(); ++i)
      e.targets.push_back(t.tokens[(i + 1) % t.tokens.size()]);
    batches.push_back(e);
  }
  const QualityFigures self = compare_quality(*parent, *same, batches);
  EXPECT_EQ(self.tokens, 49);
  EXPECT_DOUBLE_EQ(self.kl, 0.0);
  EXPECT_DOUBLE_EQ(self.agreement, 1.0);
  EXPECT_DOUBLE_EQ(self.parent_perplexity, self.child_perplexity);
  // The perplexity from the logits by hand, in double.
  double nll = 0;
  for (const EvalBatch& e : batches) {
    const train::RecordedOutputs r = train::record_outputs(*parent, e.inputs);
    for (size_t t = 0; t < e.targets.size(); ++t) {
      const float* row = r.logits.data() + t * 41;
      double m = row[0], z = 0;
      for (int v = 1; v < 41; ++v) m = std::max(m, static_cast<double>(row[v]));
      for (int v = 0; v < 41; ++v) z += std::exp(row[v] - m);
      nll += m + std::log(z) - row[e.targets[t]];
    }
  }
  EXPECT_NEAR(self.parent_perplexity, std::exp(nll / 49.0), 1e-4 * self.parent_perplexity);
  const QualityFigures q = compare_quality(*parent, *child, batches);
  EXPECT_GT(q.kl, 0.0);
  EXPECT_LT(q.agreement, 1.0);
  EXPECT_NE(q.child_perplexity, q.parent_perplexity);
  EXPECT_DOUBLE_EQ(q.parent_perplexity, self.parent_perplexity);

  Scenario s;
  s.prefill_len = 8;
  s.decode_len = 4;
  s.batch_sizes = {1, 3};
  s.repeats = 2;
  const std::vector<SpeedFigures> speed = compare_speed(*parent, *child, s);
  ASSERT_EQ(speed.size(), 2U);
  EXPECT_EQ(speed[1].batch, 3);
  for (const SpeedFigures& f : speed) {
    EXPECT_GT(f.parent_prefill.seconds, 0.0);
    EXPECT_GT(f.child_decode.seconds, 0.0);
    EXPECT_GT(f.decode_speedup(), 0.0);
  }
  s.batch_sizes = {5};
  EXPECT_NE(error_of([&] { compare_speed(*parent, *child, s); }).find("the scenario needs 5 of 12"),
            std::string::npos);
}

TEST(PuzzleConfig, ScoreAndCostSections) {
  const std::string text = R"([puzzle]
parent = "p.gguf"
output = "out"
[data]
path = "corpus"
[score]
tokens = 4096
[cost]
prefill_len = 64
decode_len = 32
batch_sizes = [1, 8]
repeats = 9
weight_dtype = "f16"
threads = 2
)";
  const PuzzleConfig c = parse_puzzle_config(text, "puzzle.toml", "/base");
  EXPECT_EQ(c.score.tokens, 4096);
  EXPECT_EQ(c.cost.scenario.prefill_len, 64);
  EXPECT_EQ(c.cost.scenario.decode_len, 32);
  EXPECT_EQ(c.cost.scenario.decode_context(), 80);
  EXPECT_EQ(c.cost.scenario.batch_sizes, (std::vector<int32_t>{1, 8}));
  EXPECT_EQ(c.cost.scenario.repeats, 9);
  EXPECT_EQ(c.cost.weight_dtype, TS_F16);
  EXPECT_EQ(c.cost.threads, 2);
  EXPECT_EQ(c.scores_path(), "/base/out/scores.json");
  EXPECT_EQ(c.costs_path(), "/base/out/costs.json");
  const PuzzleConfig d = parse_puzzle_config(
      "[puzzle]\nparent = \"p\"\noutput = \"o\"\n[data]\npath = \"c\"\n", "puzzle.toml", "/base");
  EXPECT_EQ(d.score.tokens, 2048);
  EXPECT_EQ(d.cost.weight_dtype, TS_BF16);
  EXPECT_EQ(d.cost.scenario.batch_sizes, (std::vector<int32_t>{1}));

  struct Case {
    std::string extra;
    int line, column;
    const char* expected;
  };
  const std::string head = "[puzzle]\nparent = \"p\"\noutput = \"o\"\n[data]\npath = \"c\"\n";
  for (const Case& k : std::vector<Case>{
           {"[score]\ntokens = 0\n", 7, 10, "'tokens' in [score] is 0; expected an integer >= 1"},
           {"[score]\ntoken = 5\n", 7, 1,
            "unknown key 'token' in [score] (did you mean 'tokens'?)"},
           {"[cost]\nprefill_len = 0\n", 7, 15, "'prefill_len' in [cost]"},
           {"[cost]\nbatch_sizes = [1, 0]\n", 7, 19, "expected batch sizes >= 1"},
           {"[cost]\nweight_dtype = \"q4\"\n", 7, 16, "'weight_dtype' in [cost]"},
           {"[cost]\nrepeats = 0\n", 7, 11, "'repeats' in [cost]"},
       }) {
    try {
      parse_puzzle_config(head + k.extra, "puzzle.toml", "/base");
      ADD_FAILURE() << k.extra << ": no error";
    } catch (const ManifestError& e) {
      EXPECT_EQ(e.line, k.line) << e.what();
      EXPECT_EQ(e.column, k.column) << e.what();
      EXPECT_NE(std::string(e.what()).find(k.expected), std::string::npos) << e.what();
    }
  }
}

TEST(PuzzleConfig, GlobalDistillAndEvaluateSections) {
  const std::string head = "[puzzle]\nparent = \"p\"\noutput = \"o\"\n[data]\npath = \"c\"\n";
  const PuzzleConfig c = parse_puzzle_config(head + R"([global_distill]
tokens = 20480
lr = 2e-4
warmup_steps = 3
kl = 0.5
cosine = 2
checkpoint_every = 5
eval_every = 10
eval_batches = 3
[evaluate]
tokens = 1024
repeats = 5
children = ["greedy", "diverse-1"]
mmlu = "data/mmlu.jsonl"
mmlu_per_subject = 0
skip_tokens = 4096
[evaluate.folders]
init-only = "../other/child"
"with gkd" = "/abs/child-gkd"
)",
                                             "puzzle.toml", "/base");
  const GlobalDistillSection& g = c.global_distill;
  EXPECT_EQ(g.tokens, 20480);
  EXPECT_DOUBLE_EQ(g.lr, 2e-4);
  EXPECT_EQ(g.warmup_steps, 3);
  EXPECT_DOUBLE_EQ(g.kl, 0.5);
  EXPECT_DOUBLE_EQ(g.cosine, 2.0);
  EXPECT_EQ(g.checkpoint_every, 5);
  EXPECT_EQ(g.eval_every, 10);
  EXPECT_EQ(g.eval_batches, 3);
  EXPECT_EQ(c.evaluate.tokens, 1024);
  EXPECT_EQ(c.evaluate.repeats, 5);
  EXPECT_EQ(c.evaluate.children, (std::vector<std::string>{"greedy", "diverse-1"}));
  EXPECT_EQ(c.evaluate.mmlu, "/base/data/mmlu.jsonl");
  EXPECT_EQ(c.evaluate.mmlu_per_subject, 0);
  EXPECT_EQ(c.evaluate.skip_tokens, 4096);
  ASSERT_EQ(c.evaluate.folders.size(), 2u);
  EXPECT_EQ(c.evaluate.folders[0].first, "init-only");
  EXPECT_EQ(c.evaluate.folders[0].second, "/other/child");
  EXPECT_EQ(c.evaluate.folders[1].first, "with gkd");
  EXPECT_EQ(c.evaluate.folders[1].second, "/abs/child-gkd");
  EXPECT_EQ(c.distilled_child_folder(), "/base/o/child-gkd");
  const PuzzleConfig d = parse_puzzle_config(head, "puzzle.toml", "/base");
  EXPECT_EQ(d.global_distill.tokens, 0);
  EXPECT_TRUE(d.evaluate.children.empty());
  EXPECT_TRUE(d.evaluate.mmlu.empty());
  EXPECT_EQ(d.evaluate.mmlu_per_subject, 10);

  struct Case {
    std::string extra;
    int line, column;
    const char* expected;
  };
  for (const Case& k : std::vector<Case>{
           {"[global_distill]\ntokens = -1\n", 7, 10,
            "'tokens' in [global_distill] is -1; expected an integer >= 0"},
           {"[global_distill]\nlr = 2\n", 7, 6, "'lr' in [global_distill] is 2"},
           {"[global_distill]\nkl = -1\n", 7, 6, "expected a weight >= 0"},
           {"[global_distill]\nkl = 0\ncosine = 0\n", 6, 1, "the loss would be 0"},
           {"[global_distill]\ntemperature = 2\n", 7, 1,
            "unknown key 'temperature' in [global_distill]"},
           {"[evaluate]\nchildren = \"greedy\"\n", 7, 12,
            "'children' in [evaluate] must be an array of solution labels"},
           {"[evaluate]\nchildren = [\"\"]\n", 7, 13, "expected non-empty solution labels"},
           {"[evaluate]\nmmlu_per_subject = -1\n", 7, 20, "'mmlu_per_subject' in [evaluate]"},
           {"[evaluate]\nmmlu = 3\n", 7, 8, "'mmlu' in [evaluate]"},
           {"[evaluate]\nskip_tokens = -2\n", 7, 15, "'skip_tokens' in [evaluate] is -2"},
           {"[evaluate.folders]\nx = 3\n", 7, 5, "'x' in [evaluate.folders] is an integer"},
           {"[evaluate]\nchildren = [\"greedy\"]\n[evaluate.folders]\ngreedy = \"g\"\n", 9, 1,
            "[evaluate.folders] names 'greedy', which [evaluate] children names too"},
       }) {
    try {
      parse_puzzle_config(head + k.extra, "puzzle.toml", "/base");
      ADD_FAILURE() << k.extra << ": no error";
    } catch (const ManifestError& e) {
      EXPECT_EQ(e.line, k.line) << e.what();
      EXPECT_EQ(e.column, k.column) << e.what();
      EXPECT_NE(std::string(e.what()).find(k.expected), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace tessera::puzzle
