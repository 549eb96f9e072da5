// The "greedy" and "sampling" decoders: one token per sequence per step, then one forward
// call for every sequence that goes on. Sampling draws from one stream per slot, so a
// sequence's tokens depend on its seed, its slot and its own logits only: several
// sequences at once draw what each would alone.
#include <cmath>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tessera/plugin.hpp>
#include <vector>

#include <tessera/decoding/token_choice.hpp>

namespace tessera::decoding {
namespace {

enum class Mode { kGreedy, kSampling };

constexpr std::string_view kGreedyParams[] = {"eos_token_ids", "vocab_size", "hidden_size"};
constexpr std::string_view kSamplingParams[] = {
    "eos_token_ids", "vocab_size", "hidden_size", "temperature", "top_k", "top_p", "min_p", "seed"};

std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

template <size_t N>
std::string join(const std::string_view (&names)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) (out += i ? ", " : "") += names[i];
  return out;
}

template <size_t N>
bool contains(const std::string_view (&names)[N], std::string_view key) {
  for (std::string_view name : names)
    if (name == key) return true;
  return false;
}

class TokenDecoder {
 public:
  TokenDecoder(const ts_decoder_config& config, Mode mode)
      : mode_(mode), name_(mode == Mode::kGreedy ? "greedy" : "sampling"), vocab_(config.vocab) {
    try {
      read_params(config);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(name_ + " decoder: " + e.what());
    }
  }

  void step(const ts_decode_host& host, ts_decode_step& step) {
    check_step(host, step);
    feed_slots_.clear();
    feed_tokens_.clear();
    for (int32_t s = 0; s < step.n_seqs; ++s) {
      const int32_t slot = step.slots[s];
      const float* logits = host.last_logits(host.ctx, slot);
      if (logits == nullptr)
        throw std::runtime_error(name_ + " decoder: the host has no logits for slot " +
                                 std::to_string(slot) + " (was it prefilled?)");
      int32_t token = 0;
      try {
        token = settings_ ? sampler_of(slot).sample(logits, host.vocab)
                          : argmax_token(logits, host.vocab);
      } catch (const std::invalid_argument& e) {
        throw std::runtime_error(name_ + " decoder, slot " + std::to_string(slot) + ": " +
                                 e.what());
      }
      step.tokens[static_cast<int64_t>(s) * step.capacity] = token;
      step.counts[s] = 1;
      const bool done = step.budget[s] == 1 || is_eos(token);
      step.finished[s] = done ? 1 : 0;
      if (!done) {
        feed_slots_.push_back(slot);
        feed_tokens_.push_back(token);
      }
    }
    if (feed_slots_.empty()) return;

    const int32_t n_feed = static_cast<int32_t>(feed_slots_.size());
    feed_offsets_.resize(feed_slots_.size() + 1);
    for (int32_t i = 0; i <= n_feed; ++i) feed_offsets_[i] = i;
    ts_forward_request request{};
    request.struct_size = sizeof(ts_forward_request);
    request.n_seqs = n_feed;
    request.slots = feed_slots_.data();
    request.offsets = feed_offsets_.data();
    request.tokens = feed_tokens_.data();
    ts_error err{};
    if (host.forward(host.ctx, &request, &err) != TS_OK)
      throw std::runtime_error(name_ + " decoder: the host's forward of " + std::to_string(n_feed) +
                               " sequence(s) failed: " + err.message);
  }

 private:
  void read_params(const ts_decoder_config& config) {
    const sdk::Params params(config.params);
    for (int32_t i = 0; i < config.params.count; ++i) {
      const char* key = config.params.items[i].key;
      if (key == nullptr)
        throw std::invalid_argument("parameter " + std::to_string(i) + " has no key");
      const bool known =
          mode_ == Mode::kGreedy ? contains(kGreedyParams, key) : contains(kSamplingParams, key);
      if (!known)
        throw std::invalid_argument(
            "unknown parameter '" + std::string(key) + "'; accepted parameters: " +
            (mode_ == Mode::kGreedy ? join(kGreedyParams) : join(kSamplingParams)));
    }

    if (params.has("vocab_size")) {
      const int64_t vocab_size = params.get_int("vocab_size");
      if (vocab_ > 0 && vocab_size != vocab_)
        throw std::invalid_argument("parameter 'vocab_size' is " + std::to_string(vocab_size) +
                                    " but the decoder config has vocab " + std::to_string(vocab_));
      if (vocab_ <= 0) vocab_ = static_cast<int32_t>(vocab_size);
    }
    if (params.has("hidden_size")) params.get_int("hidden_size");  // checks its type only

    if (params.has("eos_token_ids")) {
      const std::vector<int64_t> ids = params.get_ints("eos_token_ids");
      for (size_t i = 0; i < ids.size(); ++i) {
        const bool in_range = ids[i] >= 0 && (vocab_ <= 0 || ids[i] < vocab_);
        if (!in_range)
          throw std::invalid_argument(
              "parameter 'eos_token_ids' holds " + std::to_string(ids[i]) + " at index " +
              std::to_string(i) + ", expected token ids in [0, " +
              (vocab_ > 0 ? std::to_string(vocab_) : std::string("vocab")) + ")");
        eos_.push_back(static_cast<int32_t>(ids[i]));
      }
    }
    if (mode_ == Mode::kSampling) settings_.emplace(read_sampling(params));
  }

