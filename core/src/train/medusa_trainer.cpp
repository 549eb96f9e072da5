#include <tessera/cpu/matmul_grad.hpp>
#include <tessera/decoding/medusa_heads.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/formats/safetensors.hpp>
#include <tessera/tools/atomic_file.hpp>
#include <tessera/tools/staging_folder.hpp>
#include <tessera/train/medusa_trainer.hpp>
#include <tessera/train/ops.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tessera::train {
namespace fs = std::filesystem;

double MedusaEval::top(int32_t head, int32_t n) const {
  const auto k = static_cast<size_t>(head);
  if (k >= positions.size() || positions[k] == 0) return 0.0;
  int64_t hits = 0;
  for (int32_t r = 0; r < std::min(n, kRanks); ++r) hits += rank_counts[k][static_cast<size_t>(r)];
  return static_cast<double>(hits) / static_cast<double>(positions[k]);
}

namespace {

struct Param {
  std::string name;
  std::vector<float> value, grad, m, v;
  bool decay = false;
};

// The base model's side of a micro-batch: its final hidden states, its distribution at every
// position (probabilities, in place of the logits), their entropy and argmax.
struct BaseOutputs {
  std::vector<float> hidden, probs;
  std::vector<double> entropy;
  std::vector<int32_t> argmax;
};

}  // namespace

struct MedusaTrainer::Impl {
  Model& base;
  MedusaTrainConfig config;
  const ts_host* host = nullptr;
  int64_t hidden = 0, vocab = 0;
  cpu::MatrixView lm_head;
  std::vector<Param> params;  // per head, per layer: weight then bias
  int64_t step = 0;
  // Scratch, reused.
  BaseOutputs base_out;
  std::vector<std::vector<float>> xs, pres;  // per layer: inputs x_j and pre-activations
  std::vector<float> logits, grad_x, grad_a;

  Impl(Model& m, const MedusaTrainConfig& c) : base(m), config(c) {
    if (config.heads < 1 || config.layers < 1)
      throw Error("medusa training: " + std::to_string(config.heads) + " heads of " +
                  std::to_string(config.layers) + " layers; expected at least 1 of each");
    if (!(config.decay > 0) || !std::isfinite(config.decay))
      throw Error("medusa training: decay is " + std::to_string(config.decay) +
                  ", expected a finite number > 0");
    host = base.pool().host();
    hidden = base.hidden();
    vocab = base.vocab();
    const Tensor& head = base.lm_head();
    lm_head = {head.raw(), head.dtype(), vocab, hidden, hidden};
    for (int32_t k = 0; k < config.heads; ++k)
      for (int32_t j = 0; j < config.layers; ++j) {
        Param w{decoding::medusa_linear_name(k, j, "weight"), {}, {}, {}, {}, true};
        Param b{decoding::medusa_linear_name(k, j, "bias"), {}, {}, {}, {}, false};
        for (Param* p : {&w, &b}) {
          const size_t n = static_cast<size_t>(p == &w ? hidden * hidden : hidden);
          p->value.assign(n, 0.0f);
          p->grad.assign(n, 0.0f);
          p->m.assign(n, 0.0f);
          p->v.assign(n, 0.0f);
        }
        params.push_back(std::move(w));
        params.push_back(std::move(b));
      }
  }

  Param& weight(int32_t k, int32_t j) {
    return params[2 * (static_cast<size_t>(k) * static_cast<size_t>(config.layers) +
                       static_cast<size_t>(j))];
  }
  Param& bias(int32_t k, int32_t j) {
    return params[2 * (static_cast<size_t>(k) * static_cast<size_t>(config.layers) +
                       static_cast<size_t>(j)) +
                  1];
  }

