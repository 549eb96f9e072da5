// The Puzzle report: the page built from small synthetic artefacts and parsed back as XML by
// Python's xml.etree (every solution and measured child a point with its data, every layer's
// two blocks, the tables), the sections of stages not yet run, odd labels escaped, the
// evaluation file's two versions, and the artefacts read from an output folder.
#include <gtest/gtest.h>

#include <tessera/puzzle/architecture_plot.hpp>
#include <tessera/puzzle/distill_file.hpp>
#include <tessera/puzzle/evaluation_file.hpp>
#include <tessera/puzzle/report.hpp>
#include <tessera/train/plot_axis.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "hf_fixtures.hpp"
#include "puzzle_fixtures.hpp"
#include "train_data_fixtures.hpp"

namespace tessera::puzzle {
namespace {

using test::error_of;
using namespace test_fixtures;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Parses the page with xml.etree (so it must be well-formed XML) and prints what a reader
// finds in it, one line each: the points of the frontier, the architecture's blocks, the
// sections of stages not run or not readable, and the tables.
const char* const kPageCheck = R"(import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
def local(tag): return tag.split('}')[-1]
for e in root.iter():
    c = e.get('class')
    if c in ('solution', 'measured', 'parent'):
        print('point', c, e.get('data-group'), e.get('data-label'), e.get('data-speedup'),
              e.get('data-kl'), e.get('data-provider') or '-')
for e in root.iter():
    if e.get('class') == 'block':
        print('block', e.get('data-layer'), e.get('data-part'), e.get('data-variant'),
              e.get('data-kind'), e.get('data-fraction'))
for e in root.iter():
    if local(e.tag) == 'section' and e.get('class') in ('missing', 'unreadable'):
        print(e.get('class'), e.get('id'), e.get('data-stage'))
for e in root.iter():
    if local(e.tag) == 'table':
        print('table', e.get('class'), len([r for r in e.iter() if local(r.tag) == 'tr']) - 1)
)";

std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end == std::string::npos ? end : end - at);
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

// Scores without a model: the parent's blocks 0; the others by how much smaller they are.
ScoreFile synthetic_scores(const std::vector<LayerVariants>& library) {
  ScoreFile f;
  f.plan = {16, 2, 1};
  f.complete = true;
  f.state = empty_scores(library);
  f.state.tokens = 32;
  f.state.batches = 1;
  f.state.seconds = 1.5;
  for (size_t l = 0; l < library.size(); ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::vector<Variant>& list = library[l].of(part);
      for (size_t i = 0; i < list.size(); ++i) {
        if (list[i].init == VariantInit::kParent) continue;
        f.state.layers[l].of(part)[i].kl = 32.0 * (0.1 + 0.2 * static_cast<double>(i + l));
        f.state.layers[l].of(part)[i].agreed = 20 - static_cast<int64_t>(i);
      }
      // The parent's blocks agree everywhere.
      for (size_t i = 0; i < list.size(); ++i)
        if (list[i].init == VariantInit::kParent) f.state.layers[l].of(part)[i].agreed = 32;
    }
  return f;
}

Costs synthetic_costs(const std::vector<LayerVariants>& library) {
  Costs c;
  c.scenario.prefill_len = 8;
  c.scenario.decode_len = 8;
  c.scenario.batch_sizes = {1, 4};
  c.threads = 2;
  c.weight_dtype = "bf16";
  c.measurements = 9;
  c.seconds = 3.0;
  c.fixed_decode = c.fixed_prefill = {{1e-5, 0}, {2e-5, 0}};
  c.whole_decode = c.whole_prefill = {{1e-3, 0}, {2e-3, 0}};
  for (const LayerVariants& lv : library) {
    LayerCosts lc;
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
      for (const Variant& v : lv.of(part)) {
        VariantCost vc;
        const double t = 1e-7 * (1.0 + static_cast<double>(v.parameters) / 1000.0);
        vc.decode = {{t, 0}, {2 * t, 0}};
        vc.prefill = {{8 * t, 0}, {30 * t, 0}};
        vc.weight_bytes = 2 * v.parameters;
        vc.kv_bytes_per_token = 2 * v.kv_heads * 8 * 2;
        vc.measured_in = 0;
        lc.of(part).push_back(vc);
      }
    c.layers.push_back(std::move(lc));
  }
  return c;
}

