// The progress line, its meter and the JSON-lines run log.
#include <tessera/engine/error.hpp>
#include <tessera/train/progress.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <system_error>

namespace tessera {

namespace {

using Json = nlohmann::ordered_json;

std::string printf_text(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

std::string loss_text(double loss) {
  return std::isfinite(loss) ? printf_text("%.4f", loss) : printf_text("%f", loss);
}

std::string rate_text(double per_second) {
  if (!(per_second > 0.0) || !std::isfinite(per_second)) return "- tok/s";
  if (per_second >= 1e6) return printf_text("%.2fM tok/s", per_second / 1e6);
  if (per_second >= 1e3) return printf_text("%.1fk tok/s", per_second / 1e3);
  return printf_text("%.0f tok/s", per_second);
}

// A finite number, or null.
Json number(double value) {
  return std::isfinite(value) ? Json(value) : Json(nullptr);
}

}  // namespace

std::string format_duration(double seconds) {
  if (!(seconds >= 0.0) || !std::isfinite(seconds)) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buffer[48];
  if (s < 60) {
    std::snprintf(buffer, sizeof(buffer), "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buffer, sizeof(buffer), "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buffer, sizeof(buffer), "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buffer;
}

std::string format_progress(const ProgressLine& line) {
  std::string text = "step " + std::to_string(line.step) + "/" + std::to_string(line.total);
  text += "  loss " + loss_text(line.loss);
  if (line.held_out_loss) text += "  held-out " + loss_text(*line.held_out_loss);
  text += "  lr " + printf_text("%.2e", line.learning_rate);
  text += "  " + rate_text(line.tokens_per_second);
  if (line.eta_seconds) text += "  ETA " + format_duration(*line.eta_seconds);
  return text;
}

// ------------------------------------------------------------------ printer

ProgressPrinter::ProgressPrinter(std::ostream& out, bool terminal, int64_t every)
    : out_(out), terminal_(terminal), every_(every < 1 ? 1 : every) {}

bool ProgressPrinter::stdout_is_terminal() {
  return isatty(STDOUT_FILENO) != 0;
}

void ProgressPrinter::update(const ProgressLine& line) {
  const std::string text = format_progress(line);
  const bool new_held_out =
      line.held_out_loss.has_value() && (!last_held_out_ || *last_held_out_ != *line.held_out_loss);
  last_held_out_ = line.held_out_loss;
  if (terminal_) {
    out_ << "\r" << text << "\x1b[K" << std::flush;
    current_ = text;
    return;
  }
  if (line.step % every_ == 0 || line.step == line.total || new_held_out) {
    out_ << text << "\n" << std::flush;
  }
}

void ProgressPrinter::message(const std::string& text) {
  if (terminal_ && !current_.empty()) {
    out_ << "\r" << text << "\x1b[K\n" << current_ << std::flush;
    return;
  }
  out_ << text << "\n" << std::flush;
}

void ProgressPrinter::finish() {
  if (terminal_ && !current_.empty()) out_ << "\n" << std::flush;
  current_.clear();
}

// -------------------------------------------------------------------- meter

namespace {
constexpr size_t kWindow = 20;  // steps the rate is measured over
}

ProgressMeter::ProgressMeter(int64_t total_steps, int64_t first_step, double start_seconds)
    : total_(total_steps), step_(first_step), start_(start_seconds), first_step_(first_step) {
  window_.emplace_back(start_seconds, 0);
}

void ProgressMeter::record(int64_t step, int64_t tokens, double seconds) {
  step_ = step;
  last_ = seconds;
  window_.emplace_back(seconds, tokens);
  while (window_.size() > kWindow + 1) window_.pop_front();
}

double ProgressMeter::tokens_per_second() const {
  if (window_.size() < 2) return 0.0;
  int64_t tokens = 0;
  for (size_t i = 1; i < window_.size(); ++i) tokens += window_[i].second;
  const double span = window_.back().first - window_.front().first;
  return span > 0.0 ? static_cast<double>(tokens) / span : 0.0;
}

std::optional<double> ProgressMeter::eta_seconds() const {
  const int64_t done = step_ - first_step_;
  if (done <= 0) return std::nullopt;
  // The recent steps' pace when the window is full, else the pace since the start.
  const double span = window_.back().first - window_.front().first;
  const double per_step = span / static_cast<double>(window_.size() - 1);
  const double overall = (last_ - start_) / static_cast<double>(done);
  return static_cast<double>(total_ - step_) * (window_.size() > kWindow ? per_step : overall);
}

// ---------------------------------------------------------------------- log

std::string step_json(const StepRecord& r) {
  Json j;
  j["type"] = "step";
  j["step"] = r.step;
  j["loss"] = number(r.loss);
  j["lr"] = number(r.learning_rate);
  if (!std::isnan(r.grad_norm)) j["grad_norm"] = number(r.grad_norm);
  j["tokens"] = r.tokens;
  j["tokens_per_s"] = number(r.tokens_per_second);
  j["elapsed_s"] = number(r.elapsed_seconds);
  return j.dump();
}

std::string eval_json(const EvalRecord& r) {
  Json j;
  j["type"] = "eval";
  j["step"] = r.step;
  j["loss"] = number(r.loss);
  j["tokens"] = r.tokens;
  j["elapsed_s"] = number(r.elapsed_seconds);
  return j.dump();
}

RunLog::RunLog(const std::filesystem::path& path) : path_(path) {
  std::error_code ec;
  if (!path.parent_path().empty()) std::filesystem::create_directories(path.parent_path(), ec);
  out_.open(path, std::ios::app);
  if (!out_) throw Error("cannot open the run log " + path.string() + " for writing");
}

void RunLog::write(const std::string& line) {
  out_ << line << "\n" << std::flush;
  if (!out_) throw Error("cannot write to the run log " + path_.string());
}

void RunLog::step(const StepRecord& record) {
  write(step_json(record));
}

void RunLog::eval(const EvalRecord& record) {
  write(eval_json(record));
}

LossHistory read_run_log(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read the run log " + path.string());
  std::map<int64_t, double> train;
  std::map<int64_t, double> held_out;
  std::string line;
  while (std::getline(in, line)) {
    const Json j = Json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    const auto type = j.find("type");
    const auto step = j.find("step");
    const auto loss = j.find("loss");
    if (type == j.end() || step == j.end() || loss == j.end() || !step->is_number_integer())
      continue;
    const double value =
        loss->is_number() ? loss->get<double>() : std::numeric_limits<double>::quiet_NaN();
    if (*type == "step") {
      train[step->get<int64_t>()] = value;
    } else if (*type == "eval") {
      held_out[step->get<int64_t>()] = value;
    }
  }
  LossHistory history;
  history.train.assign(train.begin(), train.end());
  history.held_out.assign(held_out.begin(), held_out.end());
  return history;
}

}  // namespace tessera
