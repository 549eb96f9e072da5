// tessera puzzle STAGE CONFIG.toml: the Puzzle pipeline's stages (docs/puzzle.md), each reading
// and writing a versioned artefact in the config's output folder.
//
//   library   the block library: every layer's cheaper variants, initialised from the parent on
//             calibration text (pruning, KV-head pooling, least squares), written as a manifest
//             folder holding the parent and every variant, with library.json beside it
#include <tessera/engine/error.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/puzzle/calibration.hpp>
#include <tessera/puzzle/library.hpp>
#include <tessera/puzzle/library_index.hpp>
#include <tessera/puzzle/puzzle_config.hpp>
#include <tessera/train/progress.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "corpus_data.hpp"
#include "model_folder.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;
using puzzle::LayerVariants;
using puzzle::Variant;

struct PuzzleArgs {
  std::string config;
  bool force = false;
  std::vector<std::string> plugin_paths;
};

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The first sequences of the train part, `batch_size` per batch, until `tokens` are covered.
std::vector<train::TrainBatch> calibration_batches(const TokenDataset& data, int32_t batch_size,
                                                   int64_t tokens) {
  const PackedPart& part = data.train();
  const int32_t len = part.seq_len;
  const int64_t wanted = std::min<int64_t>(part.sequences(), (tokens + len - 1) / len);
  std::vector<train::TrainBatch> out;
  for (int64_t first = 0; first < wanted; first += batch_size) {
    const int64_t count = std::min<int64_t>(batch_size, wanted - first);
    train::TrainBatch b;
    b.offsets.push_back(0);
    for (int64_t s = first; s < first + count; ++s) {
      const auto seq = part.sequence(s).first(static_cast<size_t>(len));
      b.tokens.insert(b.tokens.end(), seq.begin(), seq.end());
      b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
    }
    out.push_back(std::move(b));
  }
  return out;
}

// One line per variant name: how it was made, its parameters per layer and its fit.
void print_library(std::ostream& out, const std::vector<LayerVariants>& library) {
  struct Row {
    std::string part, name, init;
    int64_t parameters = 0;
    int layers = 0;
    double fit_sum = 0, fit_min = INFINITY, fit_max = -INFINITY;
    int fits = 0;
  };
  std::vector<Row> rows;
  for (const LayerVariants& lv : library) {
    for (const std::vector<Variant>* list : {&lv.attention, &lv.ffn}) {
      for (const Variant& v : *list) {
        const std::string part = v.part == TS_KIND_ATTENTION ? "attention" : "ffn";
        auto it = std::find_if(rows.begin(), rows.end(),
                               [&](const Row& r) { return r.part == part && r.name == v.name; });
        if (it == rows.end()) {
          rows.push_back({part, v.name, std::string(puzzle::to_string(v.init)), v.parameters});
          it = rows.end() - 1;
        }
        ++it->layers;
        if (std::isfinite(v.fit_nmse)) {
          it->fit_sum += v.fit_nmse;
          it->fit_min = std::min(it->fit_min, v.fit_nmse);
          it->fit_max = std::max(it->fit_max, v.fit_nmse);
          ++it->fits;
        }
      }
    }
  }
  char line[256];
  std::snprintf(line, sizeof(line), "  %-9s %-14s %-13s %7s %12s  %s\n", "part", "variant", "init",
                "layers", "params/layer", "calibration fit (normalised MSE: mean [min, max])");
  out << line;
  for (const Row& r : rows) {
    const std::string fit = r.fits == 0
                                ? "-"
                                : fixed(r.fit_sum / r.fits, 4) + " [" + fixed(r.fit_min, 4) + ", " +
                                      fixed(r.fit_max, 4) + "]";
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
      calibration_batches(*corpus.dataset, data.batch_size, config.library.calibration_tokens);
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
  manifest.runtime.weight_dtype = TS_F32;  // the initialisers read f32, the library keeps f32
  Model model(manifest, registry, std::move(parent.weights), pool,
              ModelOptions{data.batch_size, data.seq_len});

  const auto start = std::chrono::steady_clock::now();
  const bool terminal = ProgressPrinter::stdout_is_terminal();
  int64_t shown = 0;
  const puzzle::Calibration calibration = puzzle::calibrate(model, batches, [&](int64_t tokens) {
    const double s = seconds_since(start);
    const double rate = static_cast<double>(tokens) / std::max(s, 1e-9);
    const std::string line =
        "calibrating " + grouped(tokens) + "/" + grouped(calibration_tokens) + " tokens  " +
        fixed(rate, 0) + " tok/s  ETA " +
        format_duration(static_cast<double>(calibration_tokens - tokens) / rate);
    if (terminal) {
      out << "\r" << line << "\x1b[K" << std::flush;
    } else if (tokens == calibration_tokens || tokens - shown >= calibration_tokens / 4) {
      out << line << "\n";
      shown = tokens;
    }
  });
  if (terminal) out << "\n";
  const double calibration_seconds = seconds_since(start);

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

}  // namespace

Runner add_puzzle_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "puzzle", "The Puzzle pipeline: build a faster child of a parent model (docs/puzzle.md)");
  cmd->require_subcommand(1);
  auto args = std::make_shared<PuzzleArgs>();
  auto* library = cmd->add_subcommand(
      "library",
      "Build the block library: every layer's cheaper variants, initialised from the "
      "parent on calibration text");
  library->add_option("config", args->config, "Puzzle config (.toml); docs/puzzle.md")->required();
  library->add_flag("--force", args->force, "Build the library again even if it is there");
  library->add_option("--plugin-path", args->plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  return [args, library] {
    if (library->parsed()) return run_library(*args);
    return 1;
  };
}

}  // namespace tessera::cli