SolveRecord record(const std::string& label, const std::string& provider, const Choice& choice,
                   double speedup, double kl) {
  SolveRecord r;
  r.label = label;
  r.provider = provider;
  r.decode_speedup = speedup;
  r.feasible = true;
  r.choice = choice;
  r.predicted.kl = kl;
  r.predicted.decode_speedup = speedup;
  r.predicted.prefill_speedup = speedup * 0.9;
  r.predicted.memory_bytes = 1000;
  r.predicted.memory_fraction = 1.0 / speedup;
  r.seconds = 0.01;
  return r;
}

// The fixture's library, the same choice in every layer but the main one's: layer 0 with
// fewer KV heads and a narrower FFN, layer 1 linear attention and a no-op FFN, layer 2 the
// parent's blocks.
struct Synthetic {
  std::vector<LayerVariants> library = plan_variants(parent_manifest(), {});
  Choice main_choice() const {
    Choice c = parent_choice(library);
    c[0] = {"gqa_kv2", library[0].ffn[1].name};
    c[1] = {"linear", "noop"};
    return c;
  }
  ReportInputs inputs() const {
    ReportInputs in;
    in.config = "runs/p.toml";
    in.output = "runs/p";
    LibraryIndex index;
    index.parent_name = "puzzle-parent";
    index.parent_path = "parent.toml";
    index.hidden_size = 32;
    index.layers = library;
    in.library.value = index;
    in.scores.value = synthetic_scores(library);
    in.costs.value = synthetic_costs(library);
    Solutions s;
    s.records.push_back(record("main", "mip", main_choice(), 1.5, 0.7));
    s.records.push_back(record("greedy", "greedy", main_choice(), 1.5, 0.7));  // the same point
    SolveRecord exact = record("exact", "exact", {}, 1.5, 0);
    exact.feasible = false;
    exact.reason = "decode_s needs 0.1 ms; the least reachable is 0.2 ms";
    s.records.push_back(exact);
    s.records.push_back(record("frontier-1.25", "mip", parent_choice(library), 1.25, 0.3));
    s.records.push_back(record("frontier-2", "mip", main_choice(), 2.0, 1.3));
    s.records.push_back(record("diverse-1", "mip", main_choice(), 1.52, 0.75));
    in.solutions.value = s;
    Evaluation e;
    e.tokens = 64;
    e.parent_perplexity = 16.8;
    e.parent_mmlu = MmluFigures{40, 0.3};
    EvaluatedChild c;
    c.label = "main";
    c.solution = "main";
    c.provider = "mip";
    c.kl = 0.66;
    c.agreement = 0.59;
    c.perplexity = 28.9;
    c.speed = {{1, 0.16, 0.11, 1.28, 0.78, 1.43, 1.64}, {4, 1.2, 0.8, 4.7, 3.5, 1.45, 1.33}};
    e.children.push_back(c);
    c.label = "main+gkd";
    c.kl = 0.31;
    c.mmlu = MmluFigures{40, 0.275};
    c.speed = {{1, 0.16, 0.11, 1.28, 0.8, 1.43, 1.6}};
    e.children.push_back(c);
    in.evaluation.value = e;
    return in;
  }
};

class PuzzleReport : public test::TempFolderTest {
 protected:
  std::string check(const std::string& page) const {
    write_file(dir_ / "report.html", page);
    return test::run_python(dir_, kPageCheck, {(dir_ / "report.html").string()});
  }
};

