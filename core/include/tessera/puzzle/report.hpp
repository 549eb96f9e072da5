// The Puzzle report: one self-contained HTML page (no scripts, no external files; well-formed
// XML) of what a run's output folder holds, written by `tessera puzzle report`:
//
//   the stages    which have run, and the command of each that has not
//   frontier      accuracy against throughput: every solution's predicted KL and decode
//                 speedup, the frontier's line, the evaluated children as measured
//                 (frontier_plot.hpp)
//   architecture  the main child's layers as a picture (architecture_plot.hpp) and a table
//   solutions     every search: provider, budgets, whether it found a child, its predictions
//   evaluation    the children measured beside the parent: quality, speed, predicted against
//                 measured
//   scores        the replace-1-block KL and agreement per variant (mean, min, max over layers)
//   costs         the measured decode and prefill time and bytes per variant
//   library       the variants and how they were made; blockwise distillation's before/after
//
// A section whose artefact is missing says which stage to run; one whose artefact cannot be
// read says why. Neither is an error: the report can be written after any stage.
#pragma once

#include <tessera/puzzle/cost_file.hpp>
#include <tessera/puzzle/distill_file.hpp>
#include <tessera/puzzle/evaluation_file.hpp>
#include <tessera/puzzle/library_index.hpp>
#include <tessera/puzzle/puzzle_config.hpp>
#include <tessera/puzzle/score_file.hpp>
#include <tessera/puzzle/solution_file.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace tessera::puzzle {

// An artefact as the report found it: read, missing (neither set: its stage has not run) or
// there but unreadable (`error`).
template <typename T>
struct ReportArtefact {
  std::optional<T> value;
  std::string error;
};

struct ReportInputs {
  std::string config;     // the config's path, as the page's commands name it
  std::string output;     // the output folder, shown
  bool distills = false;  // [distill] tokens > 0: the later stages read library-distilled/
  bool library_is_distilled = false;  // `library` was read from library-distilled/
  ReportArtefact<LibraryIndex> library;
  ReportArtefact<DistillSummary> distill;  // library-distilled/distill.json
  ReportArtefact<ScoreFile> scores;
  ReportArtefact<Costs> costs;
  ReportArtefact<Solutions> solutions;
  ReportArtefact<Evaluation> evaluation;
};

// What the config's output folder holds. The library index is the one the later stages read
// (library/ when the distilled one is not there yet); scores, costs and solutions are read
// against it. Never throws for an artefact that is missing or cannot be read.
ReportInputs read_report_inputs(const PuzzleConfig& config);

// The page.
std::string puzzle_report_html(const ReportInputs& inputs);

// Where `tessera puzzle report` writes the page: <output>/report.html.
std::filesystem::path report_path(const PuzzleConfig& config);

}  // namespace tessera::puzzle
