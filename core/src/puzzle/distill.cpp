#include <tessera/engine/error.hpp>
#include <tessera/puzzle/distill.hpp>
#include <tessera/train/objective.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace tessera::puzzle {

namespace {

size_t sz(int64_t n) {
  return static_cast<size_t>(n);
}

bool trains(const Variant& v) {
  return v.init == VariantInit::kPruned || v.init == VariantInit::kMeanPooled ||
         v.init == VariantInit::kLeastSquares;
}

}  // namespace

std::vector<DistillGroup> distill_groups(const std::vector<LayerVariants>& library) {
  std::vector<DistillGroup> groups;
  for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
    for (size_t l = 0; l < library.size(); ++l)
      for (const Variant& v : library[l].of(part)) {
        if (!trains(v)) continue;
        auto it = std::find_if(groups.begin(), groups.end(), [&](const DistillGroup& g) {
          return g.part == part && g.name == v.name;
        });
        if (it == groups.end()) {
          groups.push_back({part, v.name, {}});
          it = groups.end() - 1;
        }
        it->layers.push_back(static_cast<int32_t>(l));
      }
  return groups;
}

struct LibraryDistiller::Impl {
  const std::vector<LayerVariants>& library;
  std::vector<DistillGroup> groups;
  std::unique_ptr<Model> parent;
  std::vector<std::unique_ptr<Model>> models;
  std::vector<std::unique_ptr<train::Trainer>> trainers;
  std::vector<train::BlockRef> refs;  // every block some group trains, for the parent's pass

  explicit Impl(const std::vector<LayerVariants>& lib) : library(lib) {}

  // Each group's block steps from the parent's records of the micro-batches.
  std::vector<std::vector<train::BlockStep>> block_steps(
      const std::vector<train::TrainBatch>& micro_batches) {
    std::vector<std::vector<train::BlockStep>> steps(groups.size());
    for (size_t g = 0; g < groups.size(); ++g)
      for (const int32_t l : groups[g].layers) steps[g].push_back({l, groups[g].part, {}});
    for (const train::TrainBatch& batch : micro_batches) {
      const std::vector<train::BlockRecord> records = train::record_blocks_io(*parent, batch, refs);
      for (size_t g = 0; g < groups.size(); ++g)
        for (size_t k = 0; k < groups[g].layers.size(); ++k) {
          const auto at = std::find_if(refs.begin(), refs.end(), [&](const train::BlockRef& r) {
            return r.layer == groups[g].layers[k] && r.kind == groups[g].part;
          });
          const train::BlockRecord& rec = records[sz(at - refs.begin())];
          train::BlockBatch b;
          b.offsets = batch.offsets;
          b.positions = batch.positions;
          b.input = rec.input;
          b.target = rec.output;
          steps[g][k].micro_batches.push_back(std::move(b));
        }
    }
    return steps;
  }
};

LibraryDistiller::LibraryDistiller(const Manifest& manifest,
                                   const std::vector<LayerVariants>& library,
                                   const WeightStore& weights, const PluginRegistry& registry,
                                   ThreadPool& pool, const train::TrainerConfig& config,
                                   int32_t slots, int32_t capacity)
    : impl_(std::make_unique<Impl>(library)) {
  Impl& im = *impl_;
  if (library.size() != manifest.layers.size())
    throw Error("distillation: the library has " + std::to_string(library.size()) +
                " layers, the manifest " + std::to_string(manifest.layers.size()));
  im.groups = distill_groups(library);
  Manifest f32 = manifest;
  f32.runtime.set_weight_dtype(TS_F32);  // the trainers' masters are the models' own tensors
  im.parent = std::make_unique<Model>(f32, registry, weights, pool, ModelOptions{slots, capacity});
  for (const DistillGroup& g : im.groups) {
    Manifest m = f32;
    train::TrainerConfig tc = config;
    tc.train_blocks.clear();
    for (const int32_t l : g.layers) {
      const std::vector<Variant>& list = library[sz(l)].of(g.part);
      const auto v = std::find_if(list.begin(), list.end(),
                                  [&](const Variant& x) { return x.name == g.name; });
      (g.part == TS_KIND_ATTENTION ? m.layers[sz(l)].attention : m.layers[sz(l)].ffn) = v->block;
      tc.train_blocks.push_back({l, g.part});
      if (std::none_of(im.refs.begin(), im.refs.end(),
                       [&](const train::BlockRef& r) { return r.layer == l && r.kind == g.part; }))
        im.refs.push_back({l, g.part});
    }
    // The norms before the blocks are the parent's, shared by every variant of the layer.
    tc.frozen.emplace_back("*layernorm*");
    im.models.push_back(
        std::make_unique<Model>(m, registry, weights, pool, ModelOptions{1, capacity}));
    im.trainers.push_back(std::make_unique<train::Trainer>(*im.models.back(), registry, tc,
                                                           std::make_unique<train::LmObjective>()));
  }
}