TEST_F(PuzzleReport, DrawsEverySolutionAndMeasuredChildAndEveryLayersBlocks) {
  const Synthetic synthetic;
  const std::string page = puzzle_report_html(synthetic.inputs());
  // Without Python: the elements are there by class.
  EXPECT_EQ(count(page, "class=\"solution\""), 5U);  // the feasible ones; exact found none
  EXPECT_EQ(count(page, "class=\"measured\""), 2U);
  EXPECT_EQ(count(page, "class=\"block\""), 6U);
  EXPECT_EQ(count(page, "class=\"missing\""), 0U);
  EXPECT_NE(page.find("<polyline class=\"frontier-line\""), std::string::npos);
  EXPECT_EQ(count(page, "<line class=\"prediction-link\""), 2U);
  EXPECT_NE(page.find(">main = greedy</text>"), std::string::npos);  // coincident: one label
  EXPECT_EQ(page.find("<script"), std::string::npos);

  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  const std::string found = check(page);
  const std::vector<std::string> points = lines_starting(found, "point ");
  EXPECT_EQ(points, (std::vector<std::string>{
                        "point parent parent parent 1 0 -",
                        "point solution compared greedy 1.5 0.7 greedy",
                        "point solution diverse diverse-1 1.52 0.75 mip",
                        "point solution frontier frontier-1.25 1.25 0.3 mip",
                        "point solution frontier frontier-2 2 1.3 mip",
                        "point solution main main 1.5 0.7 mip",
                        // Measured at the batch its budgets were set at (1).
                        "point measured measured main 1.64 0.66 mip",
                        "point measured measured main+gkd 1.6 0.31 mip",
                    }))
      << found;
  const std::string swiglu = synthetic.library[0].ffn[1].name;
  const std::string width = swiglu.substr(7);
  EXPECT_EQ(lines_starting(found, "block "),
            (std::vector<std::string>{
                "block 0 attention gqa_kv2 pruned " +
                    tick_text(static_cast<double>(synthetic.library[0].attention[1].parameters) /
                              static_cast<double>(synthetic.library[0].attention[0].parameters)),
                "block 0 ffn " + swiglu + " pruned " + tick_text(std::stod(width) / 96.0),
                "block 1 attention linear linear " +
                    tick_text(32.0 * 32.0 /
                              static_cast<double>(synthetic.library[1].attention[0].parameters)),
                "block 1 ffn noop noop 0",
                "block 2 attention linear parent 1",
                "block 2 ffn noop parent 1",
            }))
      << found;
  EXPECT_EQ(lines_starting(found, "missing"), std::vector<std::string>{});
  EXPECT_EQ(lines_starting(found, "unreadable"), std::vector<std::string>{});
  // The tables: stages, solutions (all six searches), quality (the parent and two children),
  // speed (three batch rows), predicted, the layers in runs (layer 1's choice is the parent's
  // layer 2: linear and no-op), scores, costs, library.
  for (const char* table : {"table stages 5", "table solutions 6", "table quality 3",
                            "table speed 3", "table predicted 2", "table layers 2"})
    EXPECT_NE(found.find(table), std::string::npos) << table << "\n" << found;
  EXPECT_NE(found.find("table scores "), std::string::npos);
  EXPECT_NE(found.find("table costs "), std::string::npos);
  EXPECT_NE(found.find("table library "), std::string::npos);
  // The infeasible search says why; the MMLU column is there.
  EXPECT_NE(page.find("no: decode_s needs 0.1 ms"), std::string::npos);
  EXPECT_NE(page.find("27.5 % of 40"), std::string::npos);
}

