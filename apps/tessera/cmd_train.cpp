// tessera train CONFIG.toml: checks a training config, opens the model (and the parent of the
// distill objectives), reads, tokenises and splits the corpus, and says what the run would do
// (--dry-run stops there); then trains: run_training (train/train_run.hpp) over the hooks of
// a TrainSession (train_session.hpp), and writes the trained model beside the report.
#include <tessera/engine/error.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/train/batches.hpp>
#include <tessera/train/corpus.hpp>
#include <tessera/train/progress.hpp>
#include <tessera/train/train_config.hpp>
#include <tessera/train/train_run.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "corpus_data.hpp"
#include "setup.hpp"
#include "train_session.hpp"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

struct TrainArgs {
  std::string config;
  bool dry_run = false;
  std::vector<std::string> plugin_paths;
};

std::string number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

[[noreturn]] void fail_at(const SourceLocation& where, const std::string& message) {
  throw ManifestError(where.file, where.line, where.column, message);
}

// Opens a model the config names; a model without a tokenizer cannot read text.
LoadedModel open_config_model(const TrainConfig& config, const std::string& key,
                              const fs::path& path, bool needs_tokenizer) {
  LoadedModel model;
  try {
    model = open_model(path);
  } catch (const Error& e) {
    fail_at(config.location(key), std::string("cannot open ") + path.string() + ": " + e.what());
  }
  if (needs_tokenizer && !model.tokenizer) {
    fail_at(config.location(key),
            "the model " + path.string() + " has no tokenizer" +
                (model.tokenizer_error.empty() ? "" : " (" + model.tokenizer_error + ")") +
                "; the text is read with the model's tokenizer (for the distill objectives, the "
                "parent's when the model has none): a GGUF file, a Hugging Face folder with "
                "tokenizer.json, or a manifest with format = \"gguf\" weights has one");
  }
  return model;
}

// The weight names a freeze pattern is checked against: the model's, or for random weights
// what its blocks declare.
std::vector<std::string> weight_names(const LoadedModel& model,
                                      const std::vector<std::string>& plugin_paths) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : model.weights.all()) names.push_back(name);
  if (names.empty() && model.manifest.weights.format == "random") {
    PluginRegistry registry;
    load_plugins(registry, plugin_paths, &model.manifest);
    for (const PlannedTensor& t : plan_for(model.manifest, registry).tensors) {
      names.push_back(t.name);
    }
  }
  return names;
}

std::string model_text(const LoadedModel& m) {
  const ModelSpec& s = m.manifest.model;
  return m.path.string() + " (" + std::string(to_string(m.format)) + ", " +
         std::to_string(s.num_layers) + " layers, hidden " + std::to_string(s.hidden_size) +
         ", vocab " + std::to_string(s.vocab_size) + ", max_seq_len " +
         std::to_string(s.max_seq_len) + ")";
}

std::string part_text(const PackedPart& part) {
  return std::to_string(part.documents.size()) + " documents, " + grouped(part.text_tokens) +
         " tokens, " + grouped(part.sequences()) + " sequences";
}

// What write_model needs of the source besides its weights (which the session takes).
LoadedModel metadata_of(const LoadedModel& model) {
  LoadedModel m;
  m.format = model.format;
  m.path = model.path;
  m.manifest = model.manifest;
  m.tokenizer = model.tokenizer;
  m.chat_template = model.chat_template;
  m.architecture = model.architecture;
  return m;
}

