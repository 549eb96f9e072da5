// tessera puzzle STAGE CONFIG.toml: the Puzzle pipeline's stages (docs/puzzle.md), each reading
// and writing a versioned artefact in the config's output folder.
//
//   library   the block library: every layer's cheaper variants, initialised from the parent on
//             calibration text (pruning, KV-head pooling, least squares), written as a manifest
//             folder holding the parent and every variant, with library.json beside it
//   distill   blockwise local distillation of every trainable variant against the parent's
//             block (resumable, with a log and a report): library-distilled/
//   score     replace-1-block scores of every variant on held-out text (KL to the parent's
//             next-token distribution, agreement): scores.json, resumable after any batch
//   cost      every variant's measured prefill and decode time and bytes: costs.json
//   solve     the search (a search plugin: mip by default) under budgets from the costs, the
//             providers compared beside it, the frontier and diverse solutions: solutions.json
//   realize   the chosen child as a manifest folder (child/) and DeciLM safetensors (child-hf/)
//   global-distill
//             the child trained whole against the parent (GKD): child-gkd/
//   evaluate  parent and children side by side: held-out KL, agreement, perplexity and MMLU,
//             and prefill and decode speed of the scenario (cmd_puzzle_evaluate.cpp)
//   report    one self-contained HTML page of whatever the output folder holds (the frontier,
//             the main child's layers, every table; puzzle/report.hpp): report.html
#include <tessera/engine/error.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/search.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/formats/hf_writer.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/puzzle/calibration.hpp>
#include <tessera/puzzle/cost_file.hpp>
#include <tessera/puzzle/costs.hpp>
#include <tessera/puzzle/distill.hpp>
#include <tessera/puzzle/evaluation.hpp>
#include <tessera/puzzle/library.hpp>
#include <tessera/puzzle/library_index.hpp>
#include <tessera/puzzle/puzzle_config.hpp>
#include <tessera/puzzle/realize.hpp>
#include <tessera/puzzle/report.hpp>
#include <tessera/puzzle/score_file.hpp>
#include <tessera/puzzle/scoring.hpp>
#include <tessera/puzzle/selection.hpp>
#include <tessera/puzzle/solution_file.hpp>
#include <tessera/tools/atomic_file.hpp>
#include <tessera/train/progress.hpp>
#include <tessera/train/train_run.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "corpus_data.hpp"
#include "model_folder.hpp"
#include "puzzle_stage.hpp"
#include "setup.hpp"
#include "train_session.hpp"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;
using puzzle::LayerVariants;
using puzzle::Variant;

// One progress line, rewritten in place on a terminal; on a pipe a line at each quarter.
class StageProgress {
 public:
  StageProgress(std::ostream& out, std::string what, std::string unit)
      : out_(out),
        what_(std::move(what)),
        unit_(std::move(unit)),
        terminal_(ProgressPrinter::stdout_is_terminal()),
        start_(std::chrono::steady_clock::now()) {}
  ~StageProgress() {
    if (terminal_ && shown_any_) out_ << "\n";
  }
  StageProgress(const StageProgress&) = delete;
  StageProgress& operator=(const StageProgress&) = delete;

  // `prefix` (may be empty) goes before the counts, e.g. "batch 1/2: ".
  void show(int64_t done, int64_t total, const std::string& prefix = "") {
    const double s = seconds_since(start_);
    const double rate = static_cast<double>(done - base_) / std::max(s, 1e-9);
    const std::string line =
        what_ + " " + prefix + grouped(done) + "/" + grouped(total) + " " + unit_ + "  " +
        fixed(rate, rate < 10 ? 2 : 0) + " " + unit_ + "/s  ETA " +
        format_duration(rate > 0 ? static_cast<double>(total - done) / rate : 0.0);
    shown_any_ = true;
    if (terminal_) {
      out_ << "\r" << line << "\x1b[K" << std::flush;
    } else if (done == total || done - shown_ >= std::max<int64_t>(1, total / 4)) {
      out_ << line << std::endl;  // a log shows progress as it happens
      shown_ = done;
    }
  }
  // Work done before this process (a resumed stage): not counted in the rate.
  void set_base(int64_t done) { base_ = shown_ = done; }
  double seconds() const { return seconds_since(start_); }

 private:
  std::ostream& out_;
  std::string what_, unit_;
  bool terminal_ = false, shown_any_ = false;
  std::chrono::steady_clock::time_point start_;
  int64_t shown_ = 0, base_ = 0;
};