TEST_F(PuzzleReport, StagesNotRunSayWhatToRun) {
  ReportInputs in;
  in.config = "my run.toml";
  in.output = "out";
  in.distills = true;
  const std::string page = puzzle_report_html(in);
  for (const char* stage : {"library", "score", "cost", "solve", "evaluate"})
    EXPECT_NE(page.find("Run <code>tessera puzzle " + std::string(stage) + " my run.toml</code>"),
              std::string::npos)
        << stage;
  EXPECT_EQ(count(page, "class=\"solution\""), 0U);
  EXPECT_EQ(count(page, "class=\"block\""), 0U);
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  const std::string found = check(page);
  EXPECT_EQ(lines_starting(found, "missing"),
            (std::vector<std::string>{"missing frontier solve", "missing architecture solve",
                                      "missing solutions solve", "missing evaluation evaluate",
                                      "missing scores score", "missing costs cost",
                                      "missing library library"}))
      << found;
  // The stages table lists every stage, distill included (the config distils).
  EXPECT_NE(found.find("table stages 6"), std::string::npos) << found;

  // Solved but not evaluated: the plot is there, and says how to add the measured points.
  const Synthetic synthetic;
  ReportInputs solved = synthetic.inputs();
  solved.evaluation = {};
  const std::string page2 = puzzle_report_html(solved);
  EXPECT_EQ(count(page2, "class=\"solution\""), 5U);
  EXPECT_EQ(count(page2, "class=\"measured\""), 0U);
  EXPECT_NE(page2.find("<code>tessera puzzle evaluate runs/p.toml</code> adds the measured"),
            std::string::npos);
  EXPECT_EQ(lines_starting(check(page2), "missing"),
            std::vector<std::string>{"missing evaluation evaluate"});
}

TEST_F(PuzzleReport, OddLabelsAreEscaped) {
  const Synthetic synthetic;
  ReportInputs in = synthetic.inputs();
  const std::string odd = "diverse-<2>&\"x\" 'y'";
  in.solutions.value->records.push_back(record(odd, "a&b", synthetic.main_choice(), 1.7, 0.9));
  in.evaluation.value->children[1].label = "gkd <b>bold</b>";
  const std::string page = puzzle_report_html(in);
  EXPECT_EQ(page.find("<b>bold"), std::string::npos);
  EXPECT_EQ(page.find("-<2>"), std::string::npos);
  EXPECT_NE(page.find("data-label=\"diverse-&lt;2&gt;&amp;&quot;x&quot; &#39;y&#39;\""),
            std::string::npos);
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  const std::string found = check(page);
  EXPECT_NE(found.find("point solution diverse " + odd + " 1.7 0.9 a&b"), std::string::npos)
      << found;
  EXPECT_NE(found.find("point measured measured gkd <b>bold</b> 1.6 0.31"), std::string::npos)
      << found;
}

TEST_F(PuzzleReport, ShowsBlockwiseDistillationBeforeAndAfter) {
  const Synthetic synthetic;
  ReportInputs in = synthetic.inputs();
  in.distills = true;
  in.distill.value = parse_distill_json(R"({"steps": 10, "tokens": 2560, "seconds": 4.5,
    "layers": [{"attention": [{"name": "gqa_kv2", "before": 0.2, "after": 0.1}],
                "ffn": [{"name": "swiglu_64", "before": null, "after": 0.3}]},
               {"attention": [{"name": "gqa_kv2", "before": 0.4, "after": 0.2}], "ffn": []}]})",
                                        "distill.json");
  ASSERT_TRUE(std::isnan(in.distill.value->layers[0].ffn[0].before));
  const std::string page = puzzle_report_html(in);
  EXPECT_NE(page.find("<h3 id=\"distill\">Blockwise distillation</h3>"), std::string::npos);
  // gqa_kv2: the mean over its two layers, 0.3 -> 0.15; swiglu_64 was not measured before.
  EXPECT_NE(page.find("<td class=\"num\">0.3000</td><td class=\"num\">0.1500</td>"
                      "<td class=\"num\">-50.0 %</td>"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("<td class=\"num\">n/a</td><td class=\"num\">0.3000</td>"),
            std::string::npos);
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  EXPECT_NE(check(page).find("table distill 2"), std::string::npos);
}