int run_train(const TrainArgs& args) {
  const TrainConfig config = load_train_config(args.config);
  const DataSection& data = config.data;
  const OptimizerSection& opt = config.optimizer;

  // The output folder: a run that is there is continued only when asked to.
  std::error_code ec;
  if (!config.run.resume && fs::exists(config.run.output / "log.jsonl", ec)) {
    fail_at(config.location("run.output"),
            "the output folder " + config.run.output.string() +
                " already holds a run (log.jsonl); set resume = true in [run] to continue it, or "
                "choose another folder");
  }

  // Distillation may read the text with the parent's tokenizer: a child drawn from its parent
  // (random weights, pruned blocks) has the parent's vocabulary but often no tokenizer files.
  const bool distills = has_parent(config.run.objective);
  LoadedModel model = open_config_model(config, "model.path", config.model, !distills);
  std::optional<LoadedModel> parent;
  if (distills) {
    parent = open_config_model(config, "parent.path", config.parent, model.tokenizer == nullptr);
    if (!model.tokenizer) {
      model.tokenizer = parent->tokenizer;
      model.chat_template = parent->chat_template;
    }
  }
  const Tokenizer& tokenizer = *model.tokenizer;
  const int32_t separator =
      check_train_config(config, model.manifest, tokenizer, weight_names(model, args.plugin_paths),
                         parent ? &parent->manifest : nullptr);

  const CorpusData corpus_data = load_corpus_data(data, tokenizer, separator, model.manifest.model);
  const TokenDataset& dataset = *corpus_data.dataset;

  const int64_t sequences_per_step = static_cast<int64_t>(data.batch_size) * opt.grad_accumulation;
  const int64_t tokens_per_step = sequences_per_step * data.seq_len;
  const double epochs = static_cast<double>(sequences_per_step * config.run.steps) /
                        static_cast<double>(dataset.train().sequences());

  std::ostream& out = std::cout;
  out << "config     " << config.source.string() << " (objective "
      << to_string(config.run.objective) << ")\n";
  out << "model      " << model_text(model) << "\n";
  if (parent) out << "parent     " << model_text(*parent) << "\n";
  out << corpus_text(data, corpus_data);
  out << "separator  " << tokenizer.token_text(separator) << " (id " << separator
      << ") after every document\n";
  out << "train      " << part_text(dataset.train()) << " of " << data.seq_len << " (+1) tokens\n";
  if (dataset.held_out().sequences() > 0) {
    const std::vector<Batch> eval =
        held_out_batches(dataset.held_out(), data.batch_size, data.eval_batches);
    int64_t eval_sequences = 0;
    for (const Batch& b : eval) eval_sequences += b.size();
    out << "held-out   " << part_text(dataset.held_out()) << "; each measurement scores "
        << grouped(eval_sequences * data.seq_len) << " tokens ("
        << (data.eval_every > 0 ? "every " + std::to_string(data.eval_every) + " steps and "
                                : std::string())
        << "after the last)\n";
  } else {
    out << "held-out   none\n";
  }
  out << "steps      " << grouped(config.run.steps) << " x " << sequences_per_step
      << " sequences (batch " << data.batch_size << " x grad_accumulation " << opt.grad_accumulation
      << ") = " << grouped(tokens_per_step) << " tokens per step, "
      << grouped(tokens_per_step * config.run.steps) << " in all, " << fixed(epochs, 2)
      << " epochs of the train part\n";
  out << "optimizer  AdamW lr " << number(opt.lr) << ", betas (" << number(opt.beta1) << ", "
      << number(opt.beta2) << "), eps " << number(opt.eps) << ", weight_decay "
      << number(opt.weight_decay) << ", clip_norm " << number(opt.clip_norm) << "; "
      << opt.warmup_steps << " warmup steps, " << to_string(opt.schedule) << " to "
      << number(opt.lr * opt.min_lr_ratio) << "\n";
  out << "recompute  " << to_string(config.recompute) << "\n";
  if (!config.freeze.empty()) {
    out << "freeze    ";
    for (const std::string& p : config.freeze) out << " " << p;
    out << "\n";
  }
  for (const TrainBlocks& b : config.blocks) {
    out << "blocks     " << b.part << " of layers " << b.first_layer << "-" << b.last_layer
        << (b.kind.empty() ? "" : " kind " + b.kind)
        << (b.prefix.empty() ? "" : " prefix " + b.prefix) << "\n";
  }
  if (config.run.objective == TrainObjective::kMedusa) {
    out << "medusa     " << config.medusa.heads << " heads of " << config.medusa.layers
        << " ResBlock(s), loss weight " << number(config.medusa.decay)
        << "^k, targets: the base model's own distribution (self-distillation)\n";
  }
  if (config.run.objective == TrainObjective::kDistill) {
    out << "distill    kl " << number(config.distill.kl) << ", cosine "
        << number(config.distill.cosine) << ", temperature " << number(config.distill.temperature)
        << "\n";
  }
  out << "output     " << config.run.output.string()
      << (config.run.resume ? " (resumed)" : " (a new run)") << "\n";
  if (args.dry_run) {
    out << "dry run: nothing trained\n";
    return 0;
  }

  const LoadedModel source = metadata_of(model);
  TrainSession session(config, model, parent ? &*parent : nullptr, args.plugin_paths);
  std::string start_note;
  const RunStart start = session.start(&start_note);
  out << "trains     " << session.trainable_text() << "\n";
  out << "start      " << start_note << "\n";
  RunOutput output;
  output.out = &std::cout;
  output.terminal = ProgressPrinter::stdout_is_terminal();
  const RunOutcome outcome = run_training(config, dataset, session.hooks(), start, output);
  const std::string memory = session.memory_text();
  if (!memory.empty()) out << memory << (memory.back() == '\n' ? "" : "\n");
  if (session.trains_medusa()) {
    out << session.medusa_text();
    out << "heads      " << session.write_medusa_heads().string()
        << " (tessera generate --decoder medusa --decoder-weights DIR)\n";
  } else {
    out << "model      " << session.write_model(source).string() << " (the trained weights)\n";
  }
  out << "report     " << outcome.report.string() << "\n";
  return 0;
}

}  // namespace

Runner add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model on a corpus as a config describes");
  auto args = std::make_shared<TrainArgs>();
  cmd->add_option("config", args->config, "Training config (.toml); docs/training.md")->required();
  cmd->add_flag("--dry-run", args->dry_run,
                "Check the config, the models and the data, and say what the run would do");
  cmd->add_option("--plugin-path", args->plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  return [args] { return run_train(*args); };
}

}  // namespace tessera::cli
