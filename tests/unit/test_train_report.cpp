// The end-of-run report: the SVG loss plot (parsed back as XML by Python's xml.etree: points
// counted, non-finite losses marked, one-point and empty curves, log scale), the HTML page,
// and run_training driving fake trainer callables (batches, cadence, resume, log, report).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tessera/train/loss_plot.hpp>
#include <tessera/train/progress.hpp>
#include <tessera/train/train_run.hpp>
#include <vector>

#include "hf_fixtures.hpp"
#include "train_data_fixtures.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Parses an SVG (or the XHTML-compatible report) with xml.etree and prints, per curve,
// "name finite nonfinite line-points lone markers titles" plus the root's tag.
const char* const kSvgCheck = R"(import sys, xml.etree.ElementTree as ET
NS = '{http://www.w3.org/2000/svg}'
root = ET.parse(sys.argv[1]).getroot()
print(root.tag.replace(NS, ''))
for svg in ([root] if root.tag == NS + 'svg' else list(root.iter(NS + 'svg'))):
    for g in svg.iter(NS + 'g'):
        if g.get('class') != 'curve':
            continue
        points = sum(len(p.get('points').split()) for p in g.iter(NS + 'polyline'))
        lone = sum(1 for c in g.iter(NS + 'circle') if c.get('class') == 'lone')
        markers = sum(1 for c in g.iter(NS + 'circle') if c.get('class') == 'marker')
        bad = [p.find(NS + 'title').text for p in g.iter(NS + 'path') if p.get('class') == 'nonfinite']
        for p in g.iter(NS + 'polyline'):
            for xy in p.get('points').split():
                x, y = map(float, xy.split(','))
                assert 0 <= x <= float(svg.get('width')) and 0 <= y <= float(svg.get('height')), xy
        print(g.get('data-name'), g.get('data-points'), g.get('data-nonfinite'), points, lone,
              markers, '|'.join(bad))
)";

class TrainReport : public test::TempFolderTest {
 protected:
  // The check's output for an SVG or HTML text.
  std::string check(const std::string& text, const std::string& file = "plot.svg") const {
    write_file(dir_ / file, text);
    return test::run_python(dir_, kSvgCheck, {(dir_ / file).string()});
  }
};

TEST_F(TrainReport, PlotsEveryPointOfEachCurve) {
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  LossCurve train{"train", "", {}, false};
  for (int step = 1; step <= 200; ++step) train.points.emplace_back(step, 5.0 / std::sqrt(step));
  LossCurve held{"held-out", "", {{50, 1.0}, {100, 0.8}, {150, 0.7}, {200, 0.65}}, true};
  const std::string svg = loss_plot_svg({train, held});
  EXPECT_EQ(check(svg), "svg\ntrain 200 0 200 0 0 \nheld-out 4 0 4 0 4 \n");
  EXPECT_EQ(count(svg, "class=\"curve\""), 2U);
  EXPECT_NE(svg.find(">train</text>"), std::string::npos);
  EXPECT_NE(svg.find(">held-out</text>"), std::string::npos);
  EXPECT_EQ(svg.find("not finite"), std::string::npos);  // no such point, no legend entry
}

TEST_F(TrainReport, MarksNonFiniteLossesAndBreaksTheLineThere) {
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  LossCurve train{
      "train",
      "",
      {{1, 4.0}, {2, 3.5}, {3, kNaN}, {4, 3.0}, {5, kInf}, {6, 2.5}, {7, 2.4}, {8, -kInf}},
      false};
  const std::string svg = loss_plot_svg({train});
  // Finite: 1, 2 (a line), 4 (alone between two bad points), 6, 7 (a line).
  EXPECT_EQ(check(svg),
            "svg\ntrain 5 3 4 1 0 step 3: loss nan|step 5: loss inf|step 8: loss -inf\n");
  EXPECT_EQ(count(svg, "<polyline"), 2U);
  EXPECT_NE(svg.find(">not finite</text>"), std::string::npos);
}

TEST_F(TrainReport, OnePointAndNoPoints) {
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  EXPECT_EQ(check(loss_plot_svg({{"train", "", {{1, 2.5}}, false}})), "svg\ntrain 1 0 0 1 0 \n");
  const std::string marked = loss_plot_svg({{"held-out", "", {{10, 2.5}}, true}});
  EXPECT_EQ(check(marked), "svg\nheld-out 1 0 0 1 1 \n");
  const std::string empty = loss_plot_svg({{"train", "", {}, false}});
  EXPECT_EQ(check(empty), "svg\ntrain 0 0 0 0 0 \n");
  EXPECT_NE(empty.find("no finite loss to draw"), std::string::npos);
  const std::string only_nan = loss_plot_svg({{"train", "", {{1, kNaN}, {2, kNaN}}, false}});
  EXPECT_EQ(check(only_nan), "svg\ntrain 0 2 0 0 0 step 1: loss nan|step 2: loss nan\n");
  EXPECT_EQ(check(loss_plot_svg({})), "svg\n");
}