TEST(PuzzleReportArchitecture, BlocksAreTheChosenVariantsSizedByTheirShareOfTheParents) {
  const Synthetic synthetic;
  const std::vector<ArchitectureLayer> layers =
      architecture_of(synthetic.library, synthetic.main_choice());
  ASSERT_EQ(layers.size(), 3U);
  EXPECT_EQ(layers[0].attention.kind, BlockKind::kPruned);
  EXPECT_EQ(layers[0].attention.caption, "kv2");
  EXPECT_LT(layers[0].attention.fraction, 1.0);
  EXPECT_EQ(layers[0].ffn.kind, BlockKind::kPruned);
  EXPECT_EQ(layers[1].attention.kind, BlockKind::kLinear);
  EXPECT_EQ(layers[1].ffn.kind, BlockKind::kNoop);
  EXPECT_EQ(layers[1].ffn.fraction, 0.0);
  EXPECT_EQ(layers[2].attention.kind, BlockKind::kParent);  // the parent's own linear block
  EXPECT_EQ(layers[2].attention.fraction, 1.0);
  Choice bad = synthetic.main_choice();
  bad[2].second = "swiglu_7";
  EXPECT_EQ(error_of([&] { architecture_of(synthetic.library, bad); }),
            "layer 2 has no FFN variant 'swiglu_7'");
}

TEST(PuzzleEvaluationFile, ReadsVersionOneAsOneChildAndVersionTwoAsMany) {
  const Evaluation v1 = parse_evaluation_json(R"({"format": "tessera.puzzle.evaluation",
    "version": 1, "solution": "main",
    "quality": {"tokens": 2048, "kl": 0.66, "agreement": 0.59, "parent_perplexity": 16.8,
                "child_perplexity": 28.9},
    "speed": [{"batch": 1, "parent_prefill_s": 0.16, "child_prefill_s": 0.11,
               "parent_decode_s": 1.27, "child_decode_s": 0.78, "prefill_speedup": 1.43,
               "decode_speedup": 1.64}]})",
                                              "v1.json");
  EXPECT_EQ(v1.version, 1);
  EXPECT_EQ(v1.tokens, 2048);
  EXPECT_DOUBLE_EQ(v1.parent_perplexity, 16.8);
  ASSERT_EQ(v1.children.size(), 1U);
  EXPECT_EQ(v1.children[0].label, "main");
  EXPECT_DOUBLE_EQ(v1.children[0].perplexity, 28.9);
  ASSERT_NE(v1.children[0].speed_at(1), nullptr);
  EXPECT_DOUBLE_EQ(v1.children[0].speed_at(1)->decode_speedup, 1.64);
  EXPECT_EQ(v1.children[0].speed_at(8), nullptr);
  EXPECT_FALSE(v1.children[0].predicted);

  const Evaluation v2 = parse_evaluation_json(R"({"format": "tessera.puzzle.evaluation",
    "version": 2, "tokens": 512, "parent": {"perplexity": 16.8,
    "mmlu": {"questions": 57, "accuracy": 0.3}},
    "children": [{"label": "main", "folder": "child", "solution": "main", "provider": "mip",
                  "quality": {"kl": 0.6, "agreement": 0.6, "perplexity": 25},
                  "speed": [], "predicted": {"batch": 1, "kl": 0.7, "decode_speedup": 1.5,
                                             "prefill_speedup": 1.4}},
                 {"label": "main+gkd", "quality": {"kl": 0.3, "agreement": 0.7,
                  "perplexity": 20}, "mmlu": {"questions": 57, "accuracy": 0.28},
                  "speed": []}]})",
                                              "v2.json");
  EXPECT_EQ(v2.version, 2);
  ASSERT_TRUE(v2.parent_mmlu);
  EXPECT_EQ(v2.parent_mmlu->questions, 57);
  ASSERT_EQ(v2.children.size(), 2U);
  ASSERT_TRUE(v2.children[0].predicted);
  EXPECT_DOUBLE_EQ(v2.children[0].predicted->kl, 0.7);
  EXPECT_EQ(v2.children[1].folder, "");
  ASSERT_TRUE(v2.children[1].mmlu);
  EXPECT_DOUBLE_EQ(v2.children[1].mmlu->accuracy, 0.28);

  EXPECT_EQ(error_of([] {
              parse_evaluation_json(R"({"format": "tessera.puzzle.evaluation", "version": 3})",
                                    "v3.json");
            }),
            "v3.json: version is 3; this build reads versions 1 and 2 (evaluate again with "
            "--force)");
  EXPECT_EQ(error_of([] {
              parse_evaluation_json(R"({"format": "tessera.puzzle.evaluation", "version": 2,
                "tokens": 1, "parent": {"perplexity": 1}, "children": [{"label": "x"}]})",
                                    "v2.json");
            }),
            "v2.json: children[0] is missing 'quality'");
}

