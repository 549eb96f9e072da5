// Reporting a run as it goes: the progress line (rewritten in place on a terminal, plain lines
// otherwise), the meter behind its tokens/s and ETA, and the JSON-lines log (one object per
// step and per held-out measurement) that the loss plot is drawn from afterwards.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iosfwd>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tessera {

struct ProgressLine {
  int64_t step = 0;  // steps done
  int64_t total = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
  std::optional<double> held_out_loss;  // the latest measurement, when there is one
  double learning_rate = 0.0;
  double tokens_per_second = 0.0;
  std::optional<double> eta_seconds;
};

// "step 120/1000  loss 3.412  held-out 3.520  lr 2.90e-04  12.3k tok/s  ETA 4m12s".
std::string format_progress(const ProgressLine& line);
// "12s", "4m12s", "1h03m", "2d04h"; "?" for a negative or non-finite time.
std::string format_duration(double seconds);

class ProgressPrinter {
 public:
  // On a terminal the line is rewritten in place ("\r", the line, erase to its end); otherwise
  // a plain line is printed every `every` steps, for the last step and whenever a held-out
  // loss is new.
  ProgressPrinter(std::ostream& out, bool terminal, int64_t every = 1);
  // Whether standard output is a terminal.
  static bool stdout_is_terminal();

  void update(const ProgressLine& line);
  // A line of its own (a checkpoint saved, a warning): on a terminal it goes above the
  // progress line, which is drawn again below it.
  void message(const std::string& text);
  // Ends the rewritten line on a terminal; nothing otherwise.
  void finish();

 private:
  std::ostream& out_;
  bool terminal_;
  int64_t every_;
  std::string current_;  // what the terminal shows
  std::optional<double> last_held_out_;
};

// Tokens/s over the recent steps and the time left. Counts only the steps this process ran,
// so a resumed run's ETA is not skewed by the steps done before it.
class ProgressMeter {
 public:
  ProgressMeter(int64_t total_steps, int64_t first_step, double start_seconds);
  // A step finished at `seconds` (any steady clock, the same as start_seconds).
  void record(int64_t step, int64_t tokens, double seconds);
  double tokens_per_second() const;
  std::optional<double> eta_seconds() const;  // none before the first step

 private:
  int64_t total_;
  int64_t step_;
  std::deque<std::pair<double, int64_t>> window_;  // (time, tokens) of the recent steps
  double start_;
  int64_t first_step_;
  double last_ = 0.0;
};

struct StepRecord {
  int64_t step = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
  double learning_rate = 0.0;
  double grad_norm = std::numeric_limits<double>::quiet_NaN();  // NaN: not reported
  int64_t tokens = 0;                                           // tokens scored in this step
  double tokens_per_second = 0.0;
  double elapsed_seconds = 0.0;
};

struct EvalRecord {
  int64_t step = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
  int64_t tokens = 0;  // held-out tokens scored
  double elapsed_seconds = 0.0;
};

// One JSON object per line, flushed as written:
//   {"type":"step","step":1,"loss":3.41,"lr":0.0003,"grad_norm":1.2,"tokens":4096,
//    "tokens_per_s":12000.0,"elapsed_s":0.34}
//   {"type":"eval","step":100,"loss":3.52,"tokens":32768,"elapsed_s":34.1}
// A non-finite number is written as null (JSON has no NaN); grad_norm is left out when NaN.
std::string step_json(const StepRecord& record);
std::string eval_json(const EvalRecord& record);

class RunLog {
 public:
  // Appends to the file (a resumed run continues its log), creating it and its folder.
  // Throws Error when it cannot be opened.
  explicit RunLog(const std::filesystem::path& path);
  void step(const StepRecord& record);
  void eval(const EvalRecord& record);
  const std::filesystem::path& path() const { return path_; }

 private:
  void write(const std::string& line);
  std::filesystem::path path_;
  std::ofstream out_;
};

// The losses of a log, by step. A step logged twice (a run resumed from an earlier checkpoint
// repeats steps) keeps its last value; a null loss reads as NaN. Lines that are not JSON
// objects of type "step" or "eval" are skipped.
struct LossHistory {
  std::vector<std::pair<int64_t, double>> train;     // (step, loss), by step
  std::vector<std::pair<int64_t, double>> held_out;  // (step, loss), by step
};
LossHistory read_run_log(const std::filesystem::path& path);

}  // namespace tessera
