// tessera puzzle global-distill: global knowledge distillation (GKD) of the realised child
// against the parent (docs/puzzle.md, stage 7): the child whole, every weight trained, on the
// sum over layers of cosine x (1 - cos(child hidden, parent hidden)) plus kl x KL(parent ||
// child) over the logits, for [global_distill] tokens of the train part. It is `tessera
// train`'s distill objective and loop (progress, held-out measurements, checkpoints it resumes
// from, log and report in global-distill/); the trained child goes to child-gkd/.
#include <tessera/engine/error.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/train/progress.hpp>
#include <tessera/train/train_run.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "puzzle_stage.hpp"
#include "train_session.hpp"

namespace tessera::cli {

namespace fs = std::filesystem;

int run_global_distill(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  std::ostream& out = std::cout;
  const puzzle::GlobalDistillSection& g = config.global_distill;
  if (g.tokens == 0) {
    out << "gkd        [global_distill] tokens is 0 (or absent): the child stays as realised\n";
    return 0;
  }
  const fs::path destination = config.distilled_child_folder();
  std::error_code ec;
  if (fs::exists(destination / "manifest.toml", ec) && !args.force) {
    out << "gkd        " << destination.string() << " is trained; --force trains it again\n";
    return 0;
  }
  const fs::path child_folder = config.child_folder();
  if (!fs::exists(child_folder / "manifest.toml", ec))
    throw Error(config.source.string() + ": no child in " + child_folder.string() +
                "; run `tessera puzzle realize " + config.source.string() + "` first");

  const DataSection& data = config.data.data;
  TrainConfig tc =
      distill_train_config(config, g, TrainObjective::kDistill, config.output / "global-distill");
  const int64_t per_step = static_cast<int64_t>(data.batch_size) * data.seq_len;
  tc.model = child_folder;
  tc.parent = config.parent;
  tc.distill.kl = g.kl;
  tc.distill.cosine = g.cosine;
  // A run with a checkpoint resumes from it; one without (stopped before its first) starts
  // again, so its log holds one run.
  if (args.force || latest_checkpoint(tc.run.output).empty()) fs::remove_all(tc.run.output, ec);
  tc.run.resume = true;

  LoadedModel child = open_model(child_folder);
  LoadedModel parent = open_model(config.parent);
  const CorpusData corpus = stage_corpus(config, parent);
  if (!child.tokenizer) {
    child.tokenizer = parent.tokenizer;
    child.chat_template = parent.chat_template;
  }
  LoadedModel source;
  source.format = child.format;
  source.path = child.path;
  source.manifest = child.manifest;
  source.tokenizer = child.tokenizer;
  source.chat_template = child.chat_template;
  nlohmann::ordered_json about = nlohmann::json::parse(read_all(child_folder / "puzzle.json"));

  out << "child      " << child_folder.string() << " (solution "
      << about.value("solution", std::string("?")) << ")\nparent     " << config.parent.string()
      << "\n"
      << corpus_text(data, corpus);
  out << "gkd        " << tc.run.steps << " steps of " << grouped(per_step) << " tokens ("
      << grouped(tc.run.steps * per_step) << " in all), kl " << g.kl << ", cosine " << g.cosine
      << ", lr " << g.lr << "\n";
  TrainSession session(tc, child, &parent, args.plugin_paths);
  std::string note;
  const RunStart start = session.start(&note);
  out << "trains     " << session.trainable_text() << "\nstart      " << note << "\n";
  RunOutput output;
  output.out = &out;
  output.terminal = ProgressPrinter::stdout_is_terminal();
  TrainerHooks hooks = session.hooks();
  // Test seam: an interruption right after a checkpoint, as a kill there would leave it.
  if (const char* stop = std::getenv("TESSERA_TEST_STOP_AFTER_STEP"); stop != nullptr) {
    hooks.checkpoint = [save = hooks.checkpoint, at = std::string(stop)](
                           int64_t step, const CursorState& cursor) {
      save(step, cursor);
      if (std::to_string(step) == at)
        throw Error("stopped after step " + at +
                    " (TESSERA_TEST_STOP_AFTER_STEP); run again to "
                    "resume");
    };
  }
  const RunOutcome outcome = run_training(tc, *corpus.dataset, hooks, start, output);

  about["global_distill"] = {{"steps", tc.run.steps},
                             {"tokens", tc.run.steps * per_step},
                             {"kl_weight", g.kl},
                             {"cosine_weight", g.cosine},
                             {"seconds_this_process", outcome.seconds}};
  if (outcome.held_out_loss) about["global_distill"]["held_out_loss"] = *outcome.held_out_loss;
  session.write_model(source, destination, {{"puzzle.json", about.dump(1) + "\n"}});
  out << "gkd        " << destination.string() << " (the child after global distillation; log "
      << "and report in " << tc.run.output.string() << ")\n";
  return 0;
}

}  // namespace tessera::cli
