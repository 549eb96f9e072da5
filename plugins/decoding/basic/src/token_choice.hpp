// Choosing one token from a row of logits: argmax, and temperature / top-k / top-p / min-p
// sampling with a seeded generator. Kept apart from the ABI glue so the hot path stays small.
#pragma once

#include <cstdint>
#include <vector>

namespace tessera::decoding {

// xoshiro256** seeded through splitmix64: fast, small state, and the same seed always
// gives the same stream on every platform (std::mt19937 + std distributions would not).
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_[4];
};

// Index of the largest logit, the lowest index on ties. Throws on NaN or +inf, and when
// every logit is -inf: no token can be chosen then.
int32_t argmax_token(const float* logits, int32_t vocab);

struct SamplingSettings {
  double temperature = 1.0;  // > 0
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // (0, 1]; 1 = off
  double min_p = 0.0;        // [0, 1]; 0 = off; relative to the most likely token
  uint64_t seed = 0;
};

// Draws tokens: softmax(logits / temperature), keep the top_k most likely, then the smallest
// prefix of those (most likely first) whose probability reaches top_p, then those at least
// min_p times as likely as the best; renormalise and draw. Ties order by lower index.
class Sampler {
 public:
  explicit Sampler(const SamplingSettings& settings);
  int32_t sample(const float* logits, int32_t vocab);

 private:
  // Sorts `keys_` so its first `count` entries are the most likely tokens, best first,
  // leaving entries before `sorted` (already sorted and better than the rest) in place.
  void sort_prefix(int32_t sorted, int32_t count);
  // Leaves the k most likely tokens in `keys_`, best first, in one pass over the logits.
  void select_top_k(const float* logits, int32_t vocab, int32_t k);

  SamplingSettings settings_;
  Rng rng_;
  std::vector<uint64_t> keys_;  // rank keys of the tokens, a best-first prefix after sort_prefix
  std::vector<float> weights_;  // exp((logit - max) / temperature) by rank; the best is 1
  std::vector<float> token_weights_;  // the same by token id, for the nucleus search
};

}  // namespace tessera::decoding
