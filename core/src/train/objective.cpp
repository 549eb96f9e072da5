// The training objectives, and the runs of a parent model that distillation compares with.
#include <tessera/engine/error.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/train/losses.hpp>
#include <tessera/train/objective.hpp>
#include <tessera/train/ops.hpp>

#include <algorithm>
#include <cstring>
#include <string>

namespace tessera::train {
namespace {

// A batch laid out for Model::run_layer: sequence s in slot s from an empty slot.
struct InferenceBatch {
  std::vector<int32_t> slots, positions;
  ts_batch b{};
};

InferenceBatch start_inference(Model& model, const TrainBatch& batch, const char* what) {
  check_batch(batch, model.vocab());
  const auto n_seqs = static_cast<int32_t>(batch.offsets.size() - 1);
  if (n_seqs > model.slots())
    throw Error(std::string(what) + ": the batch has " + std::to_string(n_seqs) +
                " sequences but the model has " + std::to_string(model.slots()) +
                " slots; make it with ModelOptions::slots >= " + std::to_string(n_seqs));
  InferenceBatch ib;
  for (int32_t s = 0; s < n_seqs; ++s) {
    const int32_t len = batch.offsets[s + 1] - batch.offsets[s];
    if (len > model.capacity())
      throw Error(std::string(what) + ": sequence " + std::to_string(s) + " has " +
                  std::to_string(len) + " tokens, beyond the model's capacity of " +
                  std::to_string(model.capacity()));
    model.reset(s);
    ib.slots.push_back(s);
    for (int32_t i = 0; i < len; ++i) ib.positions.push_back(i);
  }
  if (!batch.positions.empty()) ib.positions = batch.positions;
  ib.b.struct_size = sizeof(ts_batch);
  ib.b.n_seqs = n_seqs;
  ib.b.n_tokens = static_cast<int32_t>(batch.tokens.size());
  ib.b.slots = ib.slots.data();
  ib.b.offsets = batch.offsets.data();
  ib.b.positions = ib.positions.data();
  return ib;
}

void finish_inference(Model& model, const InferenceBatch& ib) {
  for (int32_t s : ib.slots) model.reset(s);
}

// One sub-block's contribution, y = block(norm(x)), as the model's forward computes it.
void run_sub_block(Model& model, InferenceBatch& ib, int32_t layer, ts_kind kind, const float* x,
                   float* y) {
  const int64_t n = ib.b.n_tokens, h = model.hidden();
  Block& block = kind == TS_KIND_ATTENTION ? model.attention(layer) : model.ffn(layer);
  if (block.identity()) {
    std::fill(y, y + n * h, 0.0f);
    return;
  }
  const Tensor& norm = model.weights().get(block_norm_name(layer, kind));
  std::vector<float> normed(static_cast<size_t>(n * h));
  rmsnorm_forward(model.pool().host(), x, norm.data<float>(), model.manifest().model.rms_norm_eps,
                  n, h, normed.data(), nullptr);
  const ts_tensor xv = f32_matrix_view(normed.data(), n, h);
  ts_tensor yv = f32_matrix_view(y, n, h);
  ts_block_io io{};
  io.struct_size = sizeof(ts_block_io);
  io.x = &xv;
  io.y = &yv;
  io.batch = &ib.b;
  ts_kv_layer kv{};
  if (kind == TS_KIND_ATTENTION && model.kv_cache().has_layer(layer)) {
    kv = model.kv_cache().layer_view(layer);
    io.kv = &kv;
  }
  block.forward(io);
}

}  // namespace

std::vector<int32_t> batch_targets(const TrainBatch& batch) {
  if (!batch.targets.empty()) return batch.targets;
  std::vector<int32_t> targets(batch.tokens.size(), kIgnoreIndex);
  for (size_t s = 0; s + 1 < batch.offsets.size(); ++s)
    for (int32_t i = batch.offsets[s]; i + 1 < batch.offsets[s + 1]; ++i)
      targets[static_cast<size_t>(i)] = batch.tokens[static_cast<size_t>(i) + 1];
  return targets;
}

void check_batch(const TrainBatch& batch, int32_t vocab) {
  if (batch.offsets.size() < 2)
    throw Error("training batch: offsets has " + std::to_string(batch.offsets.size()) +
                " entries; expected n_seqs + 1 >= 2 (at least one sequence)");
  if (batch.offsets[0] != 0)
    throw Error("training batch: offsets[0] is " + std::to_string(batch.offsets[0]) +
                "; expected 0");
  for (size_t s = 0; s + 1 < batch.offsets.size(); ++s)
    if (batch.offsets[s + 1] <= batch.offsets[s])
      throw Error("training batch: sequence " + std::to_string(s) + " spans offsets " +
                  std::to_string(batch.offsets[s]) + " .. " + std::to_string(batch.offsets[s + 1]) +
                  "; expected at least one token (offsets must increase)");
  if (batch.tokens.size() != static_cast<size_t>(batch.offsets.back()))
    throw Error("training batch: " + std::to_string(batch.tokens.size()) +
                " tokens, but the offsets end at " + std::to_string(batch.offsets.back()));
  for (size_t i = 0; i < batch.tokens.size(); ++i)
    if (batch.tokens[i] < 0 || batch.tokens[i] >= vocab)
      throw Error("training batch: token " + std::to_string(batch.tokens[i]) + " at " +
                  std::to_string(i) + " is outside [0, " + std::to_string(vocab) + ")");
  if (!batch.positions.empty() && batch.positions.size() != batch.tokens.size())
    throw Error("training batch: " + std::to_string(batch.positions.size()) + " positions for " +
                std::to_string(batch.tokens.size()) + " tokens; expected one per token or none");
  if (!batch.targets.empty()) {
    if (batch.targets.size() != batch.tokens.size())
      throw Error("training batch: " + std::to_string(batch.targets.size()) + " targets for " +
                  std::to_string(batch.tokens.size()) +
                  " tokens; expected one per token or none (the next tokens)");
    for (size_t i = 0; i < batch.targets.size(); ++i)
      if (batch.targets[i] != kIgnoreIndex && (batch.targets[i] < 0 || batch.targets[i] >= vocab))
        throw Error("training batch: target " + std::to_string(batch.targets[i]) + " at " +
                    std::to_string(i) + " is outside [0, " + std::to_string(vocab) +
                    ") and is not the ignore index " + std::to_string(kIgnoreIndex));
  }
}

// ------------------------------------------------------------------------ lm

int64_t LmObjective::count(const TrainBatch& batch) const {
  const std::vector<int32_t> targets = batch_targets(batch);
  return static_cast<int64_t>(
      std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t != kIgnoreIndex; }));
}

