#include <tessera/engine/error.hpp>
#include <tessera/puzzle/evaluation.hpp>
#include <tessera/puzzle/scoring.hpp>
#include <tessera/train/losses.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace tessera::puzzle {

namespace {

using Clock = std::chrono::steady_clock;

double perplexity_sum(const ts_host* host, const std::vector<float>& logits, int64_t vocab,
                      const std::vector<int32_t>& targets) {
  int64_t counted = 0;
  return train::cross_entropy(host, logits.data(), static_cast<int64_t>(targets.size()), vocab,
                              targets.data(), train::kIgnoreIndex, nullptr, 1.0, &counted);
}

}  // namespace

QualityFigures compare_quality(Model& parent, Model& child, const std::vector<EvalBatch>& batches) {
  if (parent.vocab() != child.vocab())
    throw Error("evaluation: the parent's vocabulary has " + std::to_string(parent.vocab()) +
                " tokens, the child's " + std::to_string(child.vocab()));
  const int64_t vocab = parent.vocab();
  const ts_host* host = parent.pool().host();
  QualityFigures q;
  double kl = 0, parent_nll = 0, child_nll = 0;
  int64_t agreed = 0;
  for (const EvalBatch& b : batches) {
    const auto n = static_cast<int64_t>(b.inputs.tokens.size());
    if (b.targets.size() != b.inputs.tokens.size())
      throw Error("evaluation: a batch has " + std::to_string(n) + " tokens but " +
                  std::to_string(b.targets.size()) + " targets");
    const train::RecordedOutputs p = train::record_outputs(parent, b.inputs);
    const train::RecordedOutputs c = train::record_outputs(child, b.inputs);
    const ScoreSums s = compare_logits(host, c.logits.data(), p.logits.data(), n, vocab);
    kl += s.kl;
    agreed += s.agreed;
    parent_nll += perplexity_sum(host, p.logits, vocab, b.targets);
    child_nll += perplexity_sum(host, c.logits, vocab, b.targets);
    q.tokens += n;
  }
  if (q.tokens == 0) throw Error("evaluation: no held-out tokens");
  const auto t = static_cast<double>(q.tokens);
  q.kl = kl / t;
  q.agreement = static_cast<double>(agreed) / t;
  q.parent_perplexity = std::exp(parent_nll / t);
  q.child_perplexity = std::exp(child_nll / t);
  return q;
}

std::vector<SpeedFigures> compare_speed(Model& parent, Model& child, const Scenario& scenario) {
  const int32_t vocab = parent.vocab();
  std::vector<SpeedFigures> out;
  for (const int32_t b : scenario.batch_sizes) {
    for (Model* m : {&parent, &child})
      if (m->slots() < b || m->capacity() < scenario.prefill_len + scenario.decode_len)
        throw Error("evaluation: a model has " + std::to_string(m->slots()) + " slots of " +
                    std::to_string(m->capacity()) + " tokens; the scenario needs " +
                    std::to_string(b) + " of " +
                    std::to_string(scenario.prefill_len + scenario.decode_len));
    const ForwardBatch prompt = generation_batch(b, scenario.prefill_len, vocab);
    std::vector<float> logits(static_cast<size_t>(b) * static_cast<size_t>(vocab));
    // One generation: the prefill, then decode_len steps feeding each sequence's argmax.
    const auto generate = [&](Model& m, double& prefill_s, double& decode_s) {
      for (int32_t s = 0; s < b; ++s) m.reset(s);
      auto t0 = Clock::now();
      m.forward(prompt, logits.data(), nullptr);
      prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
      ForwardBatch step = generation_batch(b, 1, vocab);
      t0 = Clock::now();
      for (int32_t i = 0; i < scenario.decode_len; ++i) {
        for (int32_t s = 0; s < b; ++s) {
          const float* row = logits.data() + static_cast<size_t>(s) * static_cast<size_t>(vocab);
          step.tokens[static_cast<size_t>(s)] =
              static_cast<int32_t>(std::max_element(row, row + vocab) - row);
        }
        m.forward(step, logits.data(), nullptr);
      }
      decode_s = std::chrono::duration<double>(Clock::now() - t0).count();
      for (int32_t s = 0; s < b; ++s) m.reset(s);
    };
    double p0 = 0, d0 = 0;
    generate(parent, p0, d0);  // warm-up
    generate(child, p0, d0);
    std::vector<double> pp, pd, cp, cd;
    for (int32_t r = 0; r < scenario.repeats; ++r) {
      double p = 0, d = 0;
      generate(parent, p, d);
      pp.push_back(p);
      pd.push_back(d);
      generate(child, p, d);
      cp.push_back(p);
      cd.push_back(d);
    }
    SpeedFigures f;
    f.batch = b;
    f.parent_prefill = summarise(pp);
    f.parent_decode = summarise(pd);
    f.child_prefill = summarise(cp);
    f.child_decode = summarise(cd);
    out.push_back(f);
  }
  return out;
}

}  // namespace tessera::puzzle
