// Generation: prefill the prompt, then let a decoder plugin pick and feed tokens
// through a ts_decode_host that runs the Model.
#include <tessera/engine/decoder.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/generator.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <string>
#include <utility>

namespace tessera {
namespace {

// The Model seen through ts_decode_host, with each slot's last logits and hidden state.
class DecodeHost {
 public:
  DecodeHost(Model& model, bool row_invariant) : model_(model) {
    batch_.row_invariant = row_invariant;
    const auto slots = static_cast<size_t>(model.kv_cache().slots());
    last_logits_.resize(slots);
    last_hidden_.resize(slots);
    host_.struct_size = sizeof(ts_decode_host);
    host_.ctx = this;
    host_.vocab = model.vocab();
    host_.hidden = model.hidden();
    host_.forward = [](void* ctx, const ts_forward_request* request, ts_error* err) {
      return static_cast<DecodeHost*>(ctx)->guarded(
          err, [&](DecodeHost& self) { self.forward(*request); });
    };
    host_.compact_kv = [](void* ctx, int32_t slot, int32_t first_row, const int32_t* keep,
                          int32_t n_keep, ts_error* err) {
      return static_cast<DecodeHost*>(ctx)->guarded(
          err, [&](DecodeHost& self) { self.model_.compact_kv(slot, first_row, keep, n_keep); });
    };
    host_.last_logits = [](void* ctx, int32_t slot) -> const float* {
      return static_cast<DecodeHost*>(ctx)->last(slot, true);
    };
    host_.last_hidden = [](void* ctx, int32_t slot) -> const float* {
      return static_cast<DecodeHost*>(ctx)->last(slot, false);
    };
    host_.length = [](void* ctx, int32_t slot) -> int32_t {
      Model& m = static_cast<DecodeHost*>(ctx)->model_;
      return slot >= 0 && slot < m.kv_cache().slots() ? m.kv_cache().length(slot) : -1;
    };
  }

  const ts_decode_host* c_host() const { return &host_; }

  // The exception the model raised inside a callback, kept to rethrow as it was
  // once the decoder returns (its message travels through the plugin as text too).
  std::exception_ptr take_failure() { return std::exchange(failure_, nullptr); }

  void forward(const ts_forward_request& request) {
    if (request.n_seqs < 1 || request.slots == nullptr || request.offsets == nullptr ||
        request.tokens == nullptr)
      throw Error("decode host forward: expected n_seqs >= 1 and non-NULL slots, offsets, tokens");
    const auto n_seqs = static_cast<size_t>(request.n_seqs);
    batch_.slots.assign(request.slots, request.slots + n_seqs);
    batch_.offsets.assign(request.offsets, request.offsets + n_seqs + 1);
    const int32_t n_tokens = batch_.offsets.back();
    if (n_tokens < 0) throw Error("decode host forward: offsets end below 0");
    batch_.tokens.assign(request.tokens, request.tokens + n_tokens);
    if (request.positions != nullptr)
      batch_.positions.assign(request.positions, request.positions + n_tokens);
    else
      batch_.positions.clear();
    if (request.tree_masks != nullptr)
      batch_.tree_masks.assign(request.tree_masks, request.tree_masks + n_seqs);
    else
      batch_.tree_masks.clear();

    const auto vocab = static_cast<size_t>(model_.vocab());
    const auto hidden = static_cast<size_t>(model_.hidden());
    const bool all_rows = request.logits != nullptr || request.hidden != nullptr;
    batch_.last_only = !all_rows;
    const size_t rows = all_rows ? static_cast<size_t>(n_tokens) : n_seqs;
    float* logits = request.logits;
    float* hidden_out = request.hidden;
    if (logits == nullptr) {
      logits_scratch_.resize(rows * vocab);
      logits = logits_scratch_.data();
    }
    if (hidden_out == nullptr) {
      hidden_scratch_.resize(rows * hidden);
      hidden_out = hidden_scratch_.data();
    }
    model_.forward(batch_, logits, hidden_out);

    for (size_t s = 0; s < n_seqs; ++s) {
      const size_t row = all_rows ? static_cast<size_t>(batch_.offsets[s + 1] - 1) : s;
      const auto slot = static_cast<size_t>(batch_.slots[s]);
      last_logits_[slot].assign(logits + row * vocab, logits + (row + 1) * vocab);
      last_hidden_[slot].assign(hidden_out + row * hidden, hidden_out + (row + 1) * hidden);
    }
  }

  void clear(int32_t slot) {
    last_logits_.at(static_cast<size_t>(slot)).clear();
    last_hidden_.at(static_cast<size_t>(slot)).clear();
  }

 private:
  template <class F>
  int guarded(ts_error* err, F&& f) noexcept {
    try {
      f(*this);
      return TS_OK;
    } catch (const std::exception& e) {
      failure_ = std::current_exception();
      sdk::set_error(err, e.what());
    } catch (...) {
      failure_ = std::current_exception();
      sdk::set_error(err, "unknown exception in the decode host");
    }
    return TS_ERROR;
  }