std::string mean_min_max(const std::vector<double>& values, int decimals) {
  if (values.empty()) return "-";
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  for (const double v : values) {
    sum += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  return fixed(sum / static_cast<double>(values.size()), decimals) + " [" + fixed(lo, decimals) +
         ", " + fixed(hi, decimals) + "]";
}

// One line per variant name: how it was made, its parameters per layer and its fit.
void print_library(std::ostream& out, const std::vector<LayerVariants>& library) {
  struct Row {
    std::string part, name, init;
    int64_t parameters = 0;
    int layers = 0;
    std::vector<double> fits;
  };
  std::vector<Row> rows;
  for (const LayerVariants& lv : library) {
    for (const std::vector<Variant>* list : {&lv.attention, &lv.ffn}) {
      for (const Variant& v : *list) {
        const std::string part = v.part == TS_KIND_ATTENTION ? "attention" : "ffn";
        auto it = std::find_if(rows.begin(), rows.end(),
                               [&](const Row& r) { return r.part == part && r.name == v.name; });
        if (it == rows.end()) {
          rows.push_back(
              {part, v.name, std::string(puzzle::to_string(v.init)), v.parameters, 0, {}});
          it = rows.end() - 1;
        }
        ++it->layers;
        if (std::isfinite(v.fit_nmse)) it->fits.push_back(v.fit_nmse);
      }
    }
  }
  char line[256];
  std::snprintf(line, sizeof(line), "  %-9s %-14s %-13s %7s %12s  %s\n", "part", "variant", "init",
                "layers", "params/layer", "calibration fit (normalised MSE: mean [min, max])");
  out << line;
  for (const Row& r : rows) {
    const std::string fit = mean_min_max(r.fits, 4);
    std::snprintf(line, sizeof(line), "  %-9s %-14s %-13s %7d %12s  %s\n", r.part.c_str(),
                  r.name.c_str(), r.init.c_str(), r.layers, grouped(r.parameters).c_str(),
                  fit.c_str());
    out << line;
  }
}

int run_library(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  std::ostream& out = std::cout;
  const fs::path folder = config.library_folder();
  std::error_code ec;
  if (fs::exists(folder / "library.json", ec) && !args.force) {
    out << "library    " << folder.string()
        << " is already built (library.json); --force builds it again\n";
    return 0;
  }

  LoadedModel parent;
  try {
    parent = open_model(config.parent);
  } catch (const Error& e) {
    throw Error(config.source.string() + ": [puzzle] parent: cannot open " +
                config.parent.string() + ": " + e.what());
  }
  if (!parent.tokenizer)
    throw Error(config.source.string() + ": [puzzle] parent " + config.parent.string() +
                " has no tokenizer (" + parent.tokenizer_error +
                "); calibration reads text with the parent's tokenizer");
  const int32_t separator =
      check_train_config(config.data, parent.manifest, *parent.tokenizer, {}, nullptr);
  const DataSection& data = config.data.data;
  const CorpusData corpus =
      load_corpus_data(data, *parent.tokenizer, separator, parent.manifest.model);
  const ModelSpec& spec = parent.manifest.model;
  out << "parent     " << parent.path.string() << " (" << to_string(parent.format) << ", "
      << spec.num_layers << " layers, hidden " << spec.hidden_size << ")\n";
  out << corpus_text(data, corpus);

  // The catalogue first: a bad option fails before the parent runs.
  std::vector<LayerVariants> library =
      puzzle::plan_variants(parent.manifest, config.library.options);
  const std::vector<train::TrainBatch> batches =
      inputs_of(part_batches(corpus.dataset->train(), data.batch_size, 0,
                             sequences_for(config.library.calibration_tokens, data.seq_len)));
  int64_t calibration_tokens = 0;
  for (const train::TrainBatch& b : batches)
    calibration_tokens += static_cast<int64_t>(b.tokens.size());
  out << "calibrate  " << grouped(calibration_tokens) << " tokens (" << batches.size()
      << " batches of up to " << data.batch_size << " x " << data.seq_len
      << ") from the start of the train part\n";

  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &parent.manifest);
  ThreadPool pool(parent.manifest.runtime.threads);
  Manifest manifest = parent.manifest;
  manifest.runtime.set_weight_dtype(TS_F32);  // the initialisers read f32, the library keeps f32
  Model model(manifest, registry, std::move(parent.weights), pool,
              ModelOptions{data.batch_size, data.seq_len});

  puzzle::Calibration calibration;
  double calibration_seconds = 0;
  {
    StageProgress progress(out, "calibrating", "tokens");
    calibration = puzzle::calibrate(
        model, batches, [&](int64_t tokens) { progress.show(tokens, calibration_tokens); });
    calibration_seconds = progress.seconds();
  }

  WeightStore weights = model.weights();
  const auto build_start = std::chrono::steady_clock::now();
  puzzle::build_variant_weights(manifest, library, calibration, config.library.options, weights);
  out << "built      the variants in " << fixed(seconds_since(build_start), 1) << "s (calibration "
      << fixed(calibration_seconds, 1) << "s)\n";
  print_library(out, library);

  puzzle::LibraryIndex index;
  index.parent_path = config.parent.string();
  index.parent_name = spec.name;
  index.hidden_size = spec.hidden_size;
  index.calibration_tokens = calibration.tokens;
  index.calibration_seconds = calibration_seconds;
  index.options = config.library.options;
  index.layers = library;
  LoadedModel meta;
  meta.format = parent.format;
  meta.path = parent.path;
  meta.manifest = manifest;
  meta.manifest.weights.allow_unread = true;  // the parent reads its own; variants lie beside
  meta.tokenizer = parent.tokenizer;
  meta.chat_template = parent.chat_template;
  fs::create_directories(config.output, ec);
  if (ec)
    throw Error(config.source.string() + ": [puzzle] output: cannot create " +
                config.output.string() + ": " + ec.message());
  const uint64_t bytes = write_manifest_folder(folder, meta, weights, TS_F32, true,
                                               {{"library.json", puzzle::library_json(index)}});
  out << "library    " << folder.string() << " ("
      << fixed(static_cast<double>(bytes) / 1048576.0, 1)
      << " MiB of f32 weights: the parent and every variant; library.json)\n";
  return 0;
}