TEST_F(TrainReport, LogScale) {
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  LossCurve train{"train", "#000", {{1, 100.0}, {2, 10.0}, {3, 0.0}, {4, 0.01}, {5, -1.0}}, false};
  PlotOptions options;
  options.log_scale = true;
  options.title = "a <title> & more";
  const std::string svg = loss_plot_svg({train}, options);
  EXPECT_EQ(check(svg), "svg\ntrain 3 2 2 1 0 step 3: loss 0|step 5: loss -1\n");
  EXPECT_NE(svg.find("data-scale=\"log\""), std::string::npos);
  EXPECT_NE(svg.find("(log scale)"), std::string::npos);
  EXPECT_NE(svg.find("a &lt;title&gt; &amp; more"), std::string::npos);
  // Decade ticks over four decades.
  for (const char* tick : {">0.01<", ">0.1<", ">1<", ">10<", ">100<"}) {
    EXPECT_NE(svg.find(tick), std::string::npos) << tick;
  }
  EXPECT_NE(svg.find(">not finite or &lt;= 0</text>"), std::string::npos);
  // A narrow range on a log scale still gets ticks.
  const std::string narrow = loss_plot_svg({{"train", "", {{1, 3.1}, {2, 3.3}}, false}}, options);
  EXPECT_GE(count(narrow, "text-anchor=\"end\""), 2U);
}

TEST_F(TrainReport, HtmlPageEmbedsThePlotsAndTheConfig) {
  if (!test::have_python()) GTEST_SKIP() << "python3 is not installed";
  ReportPage page;
  page.title = "Training run a&b";
  page.figures = {{"final train loss", "2.5000"}, {"steps", "10 of 10"}};
  page.plots = {loss_plot_svg({{"train", "", {{1, 3.0}, {2, 2.5}}, false}}),
                loss_plot_svg({{"train", "", {{1, 3.0}}, false}})};
  page.config_name = "train.toml";
  page.config_text = "[run]\noutput = \"<out>\"\n";
  const std::string html = report_html(page);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0U);
  EXPECT_NE(html.find("output = &quot;&lt;out&gt;&quot;"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"value\">2.5000</td>"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  // Well-formed XML, so both plots are found inside it.
  EXPECT_EQ(check(html, "report.html"), "html\ntrain 2 0 2 0 0 \ntrain 1 0 0 1 0 \n");
}

// ------------------------------------------------------------------ run_training

TokenizedCorpus corpus_of(size_t documents, size_t length) {
  TokenizedCorpus c;
  c.offsets.push_back(0);
  for (size_t d = 0; d < documents; ++d) {
    c.names.push_back("d" + std::to_string(d));
    for (size_t i = 0; i < length; ++i) c.tokens.push_back(static_cast<int32_t>((d * 7 + i) % 50));
    c.offsets.push_back(c.tokens.size());
  }
  return c;
}

TrainConfig config_for(const fs::path& dir, const std::string& extra) {
  return parse_train_config(R"([run]
output = "run"
steps = 12
seed = 5
checkpoint_every = 5
[model]
path = "m.gguf"
[data]
path = "corpus"
seq_len = 8
batch_size = 2
held_out_documents = 2
eval_every = 4
eval_batches = 3
[optimizer]
grad_accumulation = 2
)" + extra,
                            (dir / "train.toml").string(), dir);
}

struct Recorder {
  std::vector<int64_t> steps;
  std::vector<std::vector<int64_t>> batches;  // indices of each step's micro-batches, joined
  int evaluations = 0;
  std::vector<std::pair<int64_t, CursorState>> checkpoints;

  TrainerHooks hooks() {
    TrainerHooks h;
    h.step = [this](int64_t step, std::span<const Batch> micro) {
      steps.push_back(step);
      std::vector<int64_t> joined;
      for (const Batch& b : micro) joined.insert(joined.end(), b.indices.begin(), b.indices.end());
      batches.push_back(joined);
      EXPECT_EQ(micro.size(), 2U);
      EXPECT_EQ(micro[0].size(), 2);
      EXPECT_EQ(micro[0].seq_len, 8);
      TrainStep s;
      s.loss = step == 3 ? kNaN : 5.0 / static_cast<double>(step);
      s.learning_rate = 1e-3;
      return s;
    };
    h.evaluate = [this](std::span<const Batch> batches_in) {
      ++evaluations;
      int64_t tokens = 0;
      for (const Batch& b : batches_in) tokens += int64_t{b.size()} * b.seq_len;
      return HeldOutLoss{4.0 / static_cast<double>(evaluations), tokens};
    };
    h.checkpoint = [this](int64_t step, const CursorState& cursor) {
      checkpoints.emplace_back(step, cursor);
    };
    return h;
  }
};

