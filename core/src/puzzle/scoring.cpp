#include <tessera/engine/error.hpp>
#include <tessera/puzzle/scoring.hpp>
#include <tessera/train/losses.hpp>

#include <cmath>
#include <limits>
#include <string>

namespace tessera::puzzle {

namespace {

size_t sz(int64_t n) {
  return static_cast<size_t>(n);
}

int64_t argmax_row(const float* row, int64_t vocab) {
  int64_t best = 0;
  for (int64_t v = 1; v < vocab; ++v)
    if (row[v] > row[best]) best = v;
  return best;
}

}  // namespace

ScoreState empty_scores(const std::vector<LayerVariants>& library) {
  ScoreState s;
  s.layers = shaped_like<ScoreSums>(library);
  return s;
}

ScoreSums compare_logits(const ts_host* host, const float* student, const float* teacher,
                         int64_t rows, int64_t vocab) {
  ScoreSums s;
  s.kl = train::kl_divergence(host, student, teacher, rows, vocab, 1.0, nullptr, 1.0);
  for (int64_t r = 0; r < rows; ++r)
    if (argmax_row(student + r * vocab, vocab) == argmax_row(teacher + r * vocab, vocab))
      ++s.agreed;
  return s;
}

void score_batch(Model& model, const std::vector<LayerVariants>& library,
                 const train::TrainBatch& batch, ScoreState& state,
                 const std::function<void(int64_t done, int64_t total)>& progress) {
  const int32_t layers = model.num_layers();
  if (library.size() != static_cast<size_t>(layers) || state.layers.size() != library.size())
    throw Error("scoring: the model has " + std::to_string(layers) + " layers, the library " +
                std::to_string(library.size()) + " and the scores " +
                std::to_string(state.layers.size()));
  const int64_t n = static_cast<int64_t>(batch.tokens.size());
  const int64_t h = model.hidden(), vocab = model.vocab();
  const ts_host* host = model.pool().host();

  int64_t total = 0, done = 0;
  for (const LayerVariants& lv : library)
    for (const std::vector<Variant>* list : {&lv.attention, &lv.ffn})
      for (const Variant& v : *list) total += v.init == VariantInit::kParent ? 0 : 1;

  const train::RecordedOutputs parent = train::record_outputs(model, batch);
  std::vector<float> embedded(sz(n * h)), x(sz(n * h)), logits(sz(n * vocab));
  model.embed(batch.tokens, embedded.data());
  for (int32_t l = 0; l < layers; ++l) {
    const float* input = l == 0 ? embedded.data() : parent.layer_outputs[sz(l - 1)].data();
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const LayerSpec& spec = model.manifest().layers[sz(l)];
      const BlockSpec original = part == TS_KIND_ATTENTION ? spec.attention : spec.ffn;
      const std::vector<Variant>& variants = library[sz(l)].of(part);
      std::vector<ScoreSums>& sums = state.layers[sz(l)].of(part);
      for (size_t i = 0; i < variants.size(); ++i) {
        const Variant& v = variants[i];
        if (v.init == VariantInit::kParent) {
          sums[i].agreed += n;  // the parent itself: KL 0, every token agrees
          continue;
        }
        model.swap_block(l, part, v.block);
        try {
          std::copy_n(input, n * h, x.data());
          train::run_layers(model, batch, l, layers, x.data());
          model.final_norm_and_head(x.data(), static_cast<int32_t>(n), logits.data(), nullptr);
        } catch (...) {
          model.swap_block(l, part, original);
          throw;
        }
        const ScoreSums s = compare_logits(host, logits.data(), parent.logits.data(), n, vocab);
        sums[i].kl += s.kl;
        sums[i].agreed += s.agreed;
        ++done;
        if (progress) progress(done, total);
      }
      model.swap_block(l, part, original);
    }
  }
  state.tokens += n;
  ++state.batches;
}

double mean_kl(const ScoreState& state, const ScoreSums& sums) {
  return state.tokens > 0 ? sums.kl / static_cast<double>(state.tokens)
                          : std::numeric_limits<double>::quiet_NaN();
}

double agreement(const ScoreState& state, const ScoreSums& sums) {
  return state.tokens > 0 ? static_cast<double>(sums.agreed) / static_cast<double>(state.tokens)
                          : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace tessera::puzzle