double LmObjective::evaluate(const ModelOutputs& out, OutputGrads* grads, double scale) {
  const std::vector<int32_t> targets = batch_targets(*out.batch);
  return cross_entropy(out.host, out.logits, out.n_tokens, out.vocab, targets.data(), kIgnoreIndex,
                       grads != nullptr ? grads->logits : nullptr, scale, nullptr);
}

// ------------------------------------------------------------------- distill

RecordedOutputs record_outputs(Model& model, const TrainBatch& batch) {
  InferenceBatch ib = start_inference(model, batch, "record_outputs");
  const int64_t n = ib.b.n_tokens, h = model.hidden();
  RecordedOutputs out;
  std::vector<float> x(static_cast<size_t>(n * h));
  model.embed(batch.tokens, x.data());
  for (int32_t layer = 0; layer < model.num_layers(); ++layer) {
    model.run_layer(layer, ib.b, x.data(), ib.b.n_tokens);
    out.layer_outputs.push_back(x);
  }
  out.logits.resize(static_cast<size_t>(n * model.vocab()));
  model.final_norm_and_head(x.data(), ib.b.n_tokens, out.logits.data(), nullptr);
  finish_inference(model, ib);
  return out;
}

void run_layers(Model& model, const TrainBatch& batch, int32_t first, int32_t last, float* x) {
  if (first < 0 || last > model.num_layers() || first > last)
    throw Error("run_layers: layers [" + std::to_string(first) + ", " + std::to_string(last) +
                ") are not within [0, " + std::to_string(model.num_layers()) + "]");
  InferenceBatch ib = start_inference(model, batch, "run_layers");
  for (int32_t layer = first; layer < last; ++layer) model.run_layer(layer, ib.b, x, ib.b.n_tokens);
  finish_inference(model, ib);
}

BlockRecord record_block_io(Model& model, const TrainBatch& batch, int32_t layer, ts_kind kind) {
  return std::move(record_blocks_io(model, batch, {{layer, kind}}).front());
}

