// Progress reporting: the progress line on a terminal and in a pipe, the meter's rate and
// ETA, and the JSON-lines log written and read back.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tessera/train/progress.hpp>
#include <vector>

#include "hf_fixtures.hpp"

namespace tessera {
namespace {

using nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(TrainProgress, LineHoldsEveryFigure) {
  ProgressLine line;
  line.step = 120;
  line.total = 1000;
  line.loss = 3.41234;
  line.held_out_loss = 3.52;
  line.learning_rate = 2.9e-4;
  line.tokens_per_second = 12345;
  line.eta_seconds = 252;
  EXPECT_EQ(format_progress(line),
            "step 120/1000  loss 3.4123  held-out 3.5200  lr 2.90e-04  12.3k tok/s  ETA 4m12s");
  line.held_out_loss.reset();
  line.eta_seconds.reset();
  line.loss = kNaN;
  line.tokens_per_second = 0;
  EXPECT_EQ(format_progress(line), "step 120/1000  loss nan  lr 2.90e-04  - tok/s");
  line.tokens_per_second = 2.5e6;
  line.loss = kInf;
  EXPECT_EQ(format_progress(line), "step 120/1000  loss inf  lr 2.90e-04  2.50M tok/s");
}

TEST(TrainProgress, Durations) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(60), "1m00s");
  EXPECT_EQ(format_duration(3599), "59m59s");
  EXPECT_EQ(format_duration(3600 + 180), "1h03m");
  EXPECT_EQ(format_duration(2 * 86400 + 4 * 3600 + 59), "2d04h");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(kNaN), "?");
  EXPECT_EQ(format_duration(kInf), "?");
}

ProgressLine at(int64_t step, int64_t total, std::optional<double> held_out = std::nullopt) {
  ProgressLine line;
  line.step = step;
  line.total = total;
  line.loss = 2.0;
  line.held_out_loss = held_out;
  return line;
}

TEST(TrainProgress, TerminalRewritesOneLine) {
  std::ostringstream out;
  ProgressPrinter printer(out, true, 1);
  printer.update(at(1, 3));
  printer.update(at(2, 3));
  EXPECT_EQ(out.str().find('\n'), std::string::npos);
  EXPECT_EQ(out.str(),
            "\r" + format_progress(at(1, 3)) + "\x1b[K\r" + format_progress(at(2, 3)) + "\x1b[K");
  printer.message("checkpoint after step 2");
  // The message takes the line, the progress line is drawn again below it.
  EXPECT_NE(out.str().find("\rcheckpoint after step 2\x1b[K\n" + format_progress(at(2, 3))),
            std::string::npos);
  printer.update(at(3, 3));
  printer.finish();
  EXPECT_EQ(out.str().back(), '\n');
}

TEST(TrainProgress, PipeGetsPlainLines) {
  std::ostringstream out;
  ProgressPrinter printer(out, false, 10);
  for (int64_t step = 1; step <= 25; ++step) {
    printer.update(
        at(step, 25, step >= 15 ? std::optional<double>(step >= 17 ? 2.5 : 2.6) : std::nullopt));
  }
  printer.message("done");
  printer.finish();
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  // Steps 10 and 20, the new held-out losses at 15 and 17, the last step, the message.
  ASSERT_EQ(lines.size(), 6U) << out.str();
  EXPECT_EQ(lines[0], format_progress(at(10, 25)));
  EXPECT_EQ(lines[1].rfind("step 15/25", 0), 0U);
  EXPECT_EQ(lines[2].rfind("step 17/25", 0), 0U);
  EXPECT_EQ(lines[3].rfind("step 20/25", 0), 0U);
  EXPECT_EQ(lines[4].rfind("step 25/25", 0), 0U);
  EXPECT_EQ(lines[5], "done");
  EXPECT_EQ(out.str().find('\r'), std::string::npos);
  EXPECT_EQ(out.str().find('\x1b'), std::string::npos);
}

TEST(TrainProgress, MeterRateAndEta) {
  ProgressMeter meter(100, 0, 10.0);
  EXPECT_EQ(meter.tokens_per_second(), 0.0);
  EXPECT_FALSE(meter.eta_seconds());
  meter.record(1, 1000, 11.0);
  EXPECT_DOUBLE_EQ(meter.tokens_per_second(), 1000.0);
  EXPECT_DOUBLE_EQ(*meter.eta_seconds(), 99.0);
  for (int64_t step = 2; step <= 50; ++step) {
    meter.record(step, 1000, 10.0 + 0.5 * static_cast<double>(step) + 0.5);
  }
  // The last 20 steps took 0.5 s each.
  EXPECT_DOUBLE_EQ(meter.tokens_per_second(), 2000.0);
  EXPECT_DOUBLE_EQ(*meter.eta_seconds(), 25.0);

  // A resumed run counts only its own steps.
  ProgressMeter resumed(100, 90, 0.0);
  resumed.record(91, 500, 2.0);
  EXPECT_DOUBLE_EQ(*resumed.eta_seconds(), 18.0);
}