  void run_base(const TrainBatch& batch) {
    check_batch(batch, static_cast<int32_t>(vocab));
    const int32_t n_seqs = static_cast<int32_t>(batch.offsets.size()) - 1;
    if (n_seqs > base.slots())
      throw Error("medusa training: a micro-batch of " + std::to_string(n_seqs) +
                  " sequences, but the base model has " + std::to_string(base.slots()) + " slots");
    ForwardBatch fb;
    for (int32_t s = 0; s < n_seqs; ++s) {
      base.reset(s);
      fb.slots.push_back(s);
      const int32_t len =
          batch.offsets[static_cast<size_t>(s) + 1] - batch.offsets[static_cast<size_t>(s)];
      if (len > base.capacity())
        throw Error("medusa training: a sequence of " + std::to_string(len) +
                    " tokens, but the base model's capacity is " + std::to_string(base.capacity()));
    }
    fb.offsets = batch.offsets;
    fb.tokens = batch.tokens;
    fb.positions = batch.positions;
    const auto n = static_cast<size_t>(batch.tokens.size());
    base_out.hidden.resize(n * static_cast<size_t>(hidden));
    base_out.probs.resize(n * static_cast<size_t>(vocab));
    base.forward(fb, base_out.probs.data(), base_out.hidden.data());
    base_out.entropy.assign(n, 0.0);
    base_out.argmax.assign(n, 0);
    sdk::parallel_for(host, static_cast<int64_t>(n), 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* p = base_out.probs.data() + r * vocab;
        int32_t best = 0;
        for (int64_t i = 1; i < vocab; ++i)
          if (p[i] > p[best]) best = static_cast<int32_t>(i);
        const double max_v = p[best];
        double z = 0;
        for (int64_t i = 0; i < vocab; ++i) z += std::exp(static_cast<double>(p[i]) - max_v);
        const double log_z = std::log(z);
        double h = 0;
        for (int64_t i = 0; i < vocab; ++i) {
          const double lp = static_cast<double>(p[i]) - max_v - log_z;
          const double q = std::exp(lp);
          h -= q * lp;
          p[i] = static_cast<float>(q);
        }
        base_out.entropy[static_cast<size_t>(r)] = h;
        base_out.argmax[static_cast<size_t>(r)] = best;
      }
    });
  }

  // Rows of head k with a target: token t of a sequence whose t + k + 1 is in it. source[i] is
  // the row of the input, target[i] the row of the base distribution.
  static void rows_of(const TrainBatch& batch, int32_t k, std::vector<int32_t>& source,
                      std::vector<int32_t>& target) {
    source.clear();
    target.clear();
    for (size_t s = 0; s + 1 < batch.offsets.size(); ++s)
      for (int32_t t = batch.offsets[s]; t + k + 1 < batch.offsets[s + 1]; ++t) {
        source.push_back(t);
        target.push_back(t + k + 1);
      }
  }

  struct HeadResult {
    double kl_sum = 0;
    int64_t rows = 0;
  };

  // Head k over a micro-batch (run_base first): the KL sum, and with `scale` != 0 its gradient
  // times scale added into the head's parameters. ranks (may be NULL) counts the base argmax's
  // rank among the head's logits.
  HeadResult run_head(const TrainBatch& batch, int32_t k, double scale,
                      std::vector<int64_t>* ranks) {
    std::vector<int32_t> source, target;
    rows_of(batch, k, source, target);
    HeadResult result;
    result.rows = static_cast<int64_t>(source.size());
    if (source.empty()) return result;
    const int64_t n = result.rows, h = hidden;
    const auto L = static_cast<size_t>(config.layers);
    xs.resize(L + 1);
    pres.resize(L);
    xs[0].resize(static_cast<size_t>(n * h));
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(xs[0].data() + i * h,
                  base_out.hidden.data() + static_cast<int64_t>(source[static_cast<size_t>(i)]) * h,
                  static_cast<size_t>(h) * sizeof(float));
    for (size_t j = 0; j < L; ++j) {
      xs[j + 1].resize(static_cast<size_t>(n * h));
      pres[j].resize(static_cast<size_t>(n * h));
      const Param& w = weight(k, static_cast<int32_t>(j));
      const Param& b = bias(k, static_cast<int32_t>(j));
      decoding::medusa_resblock_forward(host, cpu::matrix_view(w.value.data(), h, h),
                                        b.value.data(), xs[j].data(), n, xs[j + 1].data(),
                                        pres[j].data());
    }
    logits.resize(static_cast<size_t>(n * vocab));
    lm_head_forward(host, xs[L].data(), n, lm_head, logits.data());

    // Per row: KL(p || q) = sum p log p - sum p log q = -H(p) - sum p (l - logZ); gradient
    // scale * (q - p) in place of the logits.
    std::vector<double> kl(static_cast<size_t>(n), 0.0);
    std::vector<int32_t> rank(static_cast<size_t>(n), 0);
    sdk::parallel_for(host, n, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* l = logits.data() + r * vocab;
        const float* p =
            base_out.probs.data() + static_cast<int64_t>(target[static_cast<size_t>(r)]) * vocab;
        const int32_t want = base_out.argmax[static_cast<size_t>(target[static_cast<size_t>(r)])];
        int32_t above = 0;
        double max_v = l[0];
        for (int64_t i = 0; i < vocab; ++i) {
          max_v = std::max<double>(max_v, l[i]);
          above += (l[i] > l[want] || (l[i] == l[want] && i < want)) ? 1 : 0;
        }
        rank[static_cast<size_t>(r)] = above;
        double z = 0, cross = 0;
        for (int64_t i = 0; i < vocab; ++i) {
          z += std::exp(static_cast<double>(l[i]) - max_v);
          cross += static_cast<double>(p[i]) * (static_cast<double>(l[i]) - max_v);
        }
        const double log_z = std::log(z);
        kl[static_cast<size_t>(r)] =
            -base_out.entropy[static_cast<size_t>(target[static_cast<size_t>(r)])] -
            (cross - log_z);
        if (scale != 0.0)
          for (int64_t i = 0; i < vocab; ++i) {
            const double q = std::exp(static_cast<double>(l[i]) - max_v - log_z);
            l[i] = static_cast<float>(scale * (q - static_cast<double>(p[i])));
          }
      }
    });
    for (int64_t r = 0; r < n; ++r) {
      result.kl_sum += kl[static_cast<size_t>(r)];
      if (ranks != nullptr && rank[static_cast<size_t>(r)] < MedusaEval::kRanks)
        ++(*ranks)[static_cast<size_t>(rank[static_cast<size_t>(r)])];
    }
    if (scale == 0.0) return result;

    // Back through the shared lm head (frozen) and the ResBlocks.
    grad_x.resize(static_cast<size_t>(n * h));
    lm_head_backward(host, xs[L].data(), logits.data(), n, lm_head, grad_x.data(), nullptr);
    grad_a.resize(static_cast<size_t>(n * h));
    for (size_t jj = L; jj-- > 0;) {
      const auto j = static_cast<int32_t>(jj);
      Param& w = weight(k, j);
      Param& b = bias(k, j);
      // x_{j+1} = x_j + silu(a), a = x_j W^T + b: da = dx_{j+1} * silu'(a).
      const float* a = pres[jj].data();
      for (int64_t i = 0; i < n * h; ++i) {
        const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(a[i])));
        grad_a[static_cast<size_t>(i)] =
            static_cast<float>(grad_x[static_cast<size_t>(i)] * s * (1.0 + a[i] * (1.0 - s)));
      }
      cpu::matmul_tn_add(host, grad_a.data(), h, xs[jj].data(), h, n, h, h, w.grad.data(), h);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < h; ++c)
          b.grad[static_cast<size_t>(c)] += grad_a[static_cast<size_t>(i * h + c)];
      if (jj > 0)  // dx_j = dx_{j+1} + da W
        cpu::matmul_nn(host, grad_a.data(), n, h, cpu::matrix_view(w.value.data(), h, h),
                       grad_x.data(), h, true);
    }
    return result;
  }

  // Positions that have a target for head 0: what the loss is normalised by.
  static int64_t count(const std::vector<TrainBatch>& batches) {
    int64_t c = 0;
    for (const TrainBatch& b : batches)
      for (size_t s = 0; s + 1 < b.offsets.size(); ++s)
        c += std::max(0, b.offsets[s + 1] - b.offsets[s] - 1);
    return c;
  }

  double gradients(const std::vector<TrainBatch>& batches) {
    for (Param& p : params) std::fill(p.grad.begin(), p.grad.end(), 0.0f);
    const int64_t total = count(batches);
    if (total == 0)
      throw Error("medusa training: the micro-batches hold no position with a target");
    double loss = 0;
    for (const TrainBatch& batch : batches) {
      run_base(batch);
      for (int32_t k = 0; k < config.heads; ++k) {
        const double w = std::pow(config.decay, k);
        loss += w * run_head(batch, k, w / static_cast<double>(total), nullptr).kl_sum;
      }
    }
    return loss / static_cast<double>(total);
  }
};

