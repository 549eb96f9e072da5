// Generation: prefill the prompt, then let a decoder plugin pick and feed tokens
// through a ts_decode_host that runs the Model.
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

std::string status_message(int status, const ts_error& err) {
  std::string message(err.message);
  if (message.empty()) message = "the plugin reported no message";
  return status == TS_UNSUPPORTED ? "unsupported: " + message : message;
}

// The Model seen through ts_decode_host, with each slot's last logits and hidden state.
class DecodeHost {
 public:
  explicit DecodeHost(Model& model) : model_(model) {
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
    host_.compact_kv = [](void* ctx, int32_t seq, int32_t first_row, const int32_t* keep,
                          int32_t n_keep, ts_error* err) {
      return static_cast<DecodeHost*>(ctx)->guarded(
          err, [&](DecodeHost& self) { self.model_.compact_kv(seq, first_row, keep, n_keep); });
    };
    host_.last_logits = [](void* ctx, int32_t seq) -> const float* {
      return static_cast<DecodeHost*>(ctx)->last(seq, true);
    };
    host_.last_hidden = [](void* ctx, int32_t seq) -> const float* {
      return static_cast<DecodeHost*>(ctx)->last(seq, false);
    };
    host_.length = [](void* ctx, int32_t seq) -> int32_t {
      Model& m = static_cast<DecodeHost*>(ctx)->model_;
      return seq >= 0 && seq < m.kv_cache().slots() ? m.kv_cache().length(seq) : -1;
    };
  }

  const ts_decode_host* c_host() const { return &host_; }

  // The exception the model raised inside a callback, kept to rethrow as it was
  // once the decoder returns (its message travels through the plugin as text too).
  std::exception_ptr take_failure() { return std::exchange(failure_, nullptr); }

  void forward(const ts_forward_request& request) {
    if (request.n_seqs < 1 || request.seqs == nullptr || request.offsets == nullptr ||
        request.tokens == nullptr)
      throw Error("decode host forward: expected n_seqs >= 1 and non-NULL seqs, offsets, tokens");
    const auto n_seqs = static_cast<size_t>(request.n_seqs);
    batch_.slots.assign(request.seqs, request.seqs + n_seqs);
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
  const float* last(int32_t seq, bool logits) const {
    if (seq < 0 || static_cast<size_t>(seq) >= last_logits_.size()) return nullptr;
    const auto& v =
        logits ? last_logits_[static_cast<size_t>(seq)] : last_hidden_[static_cast<size_t>(seq)];
    return v.empty() ? nullptr : v.data();
  }

  Model& model_;
  ts_decode_host host_{};
  ForwardBatch batch_;
  std::vector<float> logits_scratch_, hidden_scratch_;
  std::vector<std::vector<float>> last_logits_, last_hidden_;
  std::exception_ptr failure_;
};

// A decoder plugin object; destroyed before its library can be released.
class Decoder {
 public:
  Decoder(ProviderRef provider, const ts_decoder_config& config, std::string label)
      : provider_(std::move(provider)), label_(std::move(label)) {
    if (provider_.provider == nullptr || provider_.provider->vtable == nullptr)
      throw Error(label_ + ": the provider has no decoder vtable");
    vt_ = static_cast<const ts_decoder_vtable*>(provider_.provider->vtable);
    const size_t needed = offsetof(ts_decoder_vtable, step) + sizeof(vt_->step);
    if (vt_->struct_size < needed || vt_->create == nullptr || vt_->destroy == nullptr ||
        vt_->step == nullptr)
      throw Error(label_ + ": the decoder vtable lacks create, destroy or step (struct_size " +
                  std::to_string(vt_->struct_size) + ", expected at least " +
                  std::to_string(needed) + ")");
    ts_error err{};
    const int status = vt_->create(&config, &self_, &err);
    if (status != TS_OK) {
      self_ = nullptr;
      throw Error(label_ + ": " + status_message(status, err));
    }
    if (self_ == nullptr) throw Error(label_ + ": create returned OK but no object");
  }
  ~Decoder() {
    if (self_ != nullptr) vt_->destroy(self_);
  }
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  void step(DecodeHost& host, ts_decode_step& step) {
    ts_error err{};
    const int status = vt_->step(self_, host.c_host(), &step, &err);
    if (status == TS_OK) return;
    // A failure inside the model is rethrown as itself (with its type).
    if (std::exception_ptr failure = host.take_failure()) std::rethrow_exception(failure);
    throw Error(label_ + ": step: " + status_message(status, err));
  }

