// A ts_decode_host for decoder tests: no model, just logits per slot. forward() records
// every call and sets each fed slot's next logits from a function of the token fed.
#pragma once

#include <tessera/abi.h>

#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tessera::testing {

struct ForwardCall {
  std::vector<int32_t> slots;
  std::vector<int32_t> offsets;
  std::vector<int32_t> tokens;
};

class FakeDecodeHost {
 public:
  // next_logits(slot, token) gives the logits after `token` was fed to `slot`.
  using NextLogits = std::function<std::vector<float>(int32_t slot, int32_t token)>;

  FakeDecodeHost(int32_t vocab, NextLogits next_logits)
      : vocab_(vocab), next_logits_(std::move(next_logits)) {
    host_.struct_size = sizeof(ts_decode_host);
    host_.ctx = this;
    host_.vocab = vocab;
    host_.hidden = 4;
    host_.forward = &FakeDecodeHost::forward;
    host_.last_logits = &FakeDecodeHost::last_logits;
    host_.length = &FakeDecodeHost::length;
  }

  // As if `slot` had been prefilled and its last token gave these logits.
  void set_logits(int32_t slot, std::vector<float> logits) { logits_[slot] = std::move(logits); }

  const ts_decode_host* host() const { return &host_; }
  int32_t vocab() const { return vocab_; }
  const std::vector<ForwardCall>& calls() const { return calls_; }
  void clear_calls() { calls_.clear(); }
  // The next forward fails with this message (once).
  void fail_next_forward(std::string message) { failure_ = std::move(message); }

 private:
  static int forward(void* ctx, const ts_forward_request* request, ts_error* err) {
    auto& self = *static_cast<FakeDecodeHost*>(ctx);
    if (!self.failure_.empty()) {
      std::snprintf(err->message, sizeof(err->message), "%s", self.failure_.c_str());
      self.failure_.clear();
      return TS_ERROR;
    }
    ForwardCall call;
    call.slots.assign(request->slots, request->slots + request->n_seqs);
    call.offsets.assign(request->offsets, request->offsets + request->n_seqs + 1);
    call.tokens.assign(request->tokens, request->tokens + call.offsets.back());
    for (int32_t s = 0; s < request->n_seqs; ++s) {
      const int32_t slot = request->slots[s];
      const int32_t last = request->tokens[request->offsets[s + 1] - 1];
      self.logits_[slot] = self.next_logits_(slot, last);
      self.lengths_[slot] += request->offsets[s + 1] - request->offsets[s];
    }
    self.calls_.push_back(std::move(call));
    return TS_OK;
  }

  static const float* last_logits(void* ctx, int32_t slot) {
    auto& self = *static_cast<FakeDecodeHost*>(ctx);
    const auto it = self.logits_.find(slot);
    return it == self.logits_.end() ? nullptr : it->second.data();
  }

  static int32_t length(void* ctx, int32_t slot) {
    auto& self = *static_cast<FakeDecodeHost*>(ctx);
    const auto it = self.lengths_.find(slot);
    return it == self.lengths_.end() ? 0 : it->second;
  }

  int32_t vocab_;
  NextLogits next_logits_;
  ts_decode_host host_{};
  std::map<int32_t, std::vector<float>> logits_;
  std::map<int32_t, int32_t> lengths_;
  std::vector<ForwardCall> calls_;
  std::string failure_;
};

}  // namespace tessera::testing