  // The draw stream of one slot: slot 0 draws from the seed itself, slot k from a seed
  // mixed with k (splitmix64 of seed + k), so slots never share a stream.
  Sampler& sampler_of(int32_t slot) {
    auto it = samplers_.find(slot);
    if (it != samplers_.end()) return it->second;
    SamplingSettings settings = *settings_;
    if (slot != 0) {
      uint64_t z = settings.seed + static_cast<uint64_t>(slot) * 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      settings.seed = z ^ (z >> 31);
    }
    return samplers_.emplace(slot, Sampler(settings)).first->second;
  }

  static SamplingSettings read_sampling(const sdk::Params& params) {
    SamplingSettings s;
    s.temperature = params.get_float("temperature", s.temperature);
    if (!(s.temperature > 0) || !std::isfinite(s.temperature))
      throw std::invalid_argument("parameter 'temperature' is " + format_number(s.temperature) +
                                  ", expected a finite number > 0");
    s.top_k = params.get_int("top_k", s.top_k);
    if (s.top_k < 0)
      throw std::invalid_argument("parameter 'top_k' is " + std::to_string(s.top_k) +
                                  ", expected an integer >= 0 (0 turns it off)");
    s.top_p = params.get_float("top_p", s.top_p);
    if (!(s.top_p > 0 && s.top_p <= 1))
      throw std::invalid_argument("parameter 'top_p' is " + format_number(s.top_p) +
                                  ", expected a number in (0, 1] (1 turns it off)");
    s.min_p = params.get_float("min_p", s.min_p);
    if (!(s.min_p >= 0 && s.min_p <= 1))
      throw std::invalid_argument("parameter 'min_p' is " + format_number(s.min_p) +
                                  ", expected a number in [0, 1] (0 turns it off)");
    // Parameters are int64; the seed is their two's-complement bit pattern, so every
    // uint64 seed can be given.
    s.seed = static_cast<uint64_t>(params.get_int("seed", 0));
    return s;
  }

  void check_step(const ts_decode_host& host, const ts_decode_step& step) const {
    const std::string where = name_ + " decoder step: ";
    if (host.forward == nullptr || host.last_logits == nullptr)
      throw std::invalid_argument(where + "the decode host lacks forward or last_logits");
    if (host.vocab <= 0)
      throw std::invalid_argument(where + "the host's vocab is " + std::to_string(host.vocab) +
                                  ", expected > 0");
    if (vocab_ > 0 && host.vocab != vocab_)
      throw std::invalid_argument(where + "the host's vocab is " + std::to_string(host.vocab) +
                                  " but the decoder was created for vocab " +
                                  std::to_string(vocab_));
    if (step.n_seqs < 0)
      throw std::invalid_argument(where + "n_seqs is " + std::to_string(step.n_seqs) +
                                  ", expected >= 0");
    if (step.n_seqs == 0) return;
    if (step.capacity < 1)
      throw std::invalid_argument(where + "capacity is " + std::to_string(step.capacity) +
                                  ", expected room for at least 1 token per sequence");
    if (step.slots == nullptr || step.budget == nullptr || step.tokens == nullptr ||
        step.counts == nullptr || step.finished == nullptr)
      throw std::invalid_argument(where + "slots, budget, tokens, counts and finished must be set");
    for (int32_t s = 0; s < step.n_seqs; ++s)
      if (step.budget[s] < 1)
        throw std::invalid_argument(where + "budget[" + std::to_string(s) + "] is " +
                                    std::to_string(step.budget[s]) + ", expected >= 1");
  }

  bool is_eos(int32_t token) const {
    for (int32_t id : eos_)
      if (id == token) return true;
    return false;
  }

  Mode mode_;
  std::string name_;
  int32_t vocab_;
  std::vector<int32_t> eos_;
  std::optional<SamplingSettings> settings_;  // set for sampling
  std::map<int32_t, Sampler> samplers_;       // one draw stream per slot
  // Reused across steps: the step runs once per generated token.
  std::vector<int32_t> feed_slots_, feed_tokens_, feed_offsets_;
};

struct GreedyDecoder : TokenDecoder {
  explicit GreedyDecoder(const ts_decoder_config& config) : TokenDecoder(config, Mode::kGreedy) {}
};

struct SamplingDecoder : TokenDecoder {
  explicit SamplingDecoder(const ts_decoder_config& config)
      : TokenDecoder(config, Mode::kSampling) {}
};

const ts_decoder_vtable kGreedyVtable = sdk::decoder_vtable<GreedyDecoder>();
const ts_decoder_vtable kSamplingVtable = sdk::decoder_vtable<SamplingDecoder>();

const ts_provider kProviders[] = {
    sdk::provider(TS_KIND_DECODER, "greedy", TS_DEVICE_CPU, &kGreedyVtable),
    sdk::provider(TS_KIND_DECODER, "sampling", TS_DEVICE_CPU, &kSamplingVtable),
};

}  // namespace
}  // namespace tessera::decoding

TESSERA_PLUGIN("tessera-decoding-basic", "0.1.0", tessera::decoding::kProviders)