  // NULL for a slot out of range or one that has not been fed yet.
  const float* last(int32_t slot, bool logits) const {
    if (slot < 0 || static_cast<size_t>(slot) >= last_logits_.size()) return nullptr;
    const auto& v =
        logits ? last_logits_[static_cast<size_t>(slot)] : last_hidden_[static_cast<size_t>(slot)];
    return v.empty() ? nullptr : v.data();
  }

  Model& model_;
  ts_decode_host host_{};
  ForwardBatch batch_;
  std::vector<float> logits_scratch_, hidden_scratch_;
  std::vector<std::vector<float>> last_logits_, last_hidden_;
  std::exception_ptr failure_;
};

std::vector<int64_t> int_list(const ParamValue& value, const std::string& key) {
  if (const auto* list = std::get_if<std::vector<int64_t>>(&value)) return *list;
  if (const auto* one = std::get_if<int64_t>(&value)) return {*one};
  throw Error("decoder parameter '" + key + "' must be an integer or a list of integers");
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Generator::Generator(Model& model, const PluginRegistry& registry)
    : model_(model), registry_(registry) {}

GenerateResult Generator::generate(const std::vector<int32_t>& prompt,
                                   const GenerateOptions& options,
                                   const std::function<void(int32_t)>& on_token) {
  return generate_after(0, prompt, options, on_token);
}

GenerateResult Generator::generate_after(int32_t keep, const std::vector<int32_t>& prompt,
                                         const GenerateOptions& options,
                                         const std::function<void(int32_t)>& on_token) {
  std::function<void(size_t, int32_t)> each;
  if (on_token) each = [&on_token](size_t, int32_t token) { on_token(token); };
  return generate_batch({SequenceRequest{0, keep, prompt}}, options, each).front();
}

std::vector<GenerateResult> Generator::generate_batch(
    const std::vector<SequenceRequest>& sequences, const GenerateOptions& options,
    const std::function<void(size_t, int32_t)>& on_token) {
  const int32_t capacity = model_.kv_cache().capacity();
  const int32_t slots = model_.kv_cache().slots();
  if (sequences.empty()) throw Error("generate: no sequences; expected at least one");
  if (sequences.size() > static_cast<size_t>(slots))
    throw Error("generate: " + std::to_string(sequences.size()) + " sequences but the model has " +
                std::to_string(slots) + " slots (ModelOptions::slots)");
  const size_t n = sequences.size();
  for (size_t i = 0; i < n; ++i) {
    const SequenceRequest& r = sequences[i];
    const std::string which = n == 1 ? std::string() : " (sequence " + std::to_string(i) + ")";
    if (r.slot < 0 || r.slot >= slots)
      throw Error("generate" + which + ": slot " + std::to_string(r.slot) +
                  " is out of range; the model has " + std::to_string(slots) +
                  " slots (ModelOptions::slots)");
    for (size_t j = 0; j < i; ++j)
      if (sequences[j].slot == r.slot)
        throw Error("generate: sequences " + std::to_string(j) + " and " + std::to_string(i) +
                    " both use slot " + std::to_string(r.slot) + "; expected distinct slots");
    if (r.tokens.empty())
      throw Error("generate" + which + ": the prompt is empty; expected at least one token");
    const int32_t cached = model_.kv_cache().length(r.slot);
    if (r.keep < 0 || r.keep > cached)
      throw Error("generate" + which + ": keeping " + std::to_string(r.keep) +
                  " cached tokens, but slot " + std::to_string(r.slot) + " holds " +
                  std::to_string(cached) + "; expected 0 <= keep <= " + std::to_string(cached));
    if (r.tokens.size() > static_cast<size_t>(capacity - r.keep))
      throw Error(
          "generate" + which + ": the prompt has " + std::to_string(r.tokens.size()) + " tokens" +
          (r.keep > 0 ? " after " + std::to_string(r.keep) + " cached ones" : std::string()) +
          ", more than the model's capacity of " + std::to_string(capacity) +
          " tokens per sequence");
  }
  if (options.max_new_tokens < 0)
    throw Error("generate: max_new_tokens is " + std::to_string(options.max_new_tokens) +
                ", expected >= 0");

  // Decoder configuration: the caller's params, plus what the model knows.
  ParamList params = options.decoder.params;
  if (params.find("eos_token_ids") == nullptr && !model_.manifest().model.eos_token_ids.empty())
    params.set("eos_token_ids", model_.manifest().model.eos_token_ids);
  if (params.find("vocab_size") == nullptr) params.set("vocab_size", int64_t{model_.vocab()});
  if (params.find("hidden_size") == nullptr) params.set("hidden_size", int64_t{model_.hidden()});
  std::vector<int64_t> eos;
  if (const ParamValue* v = params.find("eos_token_ids")) eos = int_list(*v, "eos_token_ids");
  const std::unique_ptr<Decoder> decoder =
      make_decoder(registry_, options.decoder, params, model_.vocab(), model_.hidden(),
                   model_.pool().host(), options.decoder_weights);

  std::vector<GenerateResult> results(n);
  if (options.max_new_tokens == 0) return results;

  if (options.row_invariant) {
    const std::string why = model_.row_invariant_unsupported();
    if (!why.empty())
      throw Error("generate: row-invariant (exact) decoding was asked for, but " + why);
  }
  DecodeHost host(model_, options.row_invariant);
  std::vector<int32_t> slot_of(n), offsets(n + 1, 0), tokens;
  std::vector<int32_t> remaining(n);
  for (size_t i = 0; i < n; ++i) {
    const SequenceRequest& r = sequences[i];
    if (r.keep == 0)
      model_.reset(r.slot);
    else if (r.keep < model_.kv_cache().length(r.slot))
      model_.compact_kv(r.slot, r.keep, nullptr, 0);  // drops the rows after `keep`
    host.clear(r.slot);
    slot_of[i] = r.slot;
    tokens.insert(tokens.end(), r.tokens.begin(), r.tokens.end());
    offsets[i + 1] = static_cast<int32_t>(tokens.size());
    // Every emitted token but the last is fed back, so n tokens need n - 1 free rows.
    const int32_t room = capacity - r.keep - static_cast<int32_t>(r.tokens.size()) + 1;
    remaining[i] = std::min(options.max_new_tokens, room);
  }

  const auto prefill_start = std::chrono::steady_clock::now();
  {
    ts_forward_request request{};
    request.struct_size = sizeof(ts_forward_request);
    request.n_seqs = static_cast<int32_t>(n);
    request.slots = slot_of.data();
    request.offsets = offsets.data();
    request.tokens = tokens.data();
    host.forward(request);  // last_only: one row of logits per sequence
  }
  const double prefill_seconds = seconds_since(prefill_start);

  const auto decode_start = std::chrono::steady_clock::now();
  constexpr int32_t kStepCapacity = 16;
  std::vector<size_t> running;  // indices of the sequences still going
  for (size_t i = 0; i < n; ++i)
    if (remaining[i] > 0) running.push_back(i);
  std::vector<int32_t> step_slots, step_budget, step_tokens, step_counts;
  std::vector<uint8_t> step_finished;
  while (!running.empty()) {
    const size_t m = running.size();
    step_slots.resize(m);
    step_budget.resize(m);
    for (size_t k = 0; k < m; ++k) {
      step_slots[k] = slot_of[running[k]];
      step_budget[k] = remaining[running[k]];
    }
    step_tokens.assign(m * kStepCapacity, 0);
    step_counts.assign(m, 0);
    step_finished.assign(m, 0);
    ts_decode_step step{};
    step.struct_size = sizeof(ts_decode_step);
    step.n_seqs = static_cast<int32_t>(m);
    step.slots = step_slots.data();
    step.budget = step_budget.data();
    step.capacity = kStepCapacity;
    step.tokens = step_tokens.data();
    step.counts = step_counts.data();
    step.finished = step_finished.data();
    try {
      decoder->step(*host.c_host(), step);
    } catch (const Error&) {
      // A failure inside the model is rethrown as itself (with its type).
      if (std::exception_ptr failure = host.take_failure()) std::rethrow_exception(failure);
      throw;
    }
    std::vector<size_t> still;
    for (size_t k = 0; k < m; ++k) {
      const size_t i = running[k];
      const int32_t count = step_counts[k];
      const int32_t most = std::min(kStepCapacity, remaining[i]);
      if (count < 0 || count > most)
        throw Error("generate: the decoder emitted " + std::to_string(count) +
                    " tokens in one step for slot " + std::to_string(slot_of[i]) +
                    "; expected 0 to " + std::to_string(most));
      if (count == 0 && step_finished[k] == 0)
        throw Error("generate: the decoder emitted no token for slot " +
                    std::to_string(slot_of[i]) + " and did not finish it");
      if (count > 0) ++results[i].decode_steps;
      for (int32_t t = 0; t < count; ++t) {
        const int32_t token = step_tokens[k * kStepCapacity + static_cast<size_t>(t)];
        results[i].tokens.push_back(token);
        if (on_token) on_token(i, token);
      }
      remaining[i] -= count;
      if (step_finished[k] != 0) {
        const int32_t last = count > 0 ? step_tokens[k * kStepCapacity + count - 1] : -1;
        results[i].stopped_on_eos =
            count > 0 && std::find(eos.begin(), eos.end(), int64_t{last}) != eos.end();
      } else if (remaining[i] > 0) {
        still.push_back(i);
      }
    }
    running = std::move(still);
  }
  const double decode_seconds = seconds_since(decode_start);
  for (GenerateResult& r : results) {
    r.prefill_seconds = prefill_seconds;
    r.decode_seconds = decode_seconds;
  }
  return results;
}

}  // namespace tessera