std::vector<BlockRecord> record_blocks_io(Model& model, const TrainBatch& batch,
                                          const std::vector<BlockRef>& blocks) {
  int32_t last = -1;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const BlockRef& r = blocks[i];
    if (r.layer < 0 || r.layer >= model.num_layers())
      throw Error("record_block_io: layer " + std::to_string(r.layer) + " out of range [0, " +
                  std::to_string(model.num_layers()) + ")");
    if (r.kind != TS_KIND_ATTENTION && r.kind != TS_KIND_FFN)
      throw Error("record_block_io: expected an attention or ffn block");
    for (size_t j = 0; j < i; ++j)
      if (blocks[j].layer == r.layer && blocks[j].kind == r.kind)
        throw Error("record_block_io: layer " + std::to_string(r.layer) + " " +
                    (r.kind == TS_KIND_FFN ? "ffn" : "attention") + " is listed twice");
    last = std::max(last, r.layer);
  }
  auto index_of = [&](int32_t layer, ts_kind kind) {
    for (size_t i = 0; i < blocks.size(); ++i)
      if (blocks[i].layer == layer && blocks[i].kind == kind) return static_cast<int64_t>(i);
    return int64_t{-1};
  };
  std::vector<BlockRecord> records(blocks.size());
  if (blocks.empty()) return records;
  InferenceBatch ib = start_inference(model, batch, "record_block_io");
  const int64_t n = ib.b.n_tokens, h = model.hidden();
  std::vector<float> x(static_cast<size_t>(n * h));
  model.embed(batch.tokens, x.data());
  for (int32_t l = 0; l <= last; ++l) {
    const int64_t attention = index_of(l, TS_KIND_ATTENTION), ffn = index_of(l, TS_KIND_FFN);
    if (attention < 0 && ffn < 0) {
      model.run_layer(l, ib.b, x.data(), ib.b.n_tokens);
      continue;
    }
    // The layer as two sub-blocks, each with its residual, so that their inputs can be kept.
    std::vector<float> y(x.size());
    run_sub_block(model, ib, l, TS_KIND_ATTENTION, x.data(), y.data());
    if (attention >= 0) records[static_cast<size_t>(attention)] = {x, y};
    residual_add(x.data(), y.data(), n * h);
    if (l == last && ffn < 0) break;
    run_sub_block(model, ib, l, TS_KIND_FFN, x.data(), y.data());
    if (ffn >= 0) records[static_cast<size_t>(ffn)] = {x, y};
    residual_add(x.data(), y.data(), n * h);
  }
  finish_inference(model, ib);
  return records;
}

DistillObjective::DistillObjective(Model& parent, DistillConfig config)
    : parent_(parent), config_(config) {
  if (!(config_.temperature > 0))
    throw Error("distill objective: temperature " + std::to_string(config_.temperature) +
                "; expected > 0");
  if (config_.cosine_weight < 0 || config_.kl_weight < 0)
    throw Error("distill objective: cosine_weight " + std::to_string(config_.cosine_weight) +
                " and kl_weight " + std::to_string(config_.kl_weight) + "; expected >= 0");
}

int64_t DistillObjective::count(const TrainBatch& batch) const {
  return static_cast<int64_t>(batch.tokens.size());
}

void DistillObjective::prepare(const TrainBatch& batch) {
  recorded_ = record_outputs(parent_, batch);
}

double DistillObjective::evaluate(const ModelOutputs& out, OutputGrads* grads, double scale) {
  if (out.hidden != parent_.hidden() || out.vocab != parent_.vocab() ||
      (uses_layer_outputs() &&
       out.layer_outputs.size() != static_cast<size_t>(parent_.num_layers())))
    throw Error("distill objective: the child has hidden " + std::to_string(out.hidden) +
                ", vocab " + std::to_string(out.vocab) + " and " +
                std::to_string(out.layer_outputs.size()) + " layers; the parent has " +
                std::to_string(parent_.hidden()) + ", " + std::to_string(parent_.vocab()) +
                " and " + std::to_string(parent_.num_layers()) + "; expected the same");
  if (recorded_.logits.size() != static_cast<size_t>(out.n_tokens * out.vocab))
    throw Error("distill objective: the parent's outputs are for another batch (prepare first)");
  const ts_host* host = parent_.pool().host();
  double total = 0;
  if (uses_layer_outputs()) {
    for (size_t l = 0; l < out.layer_outputs.size(); ++l)
      total += config_.cosine_weight *
               cosine_distance(host, out.layer_outputs[l], recorded_.layer_outputs[l].data(),
                               out.n_tokens, out.hidden,
                               grads != nullptr ? grads->layer_outputs[l] : nullptr,
                               scale * config_.cosine_weight);
  }
  float* grad_logits = grads != nullptr ? grads->logits : nullptr;
  if (config_.kl_weight != 0.0) {
    total += config_.kl_weight * kl_divergence(host, out.logits, recorded_.logits.data(),
                                               out.n_tokens, out.vocab, config_.temperature,
                                               grad_logits, scale * config_.kl_weight);
  } else if (grad_logits != nullptr) {
    std::fill(grad_logits, grad_logits + out.n_tokens * out.vocab, 0.0f);
  }
  return total;
}

}  // namespace tessera::train
