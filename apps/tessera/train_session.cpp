#include "train_session.hpp"

#include <tessera/engine/error.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/tools/atomic_file.hpp>
#include <tessera/train/medusa_trainer.hpp>
#include <tessera/train/objective.hpp>
#include <tessera/train/trainer.hpp>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>

#include "model_folder.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

using train::BlockRef;
using train::TrainBatch;

constexpr int kCheckpointsKept = 2;

train::DecayShape decay_shape(LrSchedule schedule) {
  switch (schedule) {
    case LrSchedule::kLinear:
      return train::DecayShape::kLinear;
    case LrSchedule::kConstant:
      return train::DecayShape::kConstant;
    case LrSchedule::kCosine:
      break;
  }
  return train::DecayShape::kCosine;
}

train::TrainerConfig trainer_config(const TrainConfig& config) {
  const OptimizerSection& o = config.optimizer;
  train::TrainerConfig t;
  t.adamw.lr = o.lr;
  t.adamw.beta1 = o.beta1;
  t.adamw.beta2 = o.beta2;
  t.adamw.eps = o.eps;
  t.adamw.weight_decay = o.weight_decay;
  t.schedule.warmup_steps = o.warmup_steps;
  t.schedule.total_steps = config.run.steps;
  t.schedule.min_lr_ratio = o.min_lr_ratio;
  t.schedule.shape = decay_shape(o.schedule);
  t.clip_norm = o.clip_norm;
  t.recompute = static_cast<ts_recompute>(config.recompute);
  t.frozen = config.freeze;
  return t;
}

// The sub-blocks distill-blocks trains, in layer order.
std::vector<BlockRef> block_refs(const TrainConfig& config) {
  std::vector<BlockRef> refs;
  for (const TrainBlocks& b : config.blocks)
    for (int32_t layer = b.first_layer; layer <= b.last_layer; ++layer)
      refs.push_back({layer, b.part == "ffn" ? TS_KIND_FFN : TS_KIND_ATTENTION});
  std::sort(refs.begin(), refs.end(), [](const BlockRef& a, const BlockRef& b) {
    return a.layer != b.layer ? a.layer < b.layer : a.kind < b.kind;
  });
  return refs;
}

// A batch of packed windows as the trainer takes it: each row's first seq_len tokens are
// read, its last seq_len are the targets.
TrainBatch train_batch(const Batch& batch) {
  TrainBatch t;
  t.offsets.push_back(0);
  for (int32_t i = 0; i < batch.size(); ++i) {
    const auto inputs = batch.inputs(i);
    const auto targets = batch.targets(i);
    t.tokens.insert(t.tokens.end(), inputs.begin(), inputs.end());
    t.targets.insert(t.targets.end(), targets.begin(), targets.end());
    t.offsets.push_back(static_cast<int32_t>(t.tokens.size()));
  }
  return t;
}

std::vector<TrainBatch> train_batches(std::span<const Batch> batches) {
  std::vector<TrainBatch> out;
  out.reserve(batches.size());
  for (const Batch& b : batches) out.push_back(train_batch(b));
  return out;
}

// The tokens the batches score: seq_len per row.
int64_t targets(std::span<const Batch> batches) {
  int64_t n = 0;
  for (const Batch& b : batches) n += static_cast<int64_t>(b.size()) * b.seq_len;
  return n;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  return text;
}

}  // namespace

fs::path latest_checkpoint(const fs::path& output) {
  const fs::path latest = output / "checkpoints" / "latest";
  std::error_code ec;
  if (!fs::exists(latest, ec)) return {};
  const std::string name = trimmed(read_file(latest));
  if (name.empty() || name.find('/') != std::string::npos)
    throw Error(latest.string() + " names '" + name + "'; expected a folder like step-100");
  fs::path folder = output / "checkpoints" / name;
  if (!fs::is_directory(folder, ec))
    throw Error(latest.string() + " names " + folder.string() + ", which is not there");
  return folder;
}

struct TrainSession::State {
  const TrainConfig& config;
  // Destroyed in reverse: the trainer (and its objective, which holds the parent) first.
  PluginRegistry registry;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Model> parent;
  std::unique_ptr<Model> model;
  std::unique_ptr<train::Trainer> trainer;
  std::unique_ptr<train::MedusaTrainer> medusa;  // objective medusa, in place of the trainer
  std::optional<train::MedusaEval> medusa_eval;  // the last held-out measurement
  std::vector<BlockRef> blocks;                  // distill-blocks
  int64_t parameters = 0;

  explicit State(const TrainConfig& c) : config(c) {}

  std::vector<train::BlockStep> block_steps(std::span<const Batch> batches) {
    std::vector<train::BlockStep> steps;
    for (const BlockRef& r : blocks) steps.push_back({r.layer, r.kind, {}});
    for (const Batch& batch : batches) {
      const TrainBatch tokens = train_batch(batch);
      std::vector<train::BlockRecord> records = train::record_blocks_io(*parent, tokens, blocks);
      for (size_t i = 0; i < blocks.size(); ++i) {
        train::BlockBatch b;
        b.offsets = tokens.offsets;
        b.input = std::move(records[i].input);
        b.target = std::move(records[i].output);
        steps[i].micro_batches.push_back(std::move(b));
      }
    }
    return steps;
  }

