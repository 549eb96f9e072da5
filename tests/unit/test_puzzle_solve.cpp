// Puzzle's search problem and the child: budgets derived from the measured parts, predictions
// that add up, solutions read back, the search through a real provider (the parent is the
// optimum when nothing is to be saved; an impossible speedup is infeasible), and a realised
// child that runs exactly as the parent with those blocks swapped in, under plain names.
#include <gtest/gtest.h>

#include <tessera/engine/search.hpp>
#include <tessera/formats/hf_writer.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/puzzle/realize.hpp>
#include <tessera/puzzle/selection.hpp>
#include <tessera/puzzle/solution_file.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>

#include "puzzle_fixtures.hpp"

namespace tessera::puzzle {
namespace {

using test::error_of;
using namespace test_fixtures;
namespace fs = std::filesystem;

// Costs without a clock: a block's time grows with its parameters, its memory is its f32
// weights and its KV heads.
Costs synthetic_costs(const std::vector<LayerVariants>& library) {
  Costs c;
  c.scenario.prefill_len = 8;
  c.scenario.decode_len = 8;
  c.scenario.batch_sizes = {1, 4};
  c.fixed_decode = c.fixed_prefill = {{1e-6, 0}, {2e-6, 0}};
  c.whole_decode = c.whole_prefill = {{1e-3, 0}, {2e-3, 0}};
  for (const LayerVariants& lv : library) {
    LayerCosts lc;
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
      for (const Variant& v : lv.of(part)) {
        VariantCost vc;
        const double t = 1e-7 * (1.0 + static_cast<double>(v.parameters) / 1000.0);
        vc.decode = {{t, 0}, {2 * t, 0}};
        vc.prefill = {{8 * t, 0}, {30 * t, 0}};
        vc.weight_bytes = 4 * v.parameters;
        vc.kv_bytes_per_token = 2 * v.kv_heads * 8 * 4;
        vc.measured_in = 0;
        lc.of(part).push_back(vc);
      }
    c.layers.push_back(std::move(lc));
  }
  return c;
}

// Scores without a model: the parent's blocks 0, the others by how much they drop.
ScoreState synthetic_scores(const std::vector<LayerVariants>& library) {
  ScoreState s = empty_scores(library);
  s.tokens = 100;
  s.batches = 1;
  for (size_t l = 0; l < library.size(); ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::vector<Variant>& list = library[l].of(part);
      const int64_t full = list.front().parameters + 1;
      for (size_t i = 0; i < list.size(); ++i)
        if (list[i].init != VariantInit::kParent)
          s.layers[l].of(part)[i].kl =
              100.0 *
              (0.01 + static_cast<double>(full - list[i].parameters) / static_cast<double>(full)) *
              (1.0 + 0.1 * static_cast<double>(l));
    }
  return s;
}

TEST(PuzzleSelection, BudgetsComeFromTheParentsMeasuredParts) {
  const std::vector<LayerVariants> lib = plan_variants(parent_manifest(), {});
  const Costs c = synthetic_costs(lib);
  const ScoreState s = synthetic_scores(lib);
  const Prediction parent = predict(parent_choice(lib), lib, s, c, 1);
  EXPECT_DOUBLE_EQ(parent.kl, 0.0);
  EXPECT_DOUBLE_EQ(parent.decode_speedup, 1.0);
  EXPECT_DOUBLE_EQ(parent.memory_fraction, 1.0);
  // The parent's decode step: the head plus its six blocks at batch 4.
  double step = 2e-6;
  int64_t memory = 0;
  for (size_t l = 0; l < 3; ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      step += c.layers[l].of(part)[0].decode[1].seconds;
      memory += c.layers[l].of(part)[0].weight_bytes +
                4 * 16 * c.layers[l].of(part)[0].kv_bytes_per_token;
    }
  EXPECT_NEAR(parent.decode_s, step, 1e-15);
  EXPECT_EQ(parent.memory_bytes, memory);

  Constraints k;
  k.batch = 1;
  k.decode_speedup = 2.0;
  k.memory_fraction = 0.5;
  const nlohmann::json doc = nlohmann::json::parse(selection_problem(lib, s, c, k, "test"));
  EXPECT_EQ(doc["problem"], "puzzle.block_selection");
  EXPECT_NEAR(doc["budgets"]["decode_s"].get<double>(), step / 2.0 - 2e-6, 1e-15);
  EXPECT_NEAR(doc["budgets"]["memory_bytes"].get<double>(), 0.5 * static_cast<double>(memory),
              1e-6);
  EXPECT_FALSE(doc["budgets"].contains("prefill_s"));
  EXPECT_FALSE(doc.contains("diversity"));
  const nlohmann::json& v = doc["layers"][0]["attention"][1];  // gqa_kv2
  EXPECT_EQ(v["name"], "gqa_kv2");
  EXPECT_DOUBLE_EQ(v["score"].get<double>(), s.layers[0].attention[1].kl / 100.0);
  EXPECT_DOUBLE_EQ(v["costs"]["decode_s"].get<double>(),
                   c.layers[0].attention[1].decode[1].seconds);
  EXPECT_DOUBLE_EQ(
      v["costs"]["memory_bytes"].get<double>(),
      static_cast<double>(c.layers[0].attention[1].weight_bytes + 4 * 16 * 2 * 2 * 8 * 4));

  k.earlier = {parent_choice(lib)};
  k.max_common = 3;
  const nlohmann::json div = nlohmann::json::parse(selection_problem(lib, s, c, k, "test"));
  EXPECT_EQ(div["diversity"]["max_common"], 3);
  EXPECT_EQ(div["diversity"]["solutions"][0][2]["attention"], "linear");

  k.batch = 2;
  EXPECT_NE(error_of([&] {
              selection_problem(lib, s, c, k, "");
            }).find("batch index 2 is outside the scenario's 2 batch sizes"),
            std::string::npos);
  EXPECT_EQ(common_choices(parent_choice(lib), parent_choice(lib)), 6);
  Choice other = parent_choice(lib);
  other[1] = {"noop", "linear"};
  EXPECT_EQ(common_choices(parent_choice(lib), other), 4);
}

TEST(PuzzleSelection, SolutionsAreReadAndCheckedAgainstTheLibrary) {
  const std::vector<LayerVariants> lib = plan_variants(parent_manifest(), {});
  const Selection none = parse_selection(
      R"({"problem": "puzzle.block_selection", "status": "infeasible", "reason": "decode_s: no"})",
      lib);
  EXPECT_FALSE(none.feasible);
  EXPECT_EQ(none.reason, "decode_s: no");
  const Selection ok = parse_selection(
      R"({"status": "optimal", "layers": [{"attention": "gqa_kv1", "ffn": "swiglu_32"},
          {"attention": "noop", "ffn": "linear"}, {"attention": "linear", "ffn": "noop"}]})",
      lib);
  ASSERT_TRUE(ok.feasible);
  EXPECT_EQ(ok.choice[1], (std::pair<std::string, std::string>{"noop", "linear"}));
  EXPECT_NE(error_of([&] {
              parse_selection(R"({"status": "optimal", "layers": [{"attention": "gqa_kv1",
                  "ffn": "swiglu_32"}, {"attention": "noop", "ffn": "swiglu_96"},
                  {"attention": "linear", "ffn": "noop"}]})",
                              lib);
            }).find("layer 1 has no FFN variant 'swiglu_96'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              parse_selection(R"({"status": "optimal", "layers": []})", lib);
            }).find("one choice per layer of the 3-layer library"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_selection("[", lib); }).find("not valid JSON"), std::string::npos);

  Solutions sol;
  SolveRecord r;
  r.label = "main";
  r.provider = "exact";
  r.decode_speedup = 1.5;
  r.feasible = true;
  r.choice = ok.choice;
  r.predicted.kl = 0.25;
  r.predicted.memory_bytes = 1234;
  sol.records.push_back(r);
  SolveRecord bad;
  bad.label = "frontier-9";
  bad.reason = "decode_s: the least reachable total is 1, over the budget of 0.5";
  sol.records.push_back(bad);
  const Solutions back = parse_solutions_json(solutions_json(sol), "solutions.json", lib);
  ASSERT_EQ(back.records.size(), 2U);
  EXPECT_EQ(back.main, "main");
  EXPECT_EQ(back.records[0].choice, ok.choice);
  EXPECT_DOUBLE_EQ(back.records[0].predicted.kl, 0.25);
  EXPECT_EQ(back.records[0].predicted.memory_bytes, 1234);
  EXPECT_FALSE(back.records[1].feasible);
  EXPECT_EQ(back.records[1].reason, bad.reason);
  EXPECT_EQ(back.find("frontier-9")->label, "frontier-9");
  EXPECT_EQ(back.find("x"), nullptr);
  std::string text = solutions_json(sol);
  text.replace(text.find("\"swiglu_32\""), 11, "\"swiglu_31\"");
  EXPECT_NE(error_of([&] { parse_solutions_json(text, "solutions.json", lib); })
                .find("solutions.json: solutions[0].layers[0].ffn names 'swiglu_31', which layer 0 "
                      "of the library does not have"),
            std::string::npos);
}