MedusaTrainer::MedusaTrainer(Model& base, const MedusaTrainConfig& config)
    : impl_(std::make_unique<Impl>(base, config)) {}
MedusaTrainer::~MedusaTrainer() = default;

const MedusaTrainConfig& MedusaTrainer::config() const {
  return impl_->config;
}
int64_t MedusaTrainer::steps() const {
  return impl_->step;
}
int64_t MedusaTrainer::parameters() const {
  int64_t n = 0;
  for (const Param& p : impl_->params) n += static_cast<int64_t>(p.value.size());
  return n;
}
std::vector<std::string> MedusaTrainer::names() const {
  std::vector<std::string> out;
  for (const Param& p : impl_->params) out.push_back(p.name);
  return out;
}
namespace {
template <class Params>
auto* find_param(Params& params, const std::string& name) {
  for (auto& p : params)
    if (p.name == name) return &p;
  throw Error("medusa training: no tensor named '" + name + "'");
}
}  // namespace
float* MedusaTrainer::value(const std::string& name) {
  return find_param(impl_->params, name)->value.data();
}
const float* MedusaTrainer::gradient(const std::string& name) const {
  return find_param(impl_->params, name)->grad.data();
}
int64_t MedusaTrainer::size(const std::string& name) const {
  return static_cast<int64_t>(find_param(impl_->params, name)->value.size());
}