TEST_F(TrainReport, RunTrainingDrivesTheCallablesAndWritesTheReport) {
  const TrainConfig config = config_for(dir_, "");
  const TokenizedCorpus corpus = corpus_of(12, 30);
  PackingOptions packing;
  packing.seq_len = 8;
  packing.separator = 99;
  packing.held_out_documents = 2;
  const TokenDataset data(corpus, packing, 64, 100);
  Recorder rec;
  std::ostringstream out;
  RunOutput output;
  output.out = &out;
  double now = 0.0;
  output.clock = [&now] { return now += 0.25; };
  const RunOutcome outcome = run_training(config, data, rec.hooks(), RunStart{}, output);

  EXPECT_EQ(rec.steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(rec.evaluations, 4);          // before step 1, and after steps 4, 8, 12
  ASSERT_EQ(rec.checkpoints.size(), 3U);  // steps 5, 10, 12
  EXPECT_EQ(rec.checkpoints[0].first, 5);
  EXPECT_EQ(rec.checkpoints[2].first, 12);
  EXPECT_EQ(rec.checkpoints[0].second.position, 20U);  // 5 steps of 2 x 2 sequences
  EXPECT_EQ(outcome.steps, 12);
  EXPECT_DOUBLE_EQ(outcome.train_loss, 5.0 / 12);
  EXPECT_DOUBLE_EQ(*outcome.held_out_loss, 4.0 / 4);
  EXPECT_NE(out.str().find("held-out loss before training: 4.0000"), std::string::npos);
  EXPECT_EQ(outcome.tokens, 12 * 2 * 2 * 8);  // counted from the batches
  EXPECT_EQ(outcome.log, dir_ / "run" / "log.jsonl");
  EXPECT_EQ(outcome.report, dir_ / "run" / "report.html");
  EXPECT_NE(out.str().find("step 12/12"), std::string::npos);
  EXPECT_NE(out.str().find("checkpoint after step 5"), std::string::npos);

  // The log: one line per step and per measurement, all JSON.
  std::ifstream in(outcome.log);
  int steps = 0;
  int evals = 0;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    (j["type"] == "step" ? steps : evals) += 1;
  }
  EXPECT_EQ(steps, 12);
  EXPECT_EQ(evals, 4);
  for (const char* file : {"loss.svg", "loss-log.svg", "report.html"}) {
    EXPECT_TRUE(fs::exists(dir_ / "run" / file)) << file;
  }
  const std::string report = read_file(dir_ / "run" / "report.html");
  EXPECT_NE(report.find("final held-out loss"), std::string::npos);
  EXPECT_NE(report.find("seq_len = 8"), std::string::npos);  // the config as written
  if (test::have_python()) {
    // Both plots: 11 finite train losses (step 3 is NaN) and 4 held-out ones.
    EXPECT_EQ(check(report, "report-copy.html"),
              "html\ntrain 11 1 11 0 0 step 3: loss nan\nheld-out 4 0 4 0 4 \n"
              "train 11 1 11 0 0 step 3: loss nan\nheld-out 4 0 4 0 4 \n");
  }

  // Resuming from the checkpoint after step 5 repeats exactly the batches of steps 6-12.
  Recorder resumed;
  run_training(config, data, resumed.hooks(), RunStart{5, rec.checkpoints[0].second}, output);
  EXPECT_EQ(resumed.steps, (std::vector<int64_t>{6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(resumed.batches,
            std::vector<std::vector<int64_t>>(rec.batches.begin() + 5, rec.batches.end()));
  // The log now holds both runs; the report reads the later values of repeated steps.
  EXPECT_EQ(read_run_log(outcome.log).train.size(), 12U);
}

TEST_F(TrainReport, RunTrainingErrors) {
  const TrainConfig config = config_for(dir_, "");
  const TokenizedCorpus corpus = corpus_of(12, 30);
  PackingOptions packing;
  packing.seq_len = 8;
  packing.separator = 99;
  packing.held_out_documents = 2;
  const TokenDataset data(corpus, packing, 64, 100);
  Recorder rec;
  TrainerHooks no_step = rec.hooks();
  no_step.step = nullptr;
  test::expect_error_with([&] { run_training(config, data, no_step, {}, {}); },
                          {"the trainer gives no step function"});
  TrainerHooks no_eval = rec.hooks();
  no_eval.evaluate = nullptr;
  test::expect_error_with([&] { run_training(config, data, no_eval, {}, {}); },
                          {"no held-out measurement"});
  test::expect_error_with(
      [&] {
        run_training(config, data, rec.hooks(), RunStart{13, {}}, {});
      },
      {"the run starts at step 13 of 12"});
  // A step that throws: the error propagates and the log holds the steps before it.
  TrainerHooks failing = rec.hooks();
  failing.step = [](int64_t step, std::span<const Batch>) -> TrainStep {
    if (step == 3) throw Error("out of memory at step 3");
    return TrainStep{1.0, 1e-3, kNaN, 0};
  };
  test::expect_error_with([&] { run_training(config, data, failing, {}, {}); },
                          {"out of memory at step 3"});
  EXPECT_EQ(read_run_log(dir_ / "run" / "log.jsonl").train.size(), 2U);
}

}  // namespace
}  // namespace tessera