TEST(PuzzleSelection, ARealProviderFindsTheParentWhenNothingIsToBeSavedAndRefusesTheImpossible) {
  const std::vector<LayerVariants> lib = plan_variants(parent_manifest(), {});
  const Costs c = synthetic_costs(lib);
  const ScoreState s = synthetic_scores(lib);
  const std::unique_ptr<Search> search = make_search(plugins(), "exact", "", {}, nullptr);
  Constraints k;
  k.decode_speedup = 1.0;
  const Selection same = parse_selection(search->solve(selection_problem(lib, s, c, k, "")), lib);
  ASSERT_TRUE(same.feasible);
  EXPECT_EQ(same.choice, parent_choice(lib));
  k.decode_speedup = 1.6;
  const Selection faster = parse_selection(search->solve(selection_problem(lib, s, c, k, "")), lib);
  ASSERT_TRUE(faster.feasible);
  const Prediction p = predict(faster.choice, lib, s, c, 0);
  EXPECT_GE(p.decode_speedup, 1.6 * (1 - 1e-9));
  EXPECT_GT(p.kl, 0.0);
  EXPECT_EQ(unreachable_target(lib, s, c, k), "");
  // Beyond what the head alone allows: refused before any search.
  k.decode_speedup = 1e6;
  const std::string why = unreachable_target(lib, s, c, k);
  EXPECT_NE(why.find("decode_speedup 1e+06 needs a decode of"), std::string::npos) << why;
  EXPECT_NE(why.find("no choice of blocks reaches it"), std::string::npos) << why;
  k.decode_speedup = 2.0;
  k.prefill_speedup = 1e6;
  EXPECT_NE(unreachable_target(lib, s, c, k).find("prefill_speedup"), std::string::npos);
  k.prefill_speedup = 0;
  // Reachable in principle but not with these blocks (no-ops are not free here): the provider
  // says which budget.
  k.decode_speedup = 5.0;
  const Selection impossible =
      parse_selection(search->solve(selection_problem(lib, s, c, k, "")), lib);
  EXPECT_FALSE(impossible.feasible);
  EXPECT_NE(impossible.reason.find("decode_s"), std::string::npos) << impossible.reason;
}