int run_distill(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  std::ostream& out = std::cout;
  const puzzle::DistillSection& d = config.distill;
  if (d.tokens == 0) {
    out << "distill    [distill] tokens is 0 (or absent): the later stages read the library as "
           "made\n";
    return 0;
  }
  const fs::path folder = config.distilled_folder();
  std::error_code ec;
  if (fs::exists(folder / "library.json", ec) && !args.force) {
    out << "distilled  " << folder.string() << " is built; --force distils again\n";
    return 0;
  }
  puzzle::LibraryIndex index = library_index_of(config, config.library_folder());
  OpenedLibrary lib = open_library(config, std::move(index), config.library_folder());
  const CorpusData corpus = stage_corpus(config, lib.model);
  const DataSection& data = config.data.data;
  out << "library    " << config.library_folder().string() << "\n" << corpus_text(data, corpus);

  // The run as the trainer's loop sees it: steps of one micro-batch, held-out measurements,
  // checkpoints and a report in <output>/distill.
  const TrainConfig tc =
      distill_train_config(config, d, TrainObjective::kDistillBlocks, config.output / "distill");
  const int64_t per_step = static_cast<int64_t>(data.batch_size) * data.seq_len;

  train::TrainerConfig trainer;
  trainer.adamw.lr = d.lr;
  trainer.adamw.beta1 = tc.optimizer.beta1;
  trainer.adamw.beta2 = tc.optimizer.beta2;
  trainer.adamw.eps = tc.optimizer.eps;
  trainer.adamw.weight_decay = 0.0;
  trainer.schedule.warmup_steps = d.warmup_steps;
  trainer.schedule.total_steps = tc.run.steps;
  trainer.schedule.min_lr_ratio = tc.optimizer.min_lr_ratio;
  trainer.clip_norm = tc.optimizer.clip_norm;

  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &lib.model.manifest);
  ThreadPool pool(lib.model.manifest.runtime.threads);
  puzzle::LibraryDistiller distiller(lib.model.manifest, lib.index.layers, lib.model.weights,
                                     registry, pool, trainer, data.batch_size, data.seq_len);
  out << "distil     " << distiller.groups().size() << " groups of variants, "
      << grouped(distiller.parameters()) << " trainable parameters; " << tc.run.steps
      << " steps of " << grouped(per_step) << " parent tokens (" << grouped(tc.run.steps * per_step)
      << " in all), lr " << d.lr << "\n";

  const PackedPart& held_out = corpus.dataset->held_out();
  const std::vector<train::TrainBatch> eval = inputs_of(
      part_batches(held_out, data.batch_size, 0, int64_t{d.eval_batches} * data.batch_size));

  const fs::path checkpoints = tc.run.output / "checkpoints";
  RunStart start;
  const fs::path latest = checkpoints / "latest";
  std::vector<puzzle::LayerLosses> before;
  const fs::path before_file = tc.run.output / "before.json";
  if (const fs::path at = args.force ? fs::path{} : latest_checkpoint(tc.run.output); !at.empty()) {
    distiller.load(at);
    start.step = distiller.steps();
    start.cursor = CursorState::from_text(read_all(at / "cursor.txt"));
    out << "start      resumed from " << at.string() << " after step " << start.step << "\n";
  } else {
    if (args.force) fs::remove_all(tc.run.output, ec);
    out << "start      a new run\n";
  }
  fs::create_directories(checkpoints, ec);
  // Every variant's held-out loss before training (kept for a resumed run's report).
  if (!eval.empty()) {
    if (fs::exists(before_file, ec)) {
      const nlohmann::json j = nlohmann::json::parse(read_all(before_file));
      for (const auto& layer : j) {
        puzzle::LayerLosses l;
        for (const auto& v : layer.at("attention"))
          l.attention.push_back(v.is_null() ? NAN : v.get<double>());
        for (const auto& v : layer.at("ffn")) l.ffn.push_back(v.is_null() ? NAN : v.get<double>());
        before.push_back(std::move(l));
      }
    } else {
      before = distiller.block_losses(eval);
      nlohmann::json j = nlohmann::json::array();
      for (const puzzle::LayerLosses& l : before) {
        nlohmann::json a = nlohmann::json::array(), f = nlohmann::json::array();
        for (const double v : l.attention)
          a.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr));
        for (const double v : l.ffn)
          f.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr));
        j.push_back({{"attention", a}, {"ffn", f}});
      }
      write_file_atomically(before_file, j.dump() + "\n");
    }
  }

  TrainerHooks hooks;
  hooks.step = [&](int64_t, std::span<const Batch> batches) {
    const train::StepStats s = distiller.step(inputs_of(batches));
    return TrainStep{s.loss, s.lr, s.grad_norm, s.tokens};
  };
  hooks.evaluate = [&](std::span<const Batch> batches) {
    int64_t tokens = 0;
    const std::vector<train::TrainBatch> b = inputs_of(batches);
    for (const train::TrainBatch& x : b) tokens += static_cast<int64_t>(x.tokens.size());
    return HeldOutLoss{distiller.evaluate(b), tokens};
  };
  hooks.checkpoint = [&](int64_t step, const CursorState& cursor) {
    const fs::path at = checkpoints / ("step-" + std::to_string(step));
    distiller.save(at);
    write_file_atomically(at / "cursor.txt", cursor.to_text() + "\n");
    write_file_atomically(latest, "step-" + std::to_string(step) + "\n");
    // Test seam: an interruption right after a checkpoint, as a kill there would leave it.
    if (const char* stop = std::getenv("TESSERA_TEST_STOP_AFTER_STEP");
        stop != nullptr && std::to_string(step) == stop)
      throw Error("stopped after step " + std::to_string(step) +
                  " (TESSERA_TEST_STOP_AFTER_STEP); run again to resume");
    for (const auto& entry : fs::directory_iterator(checkpoints)) {
      const std::string n = entry.path().filename().string();
      if (entry.is_directory() && n.rfind("step-", 0) == 0 && entry.path() != at) {
        std::error_code ignored;
        fs::remove_all(entry.path(), ignored);
      }
    }
  };
  RunOutput output;
  output.out = &out;
  output.terminal = ProgressPrinter::stdout_is_terminal();
  const RunOutcome outcome = run_training(tc, *corpus.dataset, hooks, start, output);

  // The distilled library: the same index, the trained weights.
  std::vector<puzzle::LayerLosses> after;
  if (!eval.empty()) after = distiller.block_losses(eval);
  const WeightStore trained = distiller.trained_weights(lib.model.weights);
  puzzle::LibraryIndex distilled = library_index_of(config, config.library_folder());
  LoadedModel meta;
  meta.format = lib.model.format;
  meta.path = lib.model.path;
  meta.manifest = lib.model.manifest;
  meta.manifest.weights.allow_unread = true;  // the parent reads its own; variants lie beside
  meta.tokenizer = lib.model.tokenizer;
  meta.chat_template = lib.model.chat_template;
  nlohmann::ordered_json report;
  report["steps"] = tc.run.steps;
  report["tokens"] = tc.run.steps * per_step;
  report["seconds"] = outcome.seconds;
  report["layers"] = nlohmann::ordered_json::array();
  // Per variant name: mean held-out NMSE before and after over its layers.
  struct Row {
    std::string part, name;
    double before = 0, after = 0;
    int n = 0;
  };
  std::vector<Row> rows;
  for (size_t l = 0; l < after.size(); ++l) {
    nlohmann::ordered_json layer;
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      nlohmann::ordered_json list = nlohmann::ordered_json::array();
      const std::vector<Variant>& vs = distilled.layers[l].of(part);
      for (size_t i = 0; i < vs.size(); ++i) {
        const double b = before.empty() ? NAN : before[l].of(part)[i];
        const double a = after[l].of(part)[i];
        if (!std::isfinite(a)) continue;
        list.push_back({{"name", vs[i].name}, {"before", b}, {"after", a}});
        const std::string p = part == TS_KIND_ATTENTION ? "attention" : "ffn";
        auto it = std::find_if(rows.begin(), rows.end(),
                               [&](const Row& r) { return r.part == p && r.name == vs[i].name; });
        if (it == rows.end()) {
          rows.push_back({p, vs[i].name});
          it = rows.end() - 1;
        }
        it->before += b;
        it->after += a;
        ++it->n;
      }
      layer[part == TS_KIND_ATTENTION ? "attention" : "ffn"] = std::move(list);
    }
    report["layers"].push_back(std::move(layer));
  }
  const uint64_t bytes = write_manifest_folder(
      folder, meta, trained, TS_F32, true,
      {{"library.json", puzzle::library_json(distilled)}, {"distill.json", report.dump(1) + "\n"}});
  char line[256];
  std::snprintf(line, sizeof(line), "  %-9s %-14s %7s  %s\n", "part", "variant", "layers",
                "held-out normalised MSE (mean over layers): before -> after");
  out << line;
  for (const Row& r : rows) {
    std::snprintf(line, sizeof(line), "  %-9s %-14s %7d  %.4f -> %.4f\n", r.part.c_str(),
                  r.name.c_str(), r.n, r.before / r.n, r.after / r.n);
    out << line;
  }
  out << "distilled  " << folder.string() << " ("
      << fixed(static_cast<double>(bytes) / 1048576.0, 1)
      << " MiB; distill.json; log and report in " << tc.run.output.string() << ")\n";
  return 0;
}