double MedusaTrainer::compute_gradients(const std::vector<TrainBatch>& micro_batches) {
  return impl_->gradients(micro_batches);
}

StepStats MedusaTrainer::step(const std::vector<TrainBatch>& micro_batches) {
  Impl& im = *impl_;
  StepStats stats;
  stats.loss = im.gradients(micro_batches);
  stats.count = Impl::count(micro_batches);
  for (const TrainBatch& b : micro_batches) stats.tokens += static_cast<int64_t>(b.tokens.size());
  std::vector<GradSpan> spans;
  for (Param& p : im.params) spans.push_back({p.grad.data(), static_cast<int64_t>(p.grad.size())});
  stats.grad_norm = global_norm(im.host, spans);
  stats.clip_factor = clip_factor(stats.grad_norm, im.config.clip_norm);
  if (!std::isfinite(stats.grad_norm))
    throw Error("medusa training: the gradient norm is " + std::to_string(stats.grad_norm) +
                " at step " + std::to_string(im.step + 1) + "; lower the learning rate");
  ++im.step;
  stats.step = im.step;
  stats.lr = scheduled_lr(im.config.adamw.lr, im.config.schedule, im.step);
  for (Param& p : im.params)
    adamw_update(im.host, im.config.adamw, stats.lr, im.step, p.decay, p.value.data(),
                 p.grad.data(), p.m.data(), p.v.data(), static_cast<int64_t>(p.value.size()),
                 static_cast<float>(stats.clip_factor));
  return stats;
}

MedusaEval MedusaTrainer::evaluate(const std::vector<TrainBatch>& batches) {
  Impl& im = *impl_;
  MedusaEval e;
  const auto heads = static_cast<size_t>(im.config.heads);
  e.head_loss.assign(heads, 0.0);
  e.positions.assign(heads, 0);
  e.rank_counts.assign(heads, std::vector<int64_t>(MedusaEval::kRanks, 0));
  const int64_t total = Impl::count(batches);
  std::vector<double> sums(heads, 0.0);
  for (const TrainBatch& batch : batches) {
    im.run_base(batch);
    for (int32_t k = 0; k < im.config.heads; ++k) {
      const auto r = im.run_head(batch, k, 0.0, &e.rank_counts[static_cast<size_t>(k)]);
      sums[static_cast<size_t>(k)] += r.kl_sum;
      e.positions[static_cast<size_t>(k)] += r.rows;
    }
  }
  for (size_t k = 0; k < heads; ++k) {
    e.head_loss[k] = e.positions[k] > 0 ? sums[k] / static_cast<double>(e.positions[k]) : 0.0;
    if (total > 0)
      e.loss +=
          std::pow(im.config.decay, static_cast<double>(k)) * sums[k] / static_cast<double>(total);
  }
  return e;
}

namespace {
Tensor f32_tensor(const std::vector<float>& v, std::vector<int64_t> shape) {
  Tensor t(std::move(shape), TS_F32);
  std::memcpy(t.raw(), v.data(), v.size() * sizeof(float));
  return t;
}
std::vector<int64_t> shape_of(const Param& p, int64_t hidden) {
  return p.decay ? std::vector<int64_t>{hidden, hidden} : std::vector<int64_t>{hidden};
}
}  // namespace