TEST(TrainProgress, JsonLinesParseAndCarryNonFiniteAsNull) {
  StepRecord step{7, 3.25, 1e-4, 0.75, 4096, 1234.5, 9.5};
  json j = json::parse(step_json(step));
  EXPECT_EQ(j["type"], "step");
  EXPECT_EQ(j["step"], 7);
  EXPECT_DOUBLE_EQ(j["loss"].get<double>(), 3.25);
  EXPECT_DOUBLE_EQ(j["lr"].get<double>(), 1e-4);
  EXPECT_DOUBLE_EQ(j["grad_norm"].get<double>(), 0.75);
  EXPECT_EQ(j["tokens"], 4096);
  EXPECT_DOUBLE_EQ(j["tokens_per_s"].get<double>(), 1234.5);
  EXPECT_DOUBLE_EQ(j["elapsed_s"].get<double>(), 9.5);
  EXPECT_EQ(step_json(step).find('\n'), std::string::npos);

  step.loss = kNaN;
  step.grad_norm = kNaN;
  j = json::parse(step_json(step));
  EXPECT_TRUE(j["loss"].is_null());
  EXPECT_FALSE(j.contains("grad_norm"));
  step.grad_norm = kInf;
  EXPECT_TRUE(json::parse(step_json(step))["grad_norm"].is_null());

  const json e = json::parse(eval_json({100, kInf, 32768, 12.0}));
  EXPECT_EQ(e["type"], "eval");
  EXPECT_EQ(e["step"], 100);
  EXPECT_TRUE(e["loss"].is_null());
  EXPECT_EQ(e["tokens"], 32768);
}

class TrainRunLog : public test::TempFolderTest {};

TEST_F(TrainRunLog, AppendsAndReadsBack) {
  const std::filesystem::path path = dir_ / "run" / "log.jsonl";
  {
    RunLog log(path);
    log.step({1, 4.0, 1e-4, kNaN, 10, 0, 0});
    log.step({2, 3.5, 1e-4, kNaN, 10, 0, 0});
    log.eval({2, 3.9, 100, 0});
    log.step({3, kNaN, 1e-4, kNaN, 10, 0, 0});
  }
  {
    // A resumed run appends, repeating step 3 (the checkpoint was after step 2).
    RunLog log(path);
    log.step({3, 3.25, 1e-4, kNaN, 10, 0, 0});
    log.step({4, 3.0, 1e-4, kNaN, 10, 0, 0});
    log.eval({4, 3.6, 100, 0});
  }
  std::ifstream in(path);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    EXPECT_NO_THROW(json::parse(line)) << line;
  }
  EXPECT_EQ(lines, 7);
  {
    std::ofstream garbage(path, std::ios::app);
    garbage << "not json\n{\"type\":\"note\",\"step\":1}\n[1,2]\n";
  }
  const LossHistory h = read_run_log(path);
  ASSERT_EQ(h.train.size(), 4U);
  EXPECT_EQ(h.train[2].first, 3);
  EXPECT_DOUBLE_EQ(h.train[2].second, 3.25);  // the later value of a repeated step
  EXPECT_DOUBLE_EQ(h.train[3].second, 3.0);
  ASSERT_EQ(h.held_out.size(), 2U);
  EXPECT_EQ(h.held_out[1], (std::pair<int64_t, double>{4, 3.6}));

  RunLog nan_log(dir_ / "nan.jsonl");
  nan_log.step({1, kNaN, 0, kNaN, 0, 0, 0});
  EXPECT_TRUE(std::isnan(read_run_log(dir_ / "nan.jsonl").train[0].second));

  test::expect_error_with([&] { read_run_log(dir_ / "absent.jsonl"); },
                          {"cannot read the run log", "absent.jsonl"});
  test::expect_error_with([&] { RunLog bad(dir_ / "run" / "log.jsonl" / "x.jsonl"); },
                          {"cannot open the run log"});
}

}  // namespace
}  // namespace tessera