// Per variant name: KL and agreement over the layers that have it.
void print_scores(std::ostream& out, const std::vector<LayerVariants>& library,
                  const puzzle::ScoreState& state) {
  struct Row {
    std::string part, name;
    std::vector<double> kl, agreement;
  };
  std::vector<Row> rows;
  for (size_t l = 0; l < library.size(); ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::vector<Variant>& list = library[l].of(part);
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string p = part == TS_KIND_ATTENTION ? "attention" : "ffn";
        auto it = std::find_if(rows.begin(), rows.end(),
                               [&](const Row& r) { return r.part == p && r.name == list[i].name; });
        if (it == rows.end()) {
          rows.push_back({p, list[i].name, {}, {}});
          it = rows.end() - 1;
        }
        const puzzle::ScoreSums& sums = state.layers[l].of(part)[i];
        it->kl.push_back(puzzle::mean_kl(state, sums));
        it->agreement.push_back(puzzle::agreement(state, sums));
      }
    }
  char line[256];
  std::snprintf(line, sizeof(line), "  %-9s %-14s %7s  %-30s %s\n", "part", "variant", "layers",
                "KL to the parent: mean [min, max]", "next-token agreement: mean [min, max]");
  out << line;
  for (const Row& r : rows) {
    std::snprintf(line, sizeof(line), "  %-9s %-14s %7zu  %-30s %s\n", r.part.c_str(),
                  r.name.c_str(), r.kl.size(), mean_min_max(r.kl, 4).c_str(),
                  mean_min_max(r.agreement, 3).c_str());
    out << line;
  }
}

