#include <tessera/engine/error.hpp>
#include <tessera/formats/model_source.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "model_folder.hpp"
#include "puzzle_stage.hpp"

namespace tessera::cli {

namespace fs = std::filesystem;

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<Batch> part_batches(const PackedPart& part, int32_t batch_size, int64_t first,
                                int64_t count) {
  const int64_t end = std::min(part.sequences(), first + count);
  std::vector<Batch> out;
  for (int64_t s = first; s < end; s += batch_size)
    out.push_back(batch_of(part, s, std::min<int64_t>(batch_size, end - s)));
  return out;
}

int64_t sequences_for(int64_t tokens, int32_t seq_len) {
  return (tokens + seq_len - 1) / seq_len;
}

train::TrainBatch inputs_of(const Batch& batch) {
  train::TrainBatch t;
  t.offsets.push_back(0);
  for (int32_t i = 0; i < batch.size(); ++i) {
    const auto in = batch.inputs(i);
    t.tokens.insert(t.tokens.end(), in.begin(), in.end());
    t.offsets.push_back(static_cast<int32_t>(t.tokens.size()));
  }
  return t;
}

std::vector<train::TrainBatch> inputs_of(std::span<const Batch> batches) {
  std::vector<train::TrainBatch> out;
  for (const Batch& b : batches) out.push_back(inputs_of(b));
  return out;
}

puzzle::LibraryIndex library_index_of(const puzzle::PuzzleConfig& config, fs::path folder) {
  if (folder.empty()) folder = config.stage_library();
  const fs::path index = folder / "library.json";
  std::error_code ec;
  if (!fs::exists(index, ec)) {
    const bool distilled = folder == config.distilled_folder();
    throw Error(config.source.string() + ": no " +
                (distilled ? "distilled block library" : "block library") + " in " +
                folder.string() + "; build it first with `tessera puzzle " +
                (distilled ? "distill " : "library ") + config.source.string() + "`");
  }
  return puzzle::read_library_index(index);
}

OpenedLibrary open_library(const puzzle::PuzzleConfig& config, puzzle::LibraryIndex index,
                           fs::path folder) {
  if (folder.empty()) folder = config.stage_library();
  OpenedLibrary o;
  o.index = std::move(index);
  o.model = open_model(folder);
  if (o.model.manifest.model.num_layers != static_cast<int32_t>(o.index.layers.size()))
    throw Error(folder.string() + ": the model has " +
                std::to_string(o.model.manifest.model.num_layers) +
                " layers but library.json lists " + std::to_string(o.index.layers.size()) +
                "; build the library again with --force");
  return o;
}

CorpusData stage_corpus(const puzzle::PuzzleConfig& config, const LoadedModel& model) {
  if (!model.tokenizer)
    throw Error(model.path.string() + " has no tokenizer (" + model.tokenizer_error +
                "); the stages read text with the parent's tokenizer");
  const int32_t separator =
      check_train_config(config.data, model.manifest, *model.tokenizer, {}, nullptr);
  return load_corpus_data(config.data.data, *model.tokenizer, separator, model.manifest.model);
}

std::string read_all(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

TrainConfig distill_train_config(const puzzle::PuzzleConfig& config, const puzzle::DistillRun& run,
                                 TrainObjective objective, const fs::path& output) {
  const DataSection& data = config.data.data;
  TrainConfig tc;
  tc.source = config.source;
  tc.text = read_all(config.source);
  tc.run.objective = objective;
  tc.run.output = output;
  const int64_t per_step = static_cast<int64_t>(data.batch_size) * data.seq_len;
  tc.run.steps = std::max<int64_t>(1, (run.tokens + per_step - 1) / per_step);
  tc.run.checkpoint_every = run.checkpoint_every;
  tc.data = data;
  tc.data.eval_every = run.eval_every;
  tc.data.eval_batches = run.eval_batches;
  tc.optimizer.lr = run.lr;
  tc.optimizer.weight_decay = 0.0;
  tc.optimizer.warmup_steps = run.warmup_steps;
  tc.optimizer.grad_accumulation = 1;
  return tc;
}

}  // namespace tessera::cli