TEST(PuzzleRealize, TheChildRunsAsTheParentWithItsBlocksSwappedUnderPlainNames) {
  Built b = build(parent_weights());
  const Choice choice = {{"gqa_kv1", "swiglu_32"}, {"noop", "linear"}, {"linear", "noop"}};
  const Manifest spec = child_manifest(parent_manifest(), b.library, choice);
  const WeightPlan plan = plan_weights(spec, plugins());
  const RealizedChild child = realize_child(plan, b.weights);
  for (const LayerSpec& l : child.manifest.layers) {
    EXPECT_TRUE(l.attention.prefix.empty());
    EXPECT_TRUE(l.ffn.prefix.empty());
  }
  EXPECT_EQ(child.weights.all().size(), plan.tensors.size());
  for (const auto& [name, tensor] : child.weights.all())
    EXPECT_EQ(name.find("variants"), std::string::npos) << name;
  EXPECT_TRUE(child.weights.has("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_EQ(child.weights.get("model.layers.0.mlp.gate_proj.weight").shape(),
            (std::vector<int64_t>{32, 32}));
  EXPECT_TRUE(child.weights.has("model.layers.1.mlp.linear_mlp.weight"));
  EXPECT_FALSE(child.weights.has("model.layers.1.self_attn.q_proj.weight"));  // a no-op

  auto realised = model_of(child.manifest, child.weights);
  auto swapped = model_of(parent_manifest(), b.weights);
  for (int32_t l = 0; l < 3; ++l) {
    swapped->swap_block(l, TS_KIND_ATTENTION, spec.layers[static_cast<size_t>(l)].attention);
    swapped->swap_block(l, TS_KIND_FFN, spec.layers[static_cast<size_t>(l)].ffn);
  }
  EXPECT_EQ(logits_of(*realised, kPrompt), logits_of(*swapped, kPrompt));

  WeightStore missing;
  EXPECT_NE(error_of([&] { realize_child(plan, missing); }).find("the library has no tensor"),
            std::string::npos);
}

// DeciLM writes FFN widths as ffn_mult, which rounds to multiples of 256: a parent of width 512
// and a library of 512 and 256 gives a child that the DeciLM export expresses. Read back, that
// folder is the realised child.
TEST(PuzzleRealize, TheDeciLmExportReadsBackAsTheChild) {
  const Manifest parent = parse_manifest(R"([model]
name = "decilm-parent"
hidden_size = 32
num_layers = 3
num_heads = 4
head_dim = 8
num_kv_heads = 4
intermediate_size = 512
vocab_size = 41
rms_norm_eps = 1e-5
max_seq_len = 32

[weights]
format = "random"
seed = 23

[runtime]
weight_dtype = "f32"

[[layers]]
range = "0-2"
attention = { kind = "gqa" }
ffn = { kind = "swiglu" }
)",
                                         "decilm-parent.toml", ".");
  LibraryOptions options;
  options.ffn_fractions = {1.0, 0.5};
  options.ffn_width_multiple = 256;
  const WeightStore weights = Model(parent, plugins(), WeightStore{}, test_pool()).weights();
  Built b = build(weights, options, parent);
  const Choice choice = {{"gqa_kv2", "swiglu_256"}, {"linear", "linear"}, {"noop", "swiglu_512"}};
  const Manifest spec = child_manifest(parent, b.library, choice);
  const WeightPlan plan = plan_weights(spec, plugins());
  const RealizedChild child = realize_child(plan, b.weights);

  const fs::path folder =
      fs::temp_directory_path() / ("tessera-realize-decilm-" + std::to_string(::getpid()));
  fs::remove_all(folder);
  HfWriteOptions hf;
  hf.always_decilm = true;
  const HfWriteResult written = write_hf_model(folder, plan, b.weights, hf);
  EXPECT_EQ(written.architecture, "DeciLMForCausalLM");
  const LoadedModel read = open_model(folder);
  fs::remove_all(folder);
  ASSERT_EQ(read.manifest.layers.size(), 3u);
  auto from_hf = model_of(read.manifest, read.weights);
  auto realised = model_of(child.manifest, child.weights);
  const std::vector<float> want = logits_of(*realised, kPrompt);
  const std::vector<float> got = logits_of(*from_hf, kPrompt);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5f) << i;
}

}  // namespace
}  // namespace tessera::puzzle
