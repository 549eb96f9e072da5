// The loop around the trainer's callables: batches in, progress, log and report out.
#include <tessera/engine/error.hpp>
#include <tessera/tools/atomic_file.hpp>
#include <tessera/train/progress.hpp>
#include <tessera/train/train_run.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <system_error>

namespace fs = std::filesystem;

namespace tessera {

namespace {

std::string figure(double value, const char* format = "%.4f") {
  if (!std::isfinite(value)) return std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf");
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

}  // namespace

std::vector<Batch> held_out_batches(const PackedPart& part, int32_t batch_size,
                                    int32_t eval_batches) {
  std::vector<Batch> batches;
  const int64_t wanted = static_cast<int64_t>(batch_size) * eval_batches;
  const int64_t count = std::min(wanted, part.sequences());
  for (int64_t first = 0; first < count; first += batch_size) {
    batches.push_back(batch_of(part, first, std::min<int64_t>(batch_size, count - first)));
  }
  return batches;
}

RunOutcome run_training(const TrainConfig& config, const TokenDataset& data,
                        const TrainerHooks& hooks, const RunStart& start, const RunOutput& output) {
  if (!hooks.step) throw Error("the trainer gives no step function");
  const bool measures = data.held_out().sequences() > 0;
  if (measures && !hooks.evaluate) throw Error("the trainer gives no held-out measurement");
  const int64_t total = config.run.steps;
  if (start.step < 0 || start.step > total) {
    throw Error("the run starts at step " + std::to_string(start.step) + " of " +
                std::to_string(total));
  }

  const std::function<double()> clock = output.clock ? output.clock : [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  const double t0 = clock();
  RunOutcome outcome;
  outcome.steps = start.step;
  outcome.log = config.run.output / "log.jsonl";
  RunLog log(outcome.log);

  BatchCursor cursor(data.train(), config.run.seed);
  if (start.cursor) cursor.restore(*start.cursor);
  const std::vector<Batch> held_out =
      measures ? held_out_batches(data.held_out(), config.data.batch_size, config.data.eval_batches)
               : std::vector<Batch>{};

  std::ostringstream sink;
  std::ostream& out = output.out != nullptr ? *output.out : sink;
  const int64_t every = std::max<int64_t>(1, total / 200);
  ProgressPrinter printer(out, output.terminal && output.out != nullptr, every);
  ProgressMeter meter(total, start.step, t0);
  ProgressLine line;
  line.total = total;
  line.step = start.step;

  auto measure = [&](int64_t step) {
    const HeldOutLoss result = hooks.evaluate(held_out);
    log.eval({step, result.loss, result.tokens, clock() - t0});
    outcome.held_out_loss = result.loss;
    line.held_out_loss = result.loss;
  };
  auto checkpoint = [&](int64_t step) {
    if (!hooks.checkpoint) return;
    hooks.checkpoint(step, cursor.state());
    printer.message("checkpoint after step " + std::to_string(step));
  };

  // A new run measures the model it starts from: the baseline every later measurement is read
  // against.
  if (measures && start.step == 0) {
    measure(0);
    printer.message("held-out loss before training: " + figure(*outcome.held_out_loss));
  }
  const int32_t micro = config.optimizer.grad_accumulation;
  std::vector<Batch> batches(static_cast<size_t>(micro));
  for (int64_t step = start.step + 1; step <= total; ++step) {
    for (Batch& b : batches) b = cursor.next(config.data.batch_size);
    TrainStep result = hooks.step(step, batches);
    if (result.tokens <= 0) {
      result.tokens = static_cast<int64_t>(micro) * config.data.batch_size * data.seq_len();
    }
    const double now = clock();
    meter.record(step, result.tokens, now);
    outcome.steps = step;
    outcome.train_loss = result.loss;
    outcome.tokens += result.tokens;
    log.step({step, result.loss, result.learning_rate, result.grad_norm, result.tokens,
              meter.tokens_per_second(), now - t0});
    const bool last = step == total;
    if (measures && (last || (config.data.eval_every > 0 && step % config.data.eval_every == 0))) {
      measure(step);
    }
    line.step = step;
    line.loss = result.loss;
    line.learning_rate = result.learning_rate;
    line.tokens_per_second = meter.tokens_per_second();
    line.eta_seconds = meter.eta_seconds();
    printer.update(line);
    if (last || (config.run.checkpoint_every > 0 && step % config.run.checkpoint_every == 0)) {
      checkpoint(step);
    }
  }
  printer.finish();
  outcome.seconds = clock() - t0;

  std::vector<ReportFigure> figures = {
      {"objective", std::string(to_string(config.run.objective))},
      {"model", config.model.string()},
      {"corpus", config.data.path.string()},
      {"steps", std::to_string(outcome.steps) + " of " + std::to_string(total)},
      {"tokens trained (this process)", std::to_string(outcome.tokens)},
      {"time (this process)", format_duration(outcome.seconds)},
      {"tokens/s (this process)",
       figure(outcome.seconds > 0 ? static_cast<double>(outcome.tokens) / outcome.seconds : 0.0,
              "%.1f")},
      {"final train loss", figure(outcome.train_loss)},
  };
  if (outcome.held_out_loss) {
    figures.push_back({"final held-out loss", figure(*outcome.held_out_loss)});
    figures.push_back(
        {"final held-out perplexity", figure(std::exp(*outcome.held_out_loss), "%.2f")});
  }
  outcome.report = write_run_report(config, outcome.log, figures);
  return outcome;
}

fs::path write_run_report(const TrainConfig& config, const fs::path& log,
                          const std::vector<ReportFigure>& figures) {
  const LossHistory history = read_run_log(log);
  std::vector<LossCurve> curves(2);
  curves[0].name = "train";
  curves[1].name = "held-out";
  curves[1].markers = true;
  for (const auto& [step, loss] : history.train) curves[0].points.emplace_back(step, loss);
  for (const auto& [step, loss] : history.held_out) curves[1].points.emplace_back(step, loss);
  if (curves[1].points.empty()) curves.pop_back();

  PlotOptions linear;
  linear.title = "Loss: " + config.run.output.filename().string();
  PlotOptions logarithmic = linear;
  logarithmic.log_scale = true;
  const std::string linear_svg = loss_plot_svg(curves, linear);
  const std::string log_svg = loss_plot_svg(curves, logarithmic);

  const fs::path folder = config.run.output;
  std::error_code ec;
  fs::create_directories(folder, ec);
  write_file_atomically(folder / "loss.svg", linear_svg);
  write_file_atomically(folder / "loss-log.svg", log_svg);
  ReportPage page;
  page.title = "Training run " + folder.filename().string();
  page.figures = figures;
  page.plots = {linear_svg, log_svg};
  page.config_name = config.source.filename().string();
  page.config_text = config.text;
  fs::path report = folder / "report.html";
  write_file_atomically(report, report_html(page));
  return report;
}

}  // namespace tessera