void MedusaTrainer::save(const fs::path& folder) const {
  const Impl& im = *impl_;
  StagingFolder staging(folder, true);
  WeightStore values, moments;
  for (const Param& p : im.params) {
    values.add(p.name, f32_tensor(p.value, shape_of(p, im.hidden)));
    moments.add(p.name + ".exp_avg", f32_tensor(p.m, shape_of(p, im.hidden)));
    moments.add(p.name + ".exp_avg_sq", f32_tensor(p.v, shape_of(p, im.hidden)));
  }
  Tensor step({1}, TS_I64);
  *static_cast<int64_t*>(step.raw()) = im.step;
  moments.add("step", step);
  write_safetensors(staging.path() / "heads.safetensors", values);
  write_safetensors(staging.path() / "optimizer.safetensors", moments);
  staging.commit();
}

void MedusaTrainer::load(const fs::path& folder) {
  Impl& im = *impl_;
  const WeightStore values = read_safetensors(folder / "heads.safetensors");
  const WeightStore moments = read_safetensors(folder / "optimizer.safetensors");
  const auto check = [&](const WeightStore& store, const std::string& file, const std::string& name,
                         const Param& p) -> const Tensor& {
    if (!store.has(name))
      throw Error((folder / file).string() + ": tensor '" + name +
                  "' is missing; the checkpoint does not match these heads (" +
                  std::to_string(im.config.heads) + " heads of " +
                  std::to_string(im.config.layers) + " layers)");
    const Tensor& t = store.get(name);
    if (t.dtype() != TS_F32 || t.shape() != shape_of(p, im.hidden))
      throw Error((folder / file).string() + ": tensor '" + name +
                  "' has the wrong shape or dtype");
    return t;
  };
  if (values.all().size() != im.params.size())
    throw Error((folder / "heads.safetensors").string() + ": holds " +
                std::to_string(values.all().size()) + " tensors, expected " +
                std::to_string(im.params.size()));
  for (const Param& p : im.params) {
    check(values, "heads.safetensors", p.name, p);
    check(moments, "optimizer.safetensors", p.name + ".exp_avg", p);
    check(moments, "optimizer.safetensors", p.name + ".exp_avg_sq", p);
  }
  if (!moments.has("step") || moments.get("step").dtype() != TS_I64)
    throw Error((folder / "optimizer.safetensors").string() + ": no i64 tensor 'step'");
  for (Param& p : im.params) {
    const auto copy = [&](const Tensor& t, std::vector<float>& out) {
      std::memcpy(out.data(), t.raw(), out.size() * sizeof(float));
    };
    copy(values.get(p.name), p.value);
    copy(moments.get(p.name + ".exp_avg"), p.m);
    copy(moments.get(p.name + ".exp_avg_sq"), p.v);
  }
  im.step = *static_cast<const int64_t*>(moments.get("step").raw());
}

void MedusaTrainer::write_heads(const fs::path& folder, const MedusaEval* eval,
                                const std::string& extra) const {
  const Impl& im = *impl_;
  StagingFolder staging(folder, true);
  WeightStore store;
  for (const Param& p : im.params) store.add(p.name, f32_tensor(p.value, shape_of(p, im.hidden)));
  write_safetensors(staging.path() / "medusa_lm_head.safetensors", store,
                    {{"format", "pt"}, {"projection", "the base model's lm head, shared"}});
  nlohmann::json config = {{"medusa_num_heads", im.config.heads},
                           {"medusa_num_layers", im.config.layers},
                           {"hidden_size", im.hidden},
                           {"vocab_size", im.vocab},
                           {"medusa_shared_lm_head", true},
                           {"medusa_training_steps", im.step}};
  if (eval != nullptr && !eval->positions.empty()) {
    nlohmann::json acc = nlohmann::json::array();
    for (int32_t k = 0; k < im.config.heads; ++k) {
      nlohmann::json row = nlohmann::json::array();
      for (int32_t n = 1; n <= MedusaEval::kRanks; ++n) row.push_back(eval->top(k, n));
      acc.push_back(row);
    }
    config["medusa_top_k_accuracy"] = acc;
    config["medusa_eval_positions"] = eval->positions;
  }
  if (!extra.empty()) config.merge_patch(nlohmann::json::parse(extra));
  write_file_atomically(staging.path() / "config.json", config.dump(2) + "\n");
  staging.commit();
}

}  // namespace tessera::train
