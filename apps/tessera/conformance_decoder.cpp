// The decoder suite: a decoder provider driven through the host's wrapper (Decoder) over a
// synthetic ts_decode_host that has no model: each slot's logits are a deterministic
// function of the tokens it holds. Every decoder gets the generic checks (tokens in range,
// budgets, end tokens, feeding what it emits, determinism, slots independent of each other,
// refusing bad parameters and steps); "greedy" must equal argmax; a decoder that takes
// seed, top_k, temperature (or top_p, min_p) gets the checks of those parameters.
#include <tessera/engine/decoder.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/thread_pool.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "conformance.hpp"

namespace tessera::cli {
namespace {

constexpr int32_t kHidden = 8;
constexpr int32_t kPromptLength = 3;
constexpr int32_t kCapacity = 8;  // room per sequence and step
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) from a counter-based stream.
double uniform(uint64_t seed, uint64_t i) {
  return static_cast<double>(mix(seed ^ mix(i)) >> 11) * 0x1.0p-53;
}

uint64_t history_hash(uint64_t seed, int32_t slot, const std::vector<int32_t>& tokens) {
  uint64_t h = mix(seed ^ (static_cast<uint64_t>(slot) << 32));
  for (int32_t t : tokens) h = mix(h ^ static_cast<uint64_t>(static_cast<uint32_t>(t)));
  return h;
}

// The logits after `tokens` were fed to `slot`: out[vocab].
using LogitsFn =
    std::function<void(int32_t slot, const std::vector<int32_t>& tokens, int32_t vocab, float*)>;

// Pseudo-random logits of the slot's history. `ties`: small integers (many equal logits)
// and a few -inf; else continuous values.
LogitsFn random_logits(uint64_t seed, bool ties) {
  return [seed, ties](int32_t slot, const std::vector<int32_t>& tokens, int32_t vocab, float* out) {
    const uint64_t h = history_hash(seed, slot, tokens);
    for (int32_t i = 0; i < vocab; ++i) {
      const double u = uniform(h, static_cast<uint64_t>(i));
      if (ties) {
        const bool masked = uniform(h ^ 0x5555, static_cast<uint64_t>(i)) < 0.05;
        out[i] = masked ? kNegInf : static_cast<float>(std::floor(u * 8.0) - 4.0);
      } else {
        out[i] = static_cast<float>((u - 0.5) * 8.0);
      }
    }
    out[h % static_cast<uint64_t>(vocab)] = 4.0f;  // never all -inf
  };
}

LogitsFn constant_logits(std::vector<float> values) {
  return [values = std::move(values)](int32_t, const std::vector<int32_t>&, int32_t vocab,
                                      float* out) {
    std::copy_n(values.begin(), std::min<size_t>(values.size(), static_cast<size_t>(vocab)), out);
  };
}

int32_t argmax(const float* logits, int32_t vocab) {
  int32_t best = 0;
  for (int32_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

std::string tokens_string(const std::vector<int32_t>& tokens, size_t limit = 16) {
  std::string s = "[";
  for (size_t i = 0; i < tokens.size() && i < limit; ++i)
    (s += i ? ", " : "") += std::to_string(tokens[i]);
  if (tokens.size() > limit) s += ", ...";
  return s + "]";
}

// ------------------------------------------------------------------ the host

// A ts_decode_host over synthetic logits. It checks what the decoder feeds it (known slots,
// tokens in range, monotone offsets) and remembers each slot's tokens, so the suite can
// compare them with what the decoder emitted.
class SyntheticHost {
 public:
  SyntheticHost(int32_t vocab, LogitsFn logits) : vocab_(vocab), logits_fn_(std::move(logits)) {
    host_.struct_size = sizeof(ts_decode_host);
    host_.ctx = this;
    host_.vocab = vocab;
    host_.hidden = kHidden;
    host_.forward = &SyntheticHost::forward;
    host_.compact_kv = &SyntheticHost::compact_kv;
    host_.last_logits = &SyntheticHost::last_logits;
    host_.last_hidden = &SyntheticHost::last_hidden;
    host_.length = &SyntheticHost::length;
  }

  // As if `prompt` had been fed to `slot`.
  void prefill(int32_t slot, std::vector<int32_t> prompt) {
    Slot& s = slots_[slot];
    s.tokens = std::move(prompt);
    refresh(slot, s);
  }

  const ts_decode_host& c_host() const { return host_; }
  const std::vector<int32_t>& tokens(int32_t slot) const { return slots_.at(slot).tokens; }
  const std::vector<float>& logits(int32_t slot) const { return slots_.at(slot).logits; }
  // The first thing the decoder did wrong through the host; empty when nothing.
  const std::string& violation() const { return violation_; }
  int32_t forward_calls() const { return forward_calls_; }

 private:
  struct Slot {
    std::vector<int32_t> tokens;
    std::vector<float> logits, hidden;
  };

  void refresh(int32_t slot, Slot& s) {
    s.logits.assign(static_cast<size_t>(vocab_), 0.0f);
    logits_fn_(slot, s.tokens, vocab_, s.logits.data());
    s.hidden.resize(kHidden);
    const uint64_t h = history_hash(7, slot, s.tokens);
    for (int32_t i = 0; i < kHidden; ++i)
      s.hidden[static_cast<size_t>(i)] = static_cast<float>(uniform(h, static_cast<uint64_t>(i)));
  }

  int refuse(ts_error* err, const std::string& message) {
    if (violation_.empty()) violation_ = message;
    std::snprintf(err->message, sizeof(err->message), "%s", message.c_str());
    return TS_ERROR;
  }

  static int forward(void* ctx, const ts_forward_request* request, ts_error* err) {
    auto& self = *static_cast<SyntheticHost*>(ctx);
    ++self.forward_calls_;
    if (request == nullptr || request->n_seqs < 1 || request->slots == nullptr ||
        request->offsets == nullptr || request->tokens == nullptr)
      return self.refuse(err, "forward: the request needs n_seqs >= 1, slots, offsets and tokens");
    if (request->offsets[0] != 0) return self.refuse(err, "forward: offsets[0] is not 0");
    for (int32_t s = 0; s < request->n_seqs; ++s) {
      const int32_t slot = request->slots[s];
      if (self.slots_.count(slot) == 0)
        return self.refuse(err, "forward: slot " + std::to_string(slot) + " was never prefilled");
      if (request->offsets[s + 1] <= request->offsets[s])
        return self.refuse(err, "forward: sequence " + std::to_string(s) + " has no tokens");
      for (int32_t i = request->offsets[s]; i < request->offsets[s + 1]; ++i)
        if (request->tokens[i] < 0 || request->tokens[i] >= self.vocab_)
          return self.refuse(err, "forward: token " + std::to_string(request->tokens[i]) +
                                      " is outside the vocabulary of " +
                                      std::to_string(self.vocab_));
    }
    for (int32_t s = 0; s < request->n_seqs; ++s) {
      const int32_t slot = request->slots[s];
      Slot& state = self.slots_[slot];
      for (int32_t i = request->offsets[s]; i < request->offsets[s + 1]; ++i) {
        state.tokens.push_back(request->tokens[i]);
        self.refresh(slot, state);
        const auto row = static_cast<size_t>(i);
        if (request->logits != nullptr)
          std::copy(state.logits.begin(), state.logits.end(),
                    request->logits + row * static_cast<size_t>(self.vocab_));
        if (request->hidden != nullptr)
          std::copy(state.hidden.begin(), state.hidden.end(), request->hidden + row * kHidden);
      }
    }
    return TS_OK;
  }

  static int compact_kv(void* ctx, int32_t slot, int32_t first_row, const int32_t* keep,
                        int32_t n_keep, ts_error* err) {
    auto& self = *static_cast<SyntheticHost*>(ctx);
    const auto it = self.slots_.find(slot);
    if (it == self.slots_.end())
      return self.refuse(err, "compact_kv: slot " + std::to_string(slot) + " was never prefilled");
    std::vector<int32_t>& tokens = it->second.tokens;
    const auto length = static_cast<int32_t>(tokens.size());
    if (first_row < 0 || first_row > length || n_keep < 0 || (n_keep > 0 && keep == nullptr))
      return self.refuse(err, "compact_kv: first_row " + std::to_string(first_row) + " or n_keep " +
                                  std::to_string(n_keep) + " is out of range");
    std::vector<int32_t> kept(tokens.begin(), tokens.begin() + first_row);
    for (int32_t i = 0; i < n_keep; ++i) {
      if (keep[i] < 0 || first_row + keep[i] >= length || (i > 0 && keep[i] <= keep[i - 1]))
        return self.refuse(err, "compact_kv: keep[" + std::to_string(i) + "] = " +
                                    std::to_string(keep[i]) + " is out of range or not ascending");
      kept.push_back(tokens[static_cast<size_t>(first_row) + static_cast<size_t>(keep[i])]);
    }
    tokens = std::move(kept);
    return TS_OK;
  }

  static const float* last_logits(void* ctx, int32_t slot) {
    auto& self = *static_cast<SyntheticHost*>(ctx);
    const auto it = self.slots_.find(slot);
    return it == self.slots_.end() ? nullptr : it->second.logits.data();
  }

  static const float* last_hidden(void* ctx, int32_t slot) {
    auto& self = *static_cast<SyntheticHost*>(ctx);
    const auto it = self.slots_.find(slot);
    return it == self.slots_.end() ? nullptr : it->second.hidden.data();
  }

  static int32_t length(void* ctx, int32_t slot) {
    auto& self = *static_cast<SyntheticHost*>(ctx);
    const auto it = self.slots_.find(slot);
    return it == self.slots_.end() ? 0 : static_cast<int32_t>(it->second.tokens.size());
  }

  int32_t vocab_;
  LogitsFn logits_fn_;
  ts_decode_host host_{};
  std::map<int32_t, Slot> slots_;
  std::string violation_;
  int32_t forward_calls_ = 0;
};

// ------------------------------------------------------------------ runs

ThreadPool& suite_pool() {
  static ThreadPool pool(1);
  return pool;
}

std::unique_ptr<Decoder> make(const ProviderRef& provider, const ParamList& params, int32_t vocab) {
  ts_decoder_config config{};
  config.struct_size = sizeof(ts_decoder_config);
  config.vocab = vocab;
  config.hidden = kHidden;
  config.params = params.c_params();
  config.weights = nullptr;
  config.host = suite_pool().host();
  return std::make_unique<Decoder>(provider, config,
                                   std::string("decoder ") + provider.provider->name);
}

struct Created {
  int status = TS_OK;
  std::string message;
};

// Calls the provider's create directly, to see its status and message.
Created try_create(const ProviderRef& provider, const ParamList& params, int32_t vocab) {
  const auto* vt = static_cast<const ts_decoder_vtable*>(provider.provider->vtable);
  ts_decoder_config config{};
  config.struct_size = sizeof(ts_decoder_config);
  config.vocab = vocab;
  config.hidden = kHidden;
  config.params = params.c_params();
  config.host = suite_pool().host();
  void* self = nullptr;
  ts_error err{};
  Created out;
  out.status = vt->create(&config, &self, &err);
  out.message.assign(err.message, strnlen(err.message, sizeof(err.message)));
  if (out.status == TS_OK && self != nullptr) vt->destroy(self);
  return out;
}

std::vector<int32_t> prompt_of(int32_t slot, int32_t vocab) {
  std::vector<int32_t> prompt;
  prompt.reserve(kPromptLength);
  for (int32_t k = 0; k < kPromptLength; ++k) prompt.push_back((slot * 7 + k * 3 + 1) % vocab);
  return prompt;
}

struct Run {
  ParamList params;
  int32_t vocab = 64;
  std::vector<int32_t> slots{0};
  std::vector<int32_t> budgets{8};  // per slot
  std::vector<int32_t> eos;         // the end tokens given as eos_token_ids (none when empty)
  LogitsFn logits;
  // Called for every step of every sequence with the logits the step read and what it
  // emitted: throw to fail the case.
  std::function<void(int32_t slot, const std::vector<float>& logits, const int32_t* tokens,
                     int32_t count)>
      on_emit;
};

// Runs every slot of `run` until it finishes, checking the protocol of every step;
// returns each slot's emitted tokens. Throws naming the slot and step of a violation.
std::vector<std::vector<int32_t>> decode(const ProviderRef& provider, const Run& run) {
  ParamList params = run.params;
  if (!run.eos.empty())
    params.set("eos_token_ids", std::vector<int64_t>(run.eos.begin(), run.eos.end()));
  const std::unique_ptr<Decoder> decoder = make(provider, params, run.vocab);
  SyntheticHost host(run.vocab, run.logits);
  const size_t n = run.slots.size();
  for (size_t s = 0; s < n; ++s) host.prefill(run.slots[s], prompt_of(run.slots[s], run.vocab));
  std::vector<std::vector<int32_t>> emitted(n);
  std::vector<bool> done(n, false);
  int32_t budget_total = 0;
  for (int32_t b : run.budgets) budget_total += b;
  const auto is_eos = [&](int32_t t) {
    return std::find(run.eos.begin(), run.eos.end(), t) != run.eos.end();
  };
  for (int32_t step_index = 0;; ++step_index) {
    std::vector<size_t> active;
    for (size_t s = 0; s < n; ++s)
      if (!done[s]) active.push_back(s);
    if (active.empty()) break;
    if (step_index > budget_total)
      throw Error("the sequences did not finish within their budgets of " +
                  std::to_string(budget_total) + " tokens in all");
    const auto m = static_cast<int32_t>(active.size());
    std::vector<int32_t> slots, budget;
    std::vector<std::vector<float>> seen;
    for (size_t s : active) {
      slots.push_back(run.slots[s]);
      budget.push_back(run.budgets[s] - static_cast<int32_t>(emitted[s].size()));
      seen.push_back(host.logits(run.slots[s]));
    }
    std::vector<int32_t> tokens(static_cast<size_t>(m) * kCapacity, -1), counts(active.size(), -1);
    std::vector<uint8_t> finished(active.size(), 2);
    ts_decode_step step{};
    step.struct_size = sizeof(ts_decode_step);
    step.n_seqs = m;
    step.slots = slots.data();
    step.budget = budget.data();
    step.capacity = kCapacity;
    step.tokens = tokens.data();
    step.counts = counts.data();
    step.finished = finished.data();
    decoder->step(host.c_host(), step);
    if (!host.violation().empty())
      throw Error("step " + std::to_string(step_index) +
                  ": the decoder misused the host: " + host.violation());
    for (int32_t i = 0; i < m; ++i) {
      const size_t s = active[static_cast<size_t>(i)];
      const int32_t slot = run.slots[s];
      const std::string where =
          "step " + std::to_string(step_index) + ", slot " + std::to_string(slot) + ": ";
      const int32_t count = counts[static_cast<size_t>(i)];
      const int32_t room = budget[static_cast<size_t>(i)];
      if (count < 1 || count > std::min(room, kCapacity))
        throw Error(where + "counts is " + std::to_string(count) + ", expected 1.." +
                    std::to_string(std::min(room, kCapacity)) + " (budget " + std::to_string(room) +
                    ", capacity " + std::to_string(kCapacity) + ")");
      if (finished[static_cast<size_t>(i)] > 1)
        throw Error(where + "finished was not set (expected 0 or 1)");
      const int32_t* out = tokens.data() + static_cast<size_t>(i) * kCapacity;
      for (int32_t k = 0; k < count; ++k) {
        if (out[k] < 0 || out[k] >= run.vocab)
          throw Error(where + "emitted token " + std::to_string(out[k]) +
                      ", outside the vocabulary of " + std::to_string(run.vocab));
        if (is_eos(out[k]) && k != count - 1)
          throw Error(where + "emitted tokens after the end token " + std::to_string(out[k]));
      }
      if (run.on_emit) run.on_emit(slot, seen[static_cast<size_t>(i)], out, count);
      const size_t before = emitted[s].size();
      emitted[s].insert(emitted[s].end(), out, out + count);
      const bool fin = finished[static_cast<size_t>(i)] == 1;
      const bool ended = is_eos(out[count - 1]);
      if (ended && !fin) throw Error(where + "emitted an end token but did not finish");
      if (count == room && !fin) throw Error(where + "used up its budget but did not finish");
      if (fin && !ended && count < room)
        throw Error(where + "finished with " + std::to_string(room - count) +
                    " token(s) of budget left and no end token");
      // What the slot holds now: the prompt and every token emitted, except that a
      // finished sequence need not feed its last step's tokens.
      std::vector<int32_t> want = prompt_of(slot, run.vocab);
      const size_t floor_length = want.size() + before;
      want.insert(want.end(), emitted[s].begin(), emitted[s].end());
      const std::vector<int32_t>& held = host.tokens(slot);
      const bool prefix =
          held.size() <= want.size() && std::equal(held.begin(), held.end(), want.begin());
      if (!fin && held != want)
        throw Error(where + "the host holds " + tokens_string(held) + " but the prompt and the " +
                    "emitted tokens are " + tokens_string(want) +
                    ": a running sequence must feed every token it emits");
      if (fin && (!prefix || held.size() < floor_length))
        throw Error(where + "the host holds " + tokens_string(held) + ", expected the prompt and " +
                    "the tokens emitted before the last step " + tokens_string(want));
      done[s] = fin;
    }
  }
  return emitted;
}

// ------------------------------------------------------------------ cases

template <class F>
CaseResult yes_no(std::string name, F&& body) {
  CaseResult r;
  r.name = std::move(name);
  r.measured = false;
  try {
    body();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.passed = r.error.empty();
  return r;
}

// Which of the common sampling parameters the decoder takes, with a valid value, and the
// invalid values it must then refuse.
struct ParamProbe {
  const char* key;
  ParamValue valid;
  std::vector<std::pair<std::string, ParamValue>> invalid;  // (as shown, value)
};

std::vector<ParamProbe> probes() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  return {
      {"temperature", 0.7, {{"0", 0.0}, {"-1", -1.0}, {"nan", nan}, {"inf", inf}}},
      {"top_k", int64_t{40}, {{"-1", int64_t{-1}}}},
      {"top_p", 0.9, {{"0", 0.0}, {"1.5", 1.5}, {"-0.1", -0.1}, {"nan", nan}}},
      {"min_p", 0.05, {{"-0.5", -0.5}, {"1.5", 1.5}, {"nan", nan}}},
      {"seed", int64_t{1}, {}},
  };
}

bool takes(const ProviderRef& provider, const char* key, const ParamValue& value) {
  ParamList params;
  params.set(key, value);
  return try_create(provider, params, 64).status == TS_OK;
}

// The decoder's create must return TS_ERROR with a message for `params`.
void expect_refused(const ProviderRef& provider, const ParamList& params, int32_t vocab,
                    const std::string& what) {
  const Created c = try_create(provider, params, vocab);
  if (c.status == TS_OK) throw Error("create accepted " + what);
  if (c.status != TS_ERROR)
    throw Error("create refused " + what + " with status " + std::to_string(c.status) +
                ", expected TS_ERROR");
  if (c.message.empty()) throw Error("create refused " + what + " without a message");
}

// Frequencies of the tokens drawn from constant logits over `draws` steps of one slot.
std::vector<double> frequencies(const ProviderRef& provider, const ParamList& params,
                                const std::vector<float>& logits, int32_t draws) {
  Run run;
  run.params = params;
  run.vocab = static_cast<int32_t>(logits.size());
  run.budgets = {draws};
  run.logits = constant_logits(logits);
  std::vector<double> freq(logits.size(), 0.0);
  const std::vector<std::vector<int32_t>> streams = decode(provider, run);
  for (int32_t t : streams[0]) freq[static_cast<size_t>(t)] += 1.0 / draws;
  return freq;
}

}  // namespace

void check_decoder(const ProviderRef& provider, const ConformanceOptions& options,
                   ConformanceReport& report) {
  const std::string name = provider.provider->name;
  const std::string label = "decoder " + name;
  const bool greedy = name == "greedy";
  std::map<std::string, bool> taken;
  std::string not_taken;
  for (const ParamProbe& p : probes()) {
    taken[p.key] = takes(provider, p.key, p.valid);
    if (!taken[p.key]) (not_taken += not_taken.empty() ? "" : ", ") += p.key;
  }
  if (!not_taken.empty())
    report.skipped.push_back(label + ": takes no " + not_taken + "; the checks of " +
                             (not_taken.find(',') == std::string::npos ? "it" : "those") +
                             " do not apply");
  // Seeded where the decoder takes a seed, so that its runs can be repeated.
  ParamList seeded;
  if (taken["seed"]) seeded.set("seed", int64_t{1234});

  report.cases.push_back(yes_no(label + " emits within its budget and feeds what it emits", [&] {
    Run run;
    run.params = seeded;
    run.slots = {0, 3, 5};
    run.budgets = {1, 5, 12};
    run.logits = random_logits(11, false);
    decode(provider, run);
  }));

  report.cases.push_back(yes_no(label + " is deterministic", [&] {
    Run run;
    run.params = seeded;
    run.slots = {0, 1};
    run.budgets = {16, 16};
    run.logits = random_logits(12, false);
    const auto first = decode(provider, run);
    const auto second = decode(provider, run);
    for (size_t s = 0; s < first.size(); ++s)
      if (first[s] != second[s])
        throw Error("slot " + std::to_string(run.slots[s]) + " emitted " + tokens_string(first[s]) +
                    " then " + tokens_string(second[s]) + " with the same parameters");
  }));

  report.cases.push_back(yes_no(label + " decodes several slots as each alone", [&] {
    Run together;
    together.params = seeded;
    together.slots = {4, 0, 2};
    together.budgets = {6, 10, 3};
    together.logits = random_logits(13, false);
    const auto all = decode(provider, together);
    for (size_t s = 0; s < together.slots.size(); ++s) {
      Run alone = together;
      alone.slots = {together.slots[s]};
      alone.budgets = {together.budgets[s]};
      const auto one = decode(provider, alone);
      if (one[0] != all[s])
        throw Error("slot " + std::to_string(together.slots[s]) + " emitted " +
                    tokens_string(all[s]) + " beside other slots but " + tokens_string(one[0]) +
                    " alone");
    }
  }));

  report.cases.push_back(yes_no(label + " stops at an end token", [&] {
    // The end tokens 5 and 9 are impossible until two tokens were emitted, then 9 is
    // all but certain.
    Run run;
    run.params = seeded;
    run.slots = {0, 2};
    run.budgets = {20, 20};
    run.eos = {5, 9};
    const LogitsFn base = random_logits(14, false);
    run.logits = [base](int32_t slot, const std::vector<int32_t>& tokens, int32_t vocab,
                        float* out) {
      if (tokens.size() == kPromptLength + 2) {
        std::fill(out, out + vocab, 0.0f);
        out[9] = 60.0f;
        return;
      }
      base(slot, tokens, vocab, out);
      out[5] = out[9] = -60.0f;
    };
    const auto streams = decode(provider, run);
    for (size_t s = 0; s < streams.size(); ++s)
      if (streams[s].size() != 3 || streams[s].back() != 9)
        throw Error("slot " + std::to_string(run.slots[s]) + " emitted " +
                    tokens_string(streams[s]) + ", expected 3 tokens ending with the end token 9");
  }));

  report.cases.push_back(yes_no(label + " refuses an unknown parameter", [&] {
    ParamList params;
    params.set("no_such_parameter", int64_t{1});
    expect_refused(provider, params, 64, "the parameter no_such_parameter");
  }));

  report.cases.push_back(yes_no(label + " refuses eos_token_ids outside the vocabulary", [&] {
    for (int64_t bad : {int64_t{64}, int64_t{-1}}) {
      ParamList params;
      params.set("eos_token_ids", std::vector<int64_t>{1, bad});
      expect_refused(provider, params, 64, "eos_token_ids [1, " + std::to_string(bad) + "]");
    }
  }));

  report.cases.push_back(yes_no(label + " refuses a step with budget 0", [&] {
    const std::unique_ptr<Decoder> decoder = make(provider, seeded, 64);
    SyntheticHost host(64, random_logits(15, false));
    host.prefill(0, prompt_of(0, 64));
    const int32_t slot = 0, budget = 0;
    std::vector<int32_t> tokens(kCapacity, -1);
    int32_t count = -1;
    uint8_t finished = 2;
    ts_decode_step step{sizeof(ts_decode_step), 1,      &slot,    &budget, kCapacity,
                        tokens.data(),          &count, &finished};
    try {
      decoder->step(host.c_host(), step);
    } catch (const PluginUnsupported& e) {
      throw Error(std::string("the step was refused as unsupported, expected an error: ") +
                  e.what());
    } catch (const Error& e) {
      if (std::string(e.what()).find("the plugin reported no message") != std::string::npos)
        throw Error("the step was refused without a message");
      if (host.forward_calls() > 0) throw Error("the step was refused but fed the host first");
      return;
    }
    throw Error("the step was accepted (emitted " + std::to_string(count) + " token(s))");
  }));

  for (const ParamProbe& p : probes()) {
    if (!taken[p.key] || p.invalid.empty()) continue;
    std::string shown;
    for (const auto& [text, value] : p.invalid) (shown += shown.empty() ? "" : ", ") += text;
    report.cases.push_back(
        yes_no(label + " refuses bad " + p.key + " (" + shown + ")", [&, key = p.key] {
          for (const auto& [text, value] : p.invalid) {
            ParamList params;
            params.set(key, value);
            expect_refused(provider, params, 64, std::string(key) + " = " + text);
          }
        }));
  }

  if (greedy) {
    const std::vector<int32_t> vocabs =
        options.quick ? std::vector<int32_t>{7, 1000} : std::vector<int32_t>{1, 2, 7, 1000, 50000};
    for (int32_t vocab : vocabs)
      report.cases.push_back(yes_no(
          label + " equals argmax, ties to the lowest index, vocab=" + std::to_string(vocab), [&] {
            Run run;
            run.vocab = vocab;
            run.slots = {0, 1, 6};
            run.budgets = {12, 7, 12};
            run.logits = random_logits(100 + static_cast<uint64_t>(vocab), true);
            run.on_emit = [&](int32_t slot, const std::vector<float>& logits, const int32_t* tokens,
                              int32_t count) {
              const int32_t want = argmax(logits.data(), vocab);
              if (count != 1 || tokens[0] != want) {
                std::ostringstream m;
                m << "slot " << slot << " emitted " << tokens[0] << " (logit "
                  << logits[static_cast<size_t>(tokens[0])] << "), expected " << want << " (logit "
                  << logits[static_cast<size_t>(want)] << ")";
                throw Error(m.str());
              }
            };
            decode(provider, run);
          }));
  }

  if (!greedy && taken["seed"])
    report.cases.push_back(
        yes_no(label + " draws differently with different seeds (flat distribution)", [&] {
          std::vector<std::vector<int32_t>> streams;
          for (int64_t seed : {1, 2}) {
            Run run;
            run.params.set("seed", seed);
            run.vocab = 1000;
            run.budgets = {32};
            run.logits = constant_logits(std::vector<float>(1000, 0.0f));
            streams.push_back(decode(provider, run)[0]);
          }
          if (streams[0] == streams[1])
            throw Error("seeds 1 and 2 both drew " + tokens_string(streams[0]));
          std::vector<int32_t> distinct = streams[0];
          std::sort(distinct.begin(), distinct.end());
          if (std::unique(distinct.begin(), distinct.end()) - distinct.begin() < 8)
            throw Error("32 draws from 1000 equally likely tokens gave " +
                        tokens_string(streams[0], 32));
        }));

  if (!greedy && taken["top_k"])
    report.cases.push_back(yes_no(label + " with top_k=1 equals argmax", [&] {
      Run run;
      run.params = seeded;
      run.params.set("top_k", int64_t{1});
      run.slots = {0, 1};
      run.budgets = {12, 12};
      run.logits = random_logits(16, false);
      run.on_emit = [&](int32_t slot, const std::vector<float>& logits, const int32_t* tokens,
                        int32_t) {
        const int32_t want = argmax(logits.data(), run.vocab);
        if (tokens[0] != want)
          throw Error("slot " + std::to_string(slot) + " drew " + std::to_string(tokens[0]) +
                      ", expected the most likely token " + std::to_string(want));
      };
      decode(provider, run);
    }));

  if (!greedy && taken["temperature"]) {
    // softmax(logits / t) against the frequencies of many draws: a binomial standard
    // deviation is at most 0.0056 at 8000 draws, the tolerance five and a half of them.
    const std::vector<float> logits{0.0f, std::log(2.0f), std::log(5.0f), kNegInf};
    const int32_t draws = options.quick ? 4000 : 8000;
    for (double t : {1.0, 2.0}) {
      CaseResult r;
      std::ostringstream n;
      n << label << " draws follow softmax(logits / temperature), temperature=" << t
        << " draws=" << draws;
      r.name = n.str();
      r.tolerance = options.quick ? 0.045 : 0.03;
      try {
        ParamList params = seeded;
        params.set("temperature", t);
        const std::vector<double> freq = frequencies(provider, params, logits, draws);
        double total = 0;
        std::vector<double> p(logits.size());
        for (size_t i = 0; i < logits.size(); ++i) total += p[i] = std::exp(logits[i] / t);
        for (size_t i = 0; i < logits.size(); ++i) {
          r.max_abs = std::max(r.max_abs, std::fabs(freq[i] - p[i] / total));
          r.max_rel = r.max_abs;
        }
      } catch (const std::exception& e) {
        r.error = e.what();
      }
      r.passed = r.error.empty() && r.max_rel <= r.tolerance;
      report.cases.push_back(r);
    }
  }
}

}  // namespace tessera::cli