  void save(int64_t step, const CursorState& cursor) {
    const fs::path root = config.run.output / "checkpoints";
    fs::create_directories(root);
    const std::string name = "step-" + std::to_string(step);
    const fs::path folder = root / name;
    if (medusa)
      medusa->save(folder);
    else
      trainer->save(folder);
    write_file_atomically(folder / "cursor.txt", cursor.to_text() + "\n");
    write_file_atomically(root / "latest", name + "\n");
    // Keep the newest few: step-N folders by N, the one just written included.
    std::vector<std::pair<int64_t, fs::path>> found;
    for (const auto& entry : fs::directory_iterator(root)) {
      const std::string n = entry.path().filename().string();
      if (!entry.is_directory() || n.rfind("step-", 0) != 0) continue;
      try {
        found.emplace_back(std::stoll(n.substr(5)), entry.path());
      } catch (const std::exception&) {
        continue;
      }
    }
    std::sort(found.begin(), found.end());
    for (size_t i = 0; i + kCheckpointsKept < found.size(); ++i) {
      std::error_code ec;
      fs::remove_all(found[i].second, ec);
    }
  }
};

TrainSession::TrainSession(const TrainConfig& config, LoadedModel& model, LoadedModel* parent,
                           const std::vector<std::string>& plugin_paths)
    : state_(std::make_unique<State>(config)) {
  State& s = *state_;
  const bool distills = has_parent(config.run.objective);
  if (distills && parent == nullptr) throw Error("the distill objectives need a parent model");
  if (parent != nullptr)
    for (const auto& p : parent->manifest.runtime.plugin_paths) s.registry.add_search_path(p);
  load_plugins(s.registry, plugin_paths, &model.manifest);
  s.pool = std::make_unique<ThreadPool>(model.manifest.runtime.threads);

  const int32_t seq_len = config.data.seq_len;
  if (distills) {
    // The parent runs inference over whole micro-batches: a slot per sequence.
    s.parent = std::make_unique<Model>(parent->manifest, s.registry, std::move(parent->weights),
                                       *s.pool, ModelOptions{config.data.batch_size, seq_len});
  }
  if (config.run.objective == TrainObjective::kMedusa) {
    // The base model only runs forward, over whole micro-batches, with its weights as loaded.
    s.model = std::make_unique<Model>(model.manifest, s.registry, std::move(model.weights), *s.pool,
                                      ModelOptions{config.data.batch_size, seq_len});
    train::TrainerConfig tc = trainer_config(config);
    train::MedusaTrainConfig mc;
    mc.heads = config.medusa.heads;
    mc.layers = config.medusa.layers;
    mc.decay = config.medusa.decay;
    mc.adamw = tc.adamw;
    mc.schedule = tc.schedule;
    mc.clip_norm = tc.clip_norm;
    s.medusa = std::make_unique<train::MedusaTrainer>(*s.model, mc);
    s.parameters = s.medusa->parameters();
    return;
  }
  Manifest manifest = model.manifest;
  manifest.runtime.set_weight_dtype(TS_F32);  // the masters are the model's own tensors
  s.model = std::make_unique<Model>(manifest, s.registry, std::move(model.weights), *s.pool,
                                    ModelOptions{1, seq_len});

  train::TrainerConfig tc = trainer_config(config);
  std::unique_ptr<train::Objective> objective;
  switch (config.run.objective) {
    case TrainObjective::kLm:
      objective = std::make_unique<train::LmObjective>();
      break;
    case TrainObjective::kDistill: {
      train::DistillConfig dc;
      dc.cosine_weight = config.distill.cosine;
      dc.kl_weight = config.distill.kl;
      dc.temperature = config.distill.temperature;
      objective = std::make_unique<train::DistillObjective>(*s.parent, dc);
      break;
    }
    case TrainObjective::kMedusa:
      break;  // handled above
    case TrainObjective::kDistillBlocks:
      s.blocks = block_refs(config);
      tc.train_blocks = s.blocks;
      objective = std::make_unique<train::LmObjective>();  // unused: blocks train on their own
      break;
  }
  s.trainer = std::make_unique<train::Trainer>(*s.model, s.registry, tc, std::move(objective));
  for (const std::string& name : s.trainer->trainable())
    s.parameters += s.trainer->state(name)->master.numel();
}

TrainSession::~TrainSession() = default;