TEST_F(PuzzleReport, ReadsTheOutputFolderAndNotesWhatItCannotRead) {
  const Synthetic synthetic;
  const ReportInputs made = synthetic.inputs();
  PuzzleConfig config;
  config.source = dir_ / "p.toml";
  config.output = dir_ / "out";
  std::filesystem::create_directories(config.library_folder());
  write_file(config.library_folder() / "library.json", library_json(*made.library.value));
  write_file(config.scores_path(), scores_json(*made.scores.value, synthetic.library));
  write_file(config.solutions_path(), solutions_json(*made.solutions.value));
  write_file(config.costs_path(), "{\"format\": \"tessera.puzzle.costs\"");  // cut short
  write_file(config.evaluation_path(), R"({"format": "tessera.puzzle.evaluation",
    "version": 1, "solution": "main",
    "quality": {"tokens": 64, "kl": 0.66, "agreement": 0.59, "parent_perplexity": 16.8,
                "child_perplexity": 28.9},
    "speed": [{"batch": 1, "parent_prefill_s": 0.16, "child_prefill_s": 0.11,
               "parent_decode_s": 1.27, "child_decode_s": 0.78, "prefill_speedup": 1.43,
               "decode_speedup": 1.64}]})");
  const ReportInputs in = read_report_inputs(config);
  ASSERT_TRUE(in.library.value) << in.library.error;
  EXPECT_EQ(in.library.value->layers.size(), 3U);
  ASSERT_TRUE(in.scores.value) << in.scores.error;
  ASSERT_TRUE(in.solutions.value) << in.solutions.error;
  EXPECT_EQ(in.solutions.value->records.size(), 6U);
  ASSERT_TRUE(in.evaluation.value) << in.evaluation.error;
  EXPECT_FALSE(in.costs.value);
  EXPECT_NE(in.costs.error.find("costs.json: the document is not valid JSON"), std::string::npos)
      << in.costs.error;
  EXPECT_FALSE(in.distill.value);
  EXPECT_TRUE(in.distill.error.empty());
  EXPECT_EQ(report_path(config), config.output / "report.html");

  const std::string page = puzzle_report_html(in);
  EXPECT_EQ(count(page, "class=\"measured\""), 1U);
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  const std::string found = check(page);
  EXPECT_EQ(lines_starting(found, "unreadable"), std::vector<std::string>{"unreadable costs cost"});
  EXPECT_EQ(lines_starting(found, "missing"), std::vector<std::string>{});

  // Without the library, the files read against it are noted, not read.
  std::filesystem::remove_all(config.library_folder());
  const ReportInputs bare = read_report_inputs(config);
  EXPECT_FALSE(bare.library.value);
  EXPECT_NE(bare.scores.error.find("run `tessera puzzle library " + config.source.string()),
            std::string::npos)
      << bare.scores.error;
  ASSERT_TRUE(bare.evaluation.value);
  const std::string bare_found = check(puzzle_report_html(bare));
  EXPECT_NE(bare_found.find("missing library library"), std::string::npos) << bare_found;
  EXPECT_NE(bare_found.find("unreadable scores score"), std::string::npos) << bare_found;
}

}  // namespace
}  // namespace tessera::puzzle