LibraryDistiller::~LibraryDistiller() = default;

const std::vector<DistillGroup>& LibraryDistiller::groups() const {
  return impl_->groups;
}

int64_t LibraryDistiller::parameters() const {
  int64_t n = 0;
  for (const auto& t : impl_->trainers)
    for (const std::string& name : t->trainable()) n += t->state(name)->master.numel();
  return n;
}

int64_t LibraryDistiller::steps() const {
  return impl_->trainers.empty() ? 0 : impl_->trainers.front()->steps();
}

train::StepStats LibraryDistiller::step(const std::vector<train::TrainBatch>& micro_batches) {
  Impl& im = *impl_;
  train::StepStats out;
  if (im.groups.empty()) return out;
  const std::vector<std::vector<train::BlockStep>> steps = im.block_steps(micro_batches);
  for (size_t g = 0; g < im.groups.size(); ++g) {
    const train::StepStats s = im.trainers[g]->step_blocks(steps[g]);
    out.step = s.step;
    out.loss += s.loss / static_cast<double>(im.groups.size());
    out.grad_norm = std::max(out.grad_norm, s.grad_norm);
    out.lr = s.lr;
  }
  for (const train::TrainBatch& b : micro_batches)
    out.tokens += static_cast<int64_t>(b.tokens.size());
  out.count = out.tokens;
  return out;
}

double LibraryDistiller::evaluate(const std::vector<train::TrainBatch>& batches) {
  Impl& im = *impl_;
  if (im.groups.empty()) return 0.0;
  const std::vector<std::vector<train::BlockStep>> steps = im.block_steps(batches);
  double total = 0;
  for (size_t g = 0; g < im.groups.size(); ++g) total += im.trainers[g]->evaluate_blocks(steps[g]);
  return total / static_cast<double>(im.groups.size());
}

std::vector<LayerLosses> LibraryDistiller::block_losses(
    const std::vector<train::TrainBatch>& batches) {
  Impl& im = *impl_;
  std::vector<LayerLosses> out = shaped_like(im.library, std::numeric_limits<double>::quiet_NaN());
  const std::vector<std::vector<train::BlockStep>> steps = im.block_steps(batches);
  for (size_t g = 0; g < im.groups.size(); ++g)
    for (const train::BlockStep& s : steps[g]) {
      const std::vector<Variant>& list = im.library[sz(s.layer)].of(s.kind);
      const auto v = std::find_if(list.begin(), list.end(),
                                  [&](const Variant& x) { return x.name == im.groups[g].name; });
      out[sz(s.layer)].of(s.kind)[sz(v - list.begin())] = im.trainers[g]->evaluate_blocks({s});
    }
  return out;
}

void LibraryDistiller::save(const std::filesystem::path& folder) const {
  for (size_t g = 0; g < impl_->trainers.size(); ++g)
    impl_->trainers[g]->save(folder / ("group-" + std::to_string(g)));
}

void LibraryDistiller::load(const std::filesystem::path& folder) {
  for (size_t g = 0; g < impl_->trainers.size(); ++g)
    impl_->trainers[g]->load(folder / ("group-" + std::to_string(g)));
}

WeightStore LibraryDistiller::trained_weights(const WeightStore& library_weights) const {
  WeightStore out;
  for (const auto& [name, tensor] : library_weights.all()) out.add(name, tensor);
  for (const auto& t : impl_->trainers)
    for (const std::string& name : t->trainable()) out.add(name, t->state(name)->master.clone());
  return out;
}

}  // namespace tessera::puzzle