TrainerHooks TrainSession::hooks() {
  State* s = state_.get();
  TrainerHooks hooks;
  if (s->medusa) {
    hooks.step = [s](int64_t, std::span<const Batch> batches) {
      const train::StepStats stats = s->medusa->step(train_batches(batches));
      return TrainStep{stats.loss, stats.lr, stats.grad_norm, stats.count};
    };
    hooks.evaluate = [s](std::span<const Batch> batches) {
      s->medusa_eval = s->medusa->evaluate(train_batches(batches));
      return HeldOutLoss{s->medusa_eval->loss, targets(batches)};
    };
  } else if (!s->blocks.empty()) {
    hooks.step = [s](int64_t, std::span<const Batch> batches) {
      const train::StepStats stats = s->trainer->step_blocks(s->block_steps(batches));
      return TrainStep{stats.loss, stats.lr, stats.grad_norm, stats.tokens};
    };
    hooks.evaluate = [s](std::span<const Batch> batches) {
      return HeldOutLoss{s->trainer->evaluate_blocks(s->block_steps(batches)), targets(batches)};
    };
  } else {
    hooks.step = [s](int64_t, std::span<const Batch> batches) {
      const train::StepStats stats = s->trainer->step(train_batches(batches));
      return TrainStep{stats.loss, stats.lr, stats.grad_norm, stats.count};
    };
    hooks.evaluate = [s](std::span<const Batch> batches) {
      return HeldOutLoss{s->trainer->evaluate(train_batches(batches)), targets(batches)};
    };
  }
  hooks.checkpoint = [s](int64_t step, const CursorState& cursor) { s->save(step, cursor); };
  return hooks;
}

RunStart TrainSession::start(std::string* note) {
  State& s = *state_;
  RunStart start;
  if (!s.config.run.resume) {
    if (note != nullptr) *note = "a new run";
    return start;
  }
  fs::path folder = s.config.run.resume_from;
  if (folder.empty()) folder = latest_checkpoint(s.config.run.output);
  if (folder.empty()) {
    if (note != nullptr)
      *note = "no checkpoint yet in " + s.config.run.output.string() + ": a new run";
    return start;
  }
  const fs::path cursor_file = folder / "cursor.txt";
  std::error_code ec;
  if (!fs::exists(cursor_file, ec))
    throw Error("the checkpoint " + folder.string() +
                " has no cursor.txt (where the data goes on)");
  const CursorState cursor = CursorState::from_text(trimmed(read_file(cursor_file)));
  if (s.medusa) {
    s.medusa->load(folder);
    start.step = s.medusa->steps();
  } else {
    s.trainer->load(folder);
    start.step = s.trainer->steps();
  }
  start.cursor = cursor;
  if (note != nullptr)
    *note = "resumed from " + folder.string() + " after step " + std::to_string(start.step);
  return start;
}

std::string TrainSession::trainable_text() const {
  const State& s = *state_;
  int64_t total = 0;
  for (const auto& [name, tensor] : s.model->weights().all()) total += tensor.numel();
  std::ostringstream out;
  if (s.medusa) {
    out << s.medusa->names().size() << " tensors of " << s.medusa->config().heads
        << " Medusa heads, " << s.parameters << " parameters (the base model's " << total
        << " stay frozen; the heads share its lm head)";
    return out.str();
  }
  out << s.trainer->trainable().size() << " tensors, " << s.parameters << " parameters (of "
      << total << ")";
  return out.str();
}

std::string TrainSession::medusa_text() const {
  const State& s = *state_;
  if (!s.medusa_eval) return {};
  const train::MedusaEval& e = *s.medusa_eval;
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(3);
  for (size_t k = 0; k < e.positions.size(); ++k)
    out << "head " << k << "     (token +" << k + 2 << ") top-1 "
        << e.top(static_cast<int32_t>(k), 1) << ", top-5 " << e.top(static_cast<int32_t>(k), 5)
        << ", top-10 " << e.top(static_cast<int32_t>(k), 10) << " of the base model's choice; KL "
        << e.head_loss[k] << " over " << e.positions[k] << " held-out positions\n";
  return out.str();
}

fs::path TrainSession::write_medusa_heads(fs::path folder) const {
  const State& s = *state_;
  if (folder.empty()) folder = s.config.run.output / "medusa";
  s.medusa->write_heads(folder, s.medusa_eval ? &*s.medusa_eval : nullptr);
  return folder;
}

bool TrainSession::trains_medusa() const {
  return state_->medusa != nullptr;
}

std::string TrainSession::memory_text() const {
  if (!state_->trainer) return {};
  const train::MemoryReport report = state_->trainer->memory();
  if (report.layers.empty()) return {};
  return train::format_memory_report(report);
}

fs::path TrainSession::write_model(
    const LoadedModel& source, fs::path folder,
    const std::vector<std::pair<std::string, std::string>>& extra_files) const {
  const State& s = *state_;
  LoadedModel trained;
  trained.format = source.format;
  trained.path = source.path;
  trained.manifest = s.model->manifest();
  trained.tokenizer = source.tokenizer;
  trained.chat_template = source.chat_template;
  trained.architecture = source.architecture;
  if (folder.empty()) folder = s.config.run.output / "model";
  write_manifest_folder(folder, trained, s.model->weights(), std::nullopt, true, extra_files);
  return folder;
}

}  // namespace tessera::cli