int run_score(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  std::ostream& out = std::cout;
  puzzle::LibraryIndex index = library_index_of(config);
  const fs::path path = config.scores_path();
  std::error_code ec;
  std::optional<puzzle::ScoreFile> previous;
  if (fs::exists(path, ec) && !args.force) {
    previous = puzzle::read_scores(path, index.layers);
    if (previous->complete) {
      out << "scores     " << path.string() << " are complete (" << grouped(previous->state.tokens)
          << " tokens); --force scores again\n";
      return 0;
    }
  }
  OpenedLibrary lib = open_library(config, std::move(index));
  const std::vector<LayerVariants>& library = lib.index.layers;
  const CorpusData corpus = stage_corpus(config, lib.model);
  const DataSection& data = config.data.data;
  out << "library    " << config.stage_library().string() << " ("
      << lib.model.manifest.model.num_layers << " layers)\n";
  out << corpus_text(data, corpus);
  const PackedPart& held_out = corpus.dataset->held_out();
  if (held_out.sequences() == 0)
    throw Error(config.source.string() + ": [data] gives no held-out sequence of " +
                std::to_string(data.seq_len) +
                " tokens; scoring reads held-out text (set held_out_documents or "
                "held_out_fraction)");
  const std::vector<train::TrainBatch> batches = inputs_of(
      part_batches(held_out, data.batch_size, 0, sequences_for(config.score.tokens, data.seq_len)));
  const puzzle::ScorePlan plan{data.seq_len, data.batch_size, static_cast<int64_t>(batches.size())};
  puzzle::ScoreFile scores;
  scores.plan = plan;
  scores.state = puzzle::empty_scores(library);
  if (previous) {
    if (!(previous->plan == plan))
      throw Error(path.string() + " was planned for " + std::to_string(previous->plan.batches) +
                  " batches of " + std::to_string(previous->plan.batch_size) + " x " +
                  std::to_string(previous->plan.seq_len) + " tokens, the config now gives " +
                  std::to_string(plan.batches) + " of " + std::to_string(plan.batch_size) + " x " +
                  std::to_string(plan.seq_len) + "; --force scores again from the start");
    scores = *previous;
    out << "resume     after batch " << scores.state.batches << " of " << plan.batches << " ("
        << grouped(scores.state.tokens) << " tokens scored)\n";
  }
  int64_t per_batch = 0;
  for (const LayerVariants& lv : library)
    for (const std::vector<Variant>* list : {&lv.attention, &lv.ffn})
      for (const Variant& v : *list) per_batch += v.init == puzzle::VariantInit::kParent ? 0 : 1;
  int64_t tokens = 0;
  for (const train::TrainBatch& b : batches) tokens += static_cast<int64_t>(b.tokens.size());
  out << "score      " << per_batch << " variants on " << grouped(tokens) << " held-out tokens ("
      << batches.size() << " batches of up to " << data.batch_size << " x " << data.seq_len
      << "), one parent pass per batch\n";

  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &lib.model.manifest);
  ThreadPool pool(lib.model.manifest.runtime.threads);
  Model model(lib.model.manifest, registry, std::move(lib.model.weights), pool,
              ModelOptions{data.batch_size, data.seq_len});
  fs::create_directories(config.output, ec);
  {
    StageProgress progress(out, "scoring", "variants");
    const int64_t all = per_batch * plan.batches;
    progress.set_base(per_batch * scores.state.batches);
    for (auto b = static_cast<size_t>(scores.state.batches); b < batches.size(); ++b) {
      const auto start = std::chrono::steady_clock::now();
      const std::string prefix =
          "batch " + std::to_string(b + 1) + "/" + std::to_string(batches.size()) + ": ";
      puzzle::score_batch(model, library, batches[b], scores.state, [&](int64_t done, int64_t) {
        progress.show(per_batch * static_cast<int64_t>(b) + done, all, prefix);
      });
      scores.state.seconds += seconds_since(start);
      scores.complete = b + 1 == batches.size();
      write_file_atomically(path, puzzle::scores_json(scores, library));
    }
  }
  if (batches.empty()) {
    scores.complete = true;
    write_file_atomically(path, puzzle::scores_json(scores, library));
  }
  out << "scored     " << grouped(scores.state.tokens) << " tokens in "
      << fixed(scores.state.seconds, 1) << "s\n";
  print_scores(out, library, scores.state);
  out << "scores     " << path.string() << "\n";
  return 0;
}

std::string ms(const puzzle::Timing& t) {
  return fixed(t.seconds * 1e3, 3) + " ms +-" + fixed(t.noise * 100.0, 0) + "%";
}

int run_cost(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  std::ostream& out = std::cout;
  puzzle::LibraryIndex index = library_index_of(config);
  const fs::path path = config.costs_path();
  std::error_code ec;
  if (fs::exists(path, ec) && !args.force) {
    (void)puzzle::read_costs(path, index.layers);  // a damaged file is an error, not a skip
    out << "costs      " << path.string() << " are measured; --force measures again\n";
    return 0;
  }
  OpenedLibrary lib = open_library(config, std::move(index));
  const std::vector<LayerVariants>& library = lib.index.layers;
  const puzzle::Scenario& scenario = config.cost.scenario;
  Manifest manifest = lib.model.manifest;
  manifest.runtime.set_weight_dtype(config.cost.weight_dtype);
  if (config.cost.threads > 0) manifest.runtime.threads = config.cost.threads;
  const int32_t max_b = *std::max_element(scenario.batch_sizes.begin(), scenario.batch_sizes.end());
  const int32_t capacity = scenario.prefill_len + scenario.decode_len;
  if (capacity > manifest.model.max_seq_len)
    throw Error(config.source.string() + ": [cost] prefill_len + decode_len is " +
                std::to_string(capacity) + ", beyond the parent's max_seq_len of " +
                std::to_string(manifest.model.max_seq_len));
  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &manifest);
  ThreadPool pool(manifest.runtime.threads);
  Model model(manifest, registry, std::move(lib.model.weights), pool,
              ModelOptions{max_b, capacity});
  std::string sizes;
  for (const int32_t b : scenario.batch_sizes)
    sizes += (sizes.empty() ? "" : ", ") + std::to_string(b);
  out << "scenario   prefill " << scenario.prefill_len << " tokens, decode " << scenario.decode_len
      << " tokens (steps timed at context " << scenario.decode_context() << "), batch sizes "
      << sizes << "; " << dtype_name(manifest.runtime.weight_dtype) << " weights, " << pool.size()
      << " threads, median of " << scenario.repeats << " after a warm-up\n";
  puzzle::Costs costs;
  {
    StageProgress progress(out, "measuring", "blocks");
    costs = puzzle::measure_costs(model, library, scenario,
                                  [&](int64_t done, int64_t total) { progress.show(done, total); });
  }
  out << "measured   " << costs.measurements << " variant groups in the whole model in "
      << fixed(costs.seconds, 1) << "s\n";
  char line[320];
  for (size_t bi = 0; bi < scenario.batch_sizes.size(); ++bi) {
    out << "batch " << scenario.batch_sizes[bi] << ":\n";
    std::snprintf(line, sizeof(line), "  %-9s %-14s %22s %22s %14s %12s\n", "part", "variant",
                  "prefill", "decode step", "weights", "KV/token");
    out << line;
    std::vector<std::string> seen;
    for (size_t l = 0; l < library.size(); ++l)
      for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
        const std::vector<Variant>& list = library[l].of(part);
        for (size_t i = 0; i < list.size(); ++i) {
          const std::string p = part == TS_KIND_ATTENTION ? "attention" : "ffn";
          if (std::find(seen.begin(), seen.end(), p + list[i].name) != seen.end()) continue;
          seen.push_back(p + list[i].name);
          const puzzle::VariantCost& c = costs.layers[l].of(part)[i];
          std::snprintf(line, sizeof(line), "  %-9s %-14s %22s %22s %14s %12s\n", p.c_str(),
                        list[i].name.c_str(), ms(c.prefill[bi]).c_str(), ms(c.decode[bi]).c_str(),
                        grouped(c.weight_bytes).c_str(), grouped(c.kv_bytes_per_token).c_str());
          out << line;
        }
      }
    out << "  the parent: prefill " << ms(costs.whole_prefill[bi]) << ", decode step "
        << ms(costs.whole_decode[bi]) << "; beyond its blocks (embedding, norms, head): prefill "
        << ms(costs.fixed_prefill[bi]) << ", decode step " << ms(costs.fixed_decode[bi]) << "\n";
  }
  fs::create_directories(config.output, ec);
  write_file_atomically(path, puzzle::costs_json(costs, library));
  out << "costs      " << path.string() << "\n";
  return 0;
}