 private:
  const ts_decoder_vtable* vt_ = nullptr;
  ProviderRef provider_;
  void* self_ = nullptr;
  std::string label_;
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
  if (prompt.empty()) throw Error("generate: the prompt is empty; expected at least one token");
  const int32_t capacity = model_.kv_cache().capacity();
  constexpr int32_t kSlot = 0;
  const int32_t cached = model_.kv_cache().length(kSlot);
  if (keep < 0 || keep > cached)
    throw Error("generate: keeping " + std::to_string(keep) + " cached tokens, but slot 0 holds " +
                std::to_string(cached) + "; expected 0 <= keep <= " + std::to_string(cached));
  if (prompt.size() > static_cast<size_t>(capacity - keep))
    throw Error("generate: the prompt has " + std::to_string(prompt.size()) + " tokens" +
                (keep > 0 ? " after " + std::to_string(keep) + " cached ones" : std::string()) +
                ", more than the model's capacity of " + std::to_string(capacity) +
                " tokens per sequence");
  if (options.max_new_tokens < 0)
    throw Error("generate: max_new_tokens is " + std::to_string(options.max_new_tokens) +
                ", expected >= 0");

  // Decoder configuration: the caller's params, plus what the model knows.
  const std::string kind = options.decoder.kind.empty() ? "greedy" : options.decoder.kind;
  ParamList params = options.decoder.params;
  if (params.find("eos_token_ids") == nullptr && !model_.manifest().model.eos_token_ids.empty())
    params.set("eos_token_ids", model_.manifest().model.eos_token_ids);
  if (params.find("vocab_size") == nullptr) params.set("vocab_size", int64_t{model_.vocab()});
  if (params.find("hidden_size") == nullptr) params.set("hidden_size", int64_t{model_.hidden()});
  std::vector<int64_t> eos;
  if (const ParamValue* v = params.find("eos_token_ids")) eos = int_list(*v, "eos_token_ids");

  ProviderRef provider;
  try {
    provider = registry_.find(TS_KIND_DECODER, kind, TS_DEVICE_CPU, options.decoder.plugin);
  } catch (const PluginError& e) {
    throw PluginError("decoder '" + kind + "': " + e.what());
  }
  ts_decoder_config config{};
  config.struct_size = sizeof(ts_decoder_config);
  config.vocab = model_.vocab();
  config.hidden = model_.hidden();
  config.params = params.c_params();
  config.weights = nullptr;
  config.host = model_.pool().host();
  std::string label = "decoder " + kind + " (" + provider.plugin_name() + ")";
  Decoder decoder(std::move(provider), config, std::move(label));

  GenerateResult result;
  if (options.max_new_tokens == 0) return result;

  DecodeHost host(model_);
  if (keep == 0)
    model_.reset(kSlot);
  else if (keep < cached)
    model_.compact_kv(kSlot, keep, nullptr, 0);  // drops the rows after `keep`
  host.clear(kSlot);

  const auto prefill_start = std::chrono::steady_clock::now();
  {
    const int32_t offsets[2] = {0, static_cast<int32_t>(prompt.size())};
    ts_forward_request request{};
    request.struct_size = sizeof(ts_forward_request);
    request.n_seqs = 1;
    request.seqs = &kSlot;
    request.offsets = offsets;
    request.tokens = prompt.data();
    host.forward(request);  // last_only: one row of logits
  }
  result.prefill_seconds = seconds_since(prefill_start);

  // Every emitted token but the last is fed back, so n tokens need n - 1 free rows.
  const int32_t room = capacity - keep - static_cast<int32_t>(prompt.size()) + 1;
  int32_t remaining = std::min(options.max_new_tokens, room);

  const auto decode_start = std::chrono::steady_clock::now();
  constexpr int32_t kStepCapacity = 16;
  int32_t tokens[kStepCapacity];
  while (remaining > 0) {
    int32_t count = 0;
    uint8_t finished = 0;
    ts_decode_step step{};
    step.struct_size = sizeof(ts_decode_step);
    step.n_seqs = 1;
    step.seqs = &kSlot;
    step.budget = &remaining;
    step.capacity = kStepCapacity;
    step.tokens = tokens;
    step.counts = &count;
    step.finished = &finished;
    decoder.step(host, step);
    if (count < 0 || count > std::min(kStepCapacity, remaining))
      throw Error("generate: the decoder emitted " + std::to_string(count) +
                  " tokens in one step; expected 0 to " +
                  std::to_string(std::min(kStepCapacity, remaining)));
    if (count == 0 && finished == 0)
      throw Error("generate: the decoder emitted no token and did not finish");
    for (int32_t i = 0; i < count; ++i) {
      result.tokens.push_back(tokens[i]);
      if (on_token) on_token(tokens[i]);
    }
    remaining -= count;
    if (finished != 0) {
      result.stopped_on_eos =
          count > 0 && std::find(eos.begin(), eos.end(), int64_t{tokens[count - 1]}) != eos.end();
      break;
    }
  }
  result.decode_seconds = seconds_since(decode_start);
  return result;
}

}  // namespace tessera
