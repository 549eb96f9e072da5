// A greedy decoder with one deliberate bug: it picks the second-best token (the best
// when the vocabulary has one token). Budgets, end tokens, feeding and parameters are right.
#include <tessera/plugin.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace {

class SecondBestGreedy {
 public:
  explicit SecondBestGreedy(const ts_decoder_config& config) : vocab_(config.vocab) {
    const tessera::sdk::Params params(config.params);
    for (int32_t i = 0; i < config.params.count; ++i) {
      const std::string key = config.params.items[i].key ? config.params.items[i].key : "";
      if (key != "eos_token_ids")
        throw std::invalid_argument("wrong greedy: unknown parameter '" + key + "'");
    }
    if (params.has("eos_token_ids"))
      for (int64_t id : params.get_ints("eos_token_ids")) {
        if (id < 0 || id >= vocab_)
          throw std::invalid_argument("wrong greedy: eos token " + std::to_string(id) +
                                      " is outside the vocabulary");
        eos_.push_back(static_cast<int32_t>(id));
      }
  }

  void step(const ts_decode_host& host, ts_decode_step& step) {
    std::vector<int32_t> slots, tokens, offsets{0};
    for (int32_t s = 0; s < step.n_seqs; ++s) {
      if (step.budget[s] < 1) throw std::invalid_argument("wrong greedy: budget below 1");
      const float* logits = host.last_logits(host.ctx, step.slots[s]);
      if (logits == nullptr) throw std::runtime_error("wrong greedy: no logits");
      const int32_t token = second_best(logits);
      step.tokens[static_cast<int64_t>(s) * step.capacity] = token;
      step.counts[s] = 1;
      bool end = step.budget[s] == 1;
      for (int32_t id : eos_) end = end || id == token;
      step.finished[s] = end ? 1 : 0;
      if (!end) {
        slots.push_back(step.slots[s]);
        tokens.push_back(token);
        offsets.push_back(static_cast<int32_t>(tokens.size()));
      }
    }
    if (slots.empty()) return;
    ts_forward_request request{};
    request.struct_size = sizeof(request);
    request.n_seqs = static_cast<int32_t>(slots.size());
    request.slots = slots.data();
    request.offsets = offsets.data();
    request.tokens = tokens.data();
    ts_error err{};
    if (host.forward(host.ctx, &request, &err) != TS_OK) throw std::runtime_error(err.message);
  }

 private:
  int32_t second_best(const float* logits) const {
    int32_t best = 0, second = -1;
    for (int32_t i = 1; i < vocab_; ++i) {
      if (logits[i] > logits[best]) {
        second = best;
        best = i;
      } else if (second < 0 || logits[i] > logits[second]) {
        second = i;
      }
    }
    return second < 0 ? best : second;
  }

  int32_t vocab_;
  std::vector<int32_t> eos_;
};

const ts_decoder_vtable kVtable = tessera::sdk::decoder_vtable<SecondBestGreedy>();
const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_DECODER, "greedy", TS_DEVICE_CPU, &kVtable)};

}  // namespace

TESSERA_PLUGIN("tessera-fixture-wrong-decoder", "0.0.1", kProviders)