std::string choice_text(const puzzle::Choice& c) {
  // Runs of equal layers: "0-3 gqa_kv3+swiglu_768, 4 noop+linear, ...".
  std::string out;
  for (size_t l = 0; l < c.size();) {
    size_t e = l;
    while (e + 1 < c.size() && c[e + 1] == c[l]) ++e;
    out += (out.empty() ? "" : ", ") + std::to_string(l) + (e > l ? "-" + std::to_string(e) : "") +
           " " + c[l].first + "+" + c[l].second;
    l = e + 1;
  }
  return out;
}

int run_solve(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  std::ostream& out = std::cout;
  const puzzle::LibraryIndex index = library_index_of(config);
  const std::vector<LayerVariants>& library = index.layers;
  const fs::path path = config.solutions_path();
  std::error_code ec;
  if (fs::exists(path, ec) && !args.force) {
    (void)puzzle::read_solutions(path, library);
    out << "solutions  " << path.string() << " are solved; --force solves again\n";
    return 0;
  }
  for (const fs::path& need : {config.scores_path(), config.costs_path()})
    if (!fs::exists(need, ec))
      throw Error(config.source.string() + ": no " + need.filename().string() + " in " +
                  config.output.string() + "; run `tessera puzzle " +
                  (need == config.scores_path() ? "score" : "cost") + " " + config.source.string() +
                  "` first");
  const puzzle::ScoreFile scores = puzzle::read_scores(config.scores_path(), library);
  if (!scores.complete)
    throw Error(config.scores_path().string() + " is not complete (" +
                std::to_string(scores.state.batches) + " of " +
                std::to_string(scores.plan.batches) + " batches); run `tessera puzzle score " +
                config.source.string() + "` to finish it");
  const puzzle::Costs costs = puzzle::read_costs(config.costs_path(), library);
  const std::vector<int32_t>& sizes = costs.scenario.batch_sizes;
  const auto at = std::find(sizes.begin(), sizes.end(), config.solve.batch_size);
  if (at == sizes.end())
    throw Error(config.source.string() + ": [solve] batch_size " +
                std::to_string(config.solve.batch_size) + " was not measured in " +
                config.costs_path().string() + "; measure again with `tessera puzzle cost " +
                config.source.string() + " --force`");
  const auto batch = static_cast<size_t>(at - sizes.begin());
  const puzzle::SolveSection& solve = config.solve;

  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, nullptr);
  const fs::path docs = config.output / "solve";
  fs::create_directories(docs, ec);
  if (ec) throw Error(docs.string() + ": cannot create: " + ec.message());

  puzzle::Solutions solutions;
  const auto run = [&](const std::string& label, const std::string& provider,
                       const std::string& plugin, const puzzle::Constraints& k) {
    puzzle::SolveRecord rec;
    rec.label = label;
    rec.provider = provider;
    rec.batch_size = config.solve.batch_size;
    rec.decode_speedup = k.decode_speedup;
    rec.prefill_speedup = k.prefill_speedup;
    rec.memory_fraction = k.memory_fraction;
    rec.max_common = k.earlier.empty() ? -1 : k.max_common;
    if (std::string why = puzzle::unreachable_target(library, scores.state, costs, k);
        !why.empty()) {
      rec.reason = std::move(why);
      solutions.records.push_back(rec);
      return rec;
    }
    const std::string problem =
        puzzle::selection_problem(library, scores.state, costs, k,
                                  "tessera puzzle solve " + label + ": " + config.source.string());
    write_file_atomically(docs / (label + ".problem.json"), problem);
    const std::unique_ptr<Search> search = make_search(registry, provider, plugin, {}, nullptr);
    const auto start = std::chrono::steady_clock::now();
    const std::string answer = search->solve(problem);
    rec.seconds = seconds_since(start);
    write_file_atomically(docs / (label + ".solution.json"), answer);
    const puzzle::Selection sel = puzzle::parse_selection(answer, library);
    rec.feasible = sel.feasible;
    rec.reason = sel.reason;
    rec.choice = sel.choice;
    if (sel.feasible)
      rec.predicted = puzzle::predict(sel.choice, library, scores.state, costs, batch);
    solutions.records.push_back(rec);
    return rec;
  };
  puzzle::Constraints main;
  main.batch = batch;
  main.decode_speedup = solve.decode_speedup;
  main.prefill_speedup = solve.prefill_speedup;
  main.memory_fraction = solve.memory_fraction;
  const puzzle::SolveRecord first = run("main", solve.provider, solve.plugin, main);
  for (const std::string& provider : solve.compare)
    if (provider != solve.provider) run(provider, provider, "", main);
  for (const double f : solve.frontier) {
    puzzle::Constraints k = main;
    k.decode_speedup = f;
    std::ostringstream label;
    label << "frontier-" << f;
    run(label.str(), solve.provider, solve.plugin, k);
  }
  if (first.feasible) {
    puzzle::Constraints k = main;
    k.earlier.push_back(first.choice);
    k.max_common = static_cast<int32_t>(
        std::floor(solve.diversity * 2.0 * static_cast<double>(library.size())));
    for (int32_t d = 1; d < solve.solutions; ++d) {
      const puzzle::SolveRecord r =
          run("diverse-" + std::to_string(d), solve.provider, solve.plugin, k);
      if (!r.feasible) break;
      k.earlier.push_back(r.choice);
    }
  }
  write_file_atomically(path, puzzle::solutions_json(solutions));

  out << "budgets    at batch " << solve.batch_size << ": decode "
      << (solve.decode_speedup > 0 ? fixed(solve.decode_speedup, 2) + "x the parent" : "free")
      << ", prefill "
      << (solve.prefill_speedup > 0 ? fixed(solve.prefill_speedup, 2) + "x" : "free") << ", memory "
      << (solve.memory_fraction > 0 ? fixed(solve.memory_fraction, 2) + "x" : "free") << "\n";
  char line[320];
  std::snprintf(line, sizeof(line), "  %-16s %-11s %-7s %10s %9s %9s %8s %9s\n", "solution",
                "provider", "status", "sum of KL", "decode", "prefill", "memory", "seconds");
  out << line;
  for (const puzzle::SolveRecord& r : solutions.records) {
    const puzzle::Prediction& p = r.predicted;
    std::snprintf(line, sizeof(line), "  %-16s %-11s %-7s %10s %9s %9s %8s %9s\n", r.label.c_str(),
                  r.provider.c_str(), r.feasible ? "found" : "none",
                  r.feasible ? fixed(p.kl, 4).c_str() : "-",
                  r.feasible ? (fixed(p.decode_speedup, 3) + "x").c_str() : "-",
                  r.feasible ? (fixed(p.prefill_speedup, 3) + "x").c_str() : "-",
                  r.feasible ? (fixed(p.memory_fraction, 3) + "x").c_str() : "-",
                  fixed(r.seconds, 3).c_str());
    out << line;
    if (!r.feasible) out << "    " << r.reason << "\n";
  }
  if (first.feasible) out << "main child " << choice_text(first.choice) << "\n";
  out << "solutions  " << path.string() << " (problems and answers in " << docs.string() << ")\n";
  return 0;
}

}  // namespace

fs::path realize_solution(const PuzzleArgs& args, const puzzle::PuzzleConfig& config,
                          const std::string& label, bool force, std::ostream& out) {
  puzzle::LibraryIndex index = library_index_of(config);
  std::error_code ec;
  if (!fs::exists(config.solutions_path(), ec))
    throw Error(config.source.string() + ": no solutions.json in " + config.output.string() +
                "; run `tessera puzzle solve " + config.source.string() + "` first");
  const puzzle::Solutions solutions = puzzle::read_solutions(config.solutions_path(), index.layers);
  const puzzle::SolveRecord* record = solutions.find(label);
  if (record == nullptr) {
    std::string labels;
    for (const puzzle::SolveRecord& r : solutions.records)
      labels += (labels.empty() ? "" : ", ") + r.label;
    throw Error(config.solutions_path().string() + " has no solution '" + label + "'; it has " +
                labels);
  }
  if (!record->feasible)
    throw Error("solution '" + label + "' found no child (" + record->reason +
                "); change the budgets in [solve] and solve again with --force");
  const bool main = label == solutions.main;
  fs::path folder = main ? config.child_folder() : config.output / ("child-" + label);
  if (fs::exists(folder / "manifest.toml", ec) && !force) {
    out << "child      " << folder.string() << " is realised; --force realises it again\n";
    return folder;
  }
  OpenedLibrary lib = open_library(config, std::move(index));
  Manifest child_spec =
      puzzle::child_manifest(lib.model.manifest, lib.index.layers, record->choice);
  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &child_spec);
  const WeightPlan plan = plan_weights(child_spec, registry);
  puzzle::RealizedChild child = puzzle::realize_child(plan, lib.model.weights);
  child.manifest.model.name = lib.model.manifest.model.name + "-puzzle-" + label;
  child.manifest.runtime.set_weight_dtype(config.cost.weight_dtype);
  LoadedModel meta;
  meta.format = lib.model.format;
  meta.path = lib.model.path;
  meta.manifest = child.manifest;
  meta.manifest.weights.allow_unread = false;  // a realised child holds only what it reads
  meta.tokenizer = lib.model.tokenizer;
  meta.chat_template = lib.model.chat_template;
  nlohmann::ordered_json about = {{"solution", label}, {"provider", record->provider}};
  about["layers"] = nlohmann::ordered_json::array();
  for (const auto& [a, f] : record->choice)
    about["layers"].push_back({{"attention", a}, {"ffn", f}});
  const uint64_t bytes = write_manifest_folder(folder, meta, child.weights, std::nullopt, true,
                                               {{"puzzle.json", about.dump(1) + "\n"}});
  out << "child      " << folder.string() << " (" << choice_text(record->choice) << "; "
      << grouped(plan.parameters()) << " parameters, "
      << fixed(static_cast<double>(bytes) / 1048576.0, 1) << " MiB)\n";
  if (!main) return folder;
  HfWriteOptions hf;
  hf.always_decilm = true;
  hf.overwrite = true;
  hf.tokenizer = tokenizer_files(meta);
  try {
    const HfWriteResult r = write_hf_model(config.child_hf_folder(), plan, lib.model.weights, hf);
    out << "child-hf   " << config.child_hf_folder().string() << " (" << r.architecture << ", "
        << r.files.size() << " files)\n";
  } catch (const Error& e) {
    out << "child-hf   not written: " << e.what()
        << "\n           (DeciLM expresses FFN widths that are multiples of 256; docs/puzzle.md)\n";
  }
  return folder;
}

namespace {

int run_realize(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  const puzzle::LibraryIndex index = library_index_of(config);  // the library before the rest
  std::string label = args.solution;
  if (label.empty()) {
    std::error_code ec;
    if (!fs::exists(config.solutions_path(), ec))
      throw Error(config.source.string() + ": no solutions.json in " + config.output.string() +
                  "; run `tessera puzzle solve " + config.source.string() + "` first");
    label = puzzle::read_solutions(config.solutions_path(), index.layers).main;
  }
  (void)realize_solution(args, config, label, args.force, std::cout);
  return 0;
}

// Always written again: it only reads the other artefacts, and says which stages have not run.
int run_report(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  std::error_code ec;
  fs::create_directories(config.output, ec);
  const fs::path path = puzzle::report_path(config);
  write_file_atomically(path, puzzle::puzzle_report_html(puzzle::read_report_inputs(config)));
  std::cout << "report     " << path.string() << "\n";
  return 0;
}

// Every stage in order; each skips when its artefact is there (--force applies to none of
// them: remove an artefact, or run its stage with --force, to redo it).
// The stages in the order `run` chains them, with what `tessera puzzle --help` says of each.
struct Stage {
  const char* name;
  const char* help;
  const char* force;  // what --force does
  int (*run)(const PuzzleArgs&);
};

constexpr Stage kStages[] = {
    {"library",
     "Build the block library: every layer's cheaper variants, initialised from the parent on "
     "calibration text",
     "Build the library again even if it is there", run_library},
    {"distill",
     "Blockwise distillation of every trainable variant against the parent's block ([distill] "
     "tokens); resumes from its last checkpoint",
     "Distil again from the start", run_distill},
    {"score",
     "Replace-1-block scores: every variant in the otherwise unchanged parent, KL to the "
     "parent's next-token distribution and agreement on held-out text",
     "Score again from the start", run_score},
    {"cost",
     "Measure every variant's prefill and decode time and its bytes for the config's scenario",
     "Measure again", run_cost},
    {"solve",
     "Choose a variant per layer under the config's budgets with a search plugin, beside the "
     "compared providers, the frontier and diverse solutions",
     "Solve again", run_solve},
    {"realize", "Write the chosen child as a manifest folder and as DeciLM safetensors",
     "Realise again", run_realize},
    {"global-distill",
     "Global distillation of the child against the parent: cosine on every layer's hidden "
     "states plus KL on the logits ([global_distill] tokens); resumes from its last checkpoint",
     "Distil again from the start", run_global_distill},
    {"evaluate",
     "Parent and children side by side: held-out KL, agreement, perplexity and MMLU, and the "
     "scenario's prefill and decode speed",
     "Evaluate again", run_evaluate},
    {"report",
     "Write report.html: the accuracy/throughput frontier, the main child's layers and every "
     "stage's tables, from whatever the output folder holds",
     "(none: the report is always written again)", run_report},
};

// Every stage in order; each skips when its artefact is there (--force applies to none of
// them: remove an artefact, or run its stage with --force, to redo it).
int run_all(const PuzzleArgs& args) {
  PuzzleArgs each = args;
  each.force = false;
  const auto start = std::chrono::steady_clock::now();
  for (const Stage& stage : kStages) {
    std::cout << "\n==> tessera puzzle " << stage.name << " " << args.config << "\n";
    const auto stage_start = std::chrono::steady_clock::now();
    const int rc = stage.run(each);
    std::cout << "<== " << stage.name << ": " << fixed(seconds_since(stage_start), 1) << "s\n";
    if (rc != 0) return rc;
  }
  std::cout << "\nthe pipeline ran in " << format_duration(seconds_since(start)) << "\n";
  return 0;
}

}  // namespace

Runner add_puzzle_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "puzzle", "The Puzzle pipeline: build a faster child of a parent model (docs/puzzle.md)");
  cmd->require_subcommand(1);
  auto args = std::make_shared<PuzzleArgs>();
  const auto add = [&](const char* name, const char* help) {
    auto* sub = cmd->add_subcommand(name, help);
    sub->add_option("config", args->config, "Puzzle config (.toml); docs/puzzle.md")->required();
    sub->add_option("--plugin-path", args->plugin_paths, "Extra folder to search for plugins")
        ->check(CLI::ExistingDirectory);
    return sub;
  };
  std::vector<std::pair<CLI::App*, int (*)(const PuzzleArgs&)>> commands;
  for (const Stage& stage : kStages) {
    CLI::App* sub = add(stage.name, stage.help);
    sub->add_flag("--force", args->force, stage.force);
    if (stage.run == run_realize)
      sub->add_option("--solution", args->solution,
                      "Which solution of solutions.json (default: the main one)");
    commands.emplace_back(sub, stage.run);
  }
  commands.emplace_back(add("run",
                            "Every stage in order (library, distill, score, cost, solve, realize, "
                            "global-distill, evaluate, report), skipping those already done"),
                        run_all);
  return [args, commands] {
    for (const auto& [sub, run] : commands)
      if (sub->parsed()) return run(*args);
    return 1;
  };
}

}  // namespace tessera::cli
