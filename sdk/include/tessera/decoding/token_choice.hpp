// Header-only: the decoding plugins share it.
// Choosing one token from a row of logits: argmax, and temperature / top-k / top-p / min-p
// sampling with a seeded generator. Kept apart from the ABI glue so the hot path stays small.
#pragma once

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
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

namespace detail {

inline uint64_t splitmix64(uint64_t& x) {
  x += 0x9E3779B97F4A7C15ull;
  uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint64_t rotate_left(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

// Names the first logit that is NaN or +inf; called only once a scan found one.
[[noreturn]] inline void throw_bad_logit(const float* logits, int32_t vocab) {
  for (int32_t i = 0; i < vocab; ++i) {
    if (!(logits[i] <= FLT_MAX)) {
      std::ostringstream message;
      message << "logit of token " << i << " is " << logits[i] << "; logits must be finite or -inf";
      throw std::invalid_argument(message.str());
    }
  }
  throw std::invalid_argument("logits hold a value that is neither finite nor -inf");
}

struct MaxLogit {
  float value;
  int32_t index;  // lowest index holding the value
};

// One pass: the maximum and whether any value is NaN or +inf (both fail `v <= FLT_MAX`).
inline MaxLogit find_max_logit(const float* logits, int32_t vocab) {
  if (vocab <= 0)
    throw std::invalid_argument("vocabulary size is " + std::to_string(vocab) +
                                ", expected at least 1 logit");
  float best = -INFINITY;
  int32_t best_index = 0;
  bool bad = false;
  for (int32_t i = 0; i < vocab; ++i) {
    const float v = logits[i];
    bad |= !(v <= FLT_MAX);
    if (v > best) {
      best = v;
      best_index = i;
    }
  }
  if (bad) throw_bad_logit(logits, vocab);
  if (best == -INFINITY) throw std::invalid_argument("every logit is -inf; no token can be chosen");
  return {best, best_index};
}

// A key whose ascending order is descending logit, then ascending token id, so that
// nth_element / sort run on plain integers instead of chasing indices into the logits.
inline uint64_t rank_key(float logit, int32_t token) {
  const uint32_t bits = std::bit_cast<uint32_t>(logit + 0.0f);  // -0 becomes +0
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << 32) | static_cast<uint32_t>(token);
}

inline int32_t key_token(uint64_t key) {
  return static_cast<int32_t>(key & 0xFFFFFFFFu);
}

}  // namespace detail

inline Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& s : state_) s = detail::splitmix64(x);
}

inline uint64_t Rng::next() {
  const uint64_t result = detail::rotate_left(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = detail::rotate_left(state_[3], 45);
  return result;
}

inline int32_t argmax_token(const float* logits, int32_t vocab) {
  return detail::find_max_logit(logits, vocab).index;
}

inline Sampler::Sampler(const SamplingSettings& settings)
    : settings_(settings), rng_(settings.seed) {}

inline void Sampler::sort_prefix(int32_t sorted, int32_t count) {
  const auto first = keys_.begin() + sorted;
  const auto middle = keys_.begin() + count;
  if (middle != keys_.end()) std::nth_element(first, middle, keys_.end());
  std::sort(first, middle);
}

inline void Sampler::select_top_k(const float* logits, int32_t vocab, int32_t k) {
  keys_.resize(static_cast<size_t>(k));
  for (int32_t i = 0; i < k; ++i) keys_[i] = detail::rank_key(logits[i], i);
  // A max-heap of keys: its front is the worst token kept so far.
  std::make_heap(keys_.begin(), keys_.end());
  float worst = logits[detail::key_token(keys_.front())];
  for (int32_t i = k; i < vocab; ++i) {
    // Every kept token has a lower index, so an equal logit ranks below them all.
    if (logits[i] <= worst) continue;
    std::pop_heap(keys_.begin(), keys_.end());
    keys_.back() = detail::rank_key(logits[i], i);
    std::push_heap(keys_.begin(), keys_.end());
    worst = logits[detail::key_token(keys_.front())];
  }
  std::sort(keys_.begin(), keys_.end());
}

inline int32_t Sampler::sample(const float* logits, int32_t vocab) {
  const detail::MaxLogit max = detail::find_max_logit(logits, vocab);
  // A tiny temperature must not turn (max - max) * inv_t into 0 * inf.
  const float inv_t = static_cast<float>(std::min(1.0 / settings_.temperature, double{FLT_MAX}));
  const float max_value = max.value;
  const auto weight = [&](int32_t token) { return std::exp((logits[token] - max_value) * inv_t); };
  // Weights are relative to the best token (weight exactly 1), so min_p compares directly.
  const float min_weight = static_cast<float>(settings_.min_p);
  weights_.resize(static_cast<size_t>(vocab));

  const int32_t top_k = settings_.top_k > 0 && settings_.top_k < vocab
                            ? static_cast<int32_t>(settings_.top_k)
                            : vocab;
  const bool use_top_p = settings_.top_p < 1.0;
  if (top_k == vocab && !use_top_p) {
    // Plain softmax (with min_p): no ordering needed, one pass to weigh and one to draw.
    double total = 0;
    for (int32_t i = 0; i < vocab; ++i) {
      float w = weight(i);
      if (w < min_weight) w = 0;
      weights_[i] = w;
      total += w;
    }
    const double target = rng_.uniform() * total;
    double cumulative = 0;
    for (int32_t i = 0; i < vocab; ++i) {
      cumulative += weights_[i];
      if (cumulative > target && weights_[i] > 0) return i;
    }
    return max.index;  // rounding left the target at the very top
  }

  // weights_[j] becomes the weight of the j-th most likely token for j < keep.
  int32_t keep = 0;
  if (top_k < vocab) {
    select_top_k(logits, vocab, top_k);
    double total = 0;
    for (int32_t j = 0; j < top_k; ++j) total += weights_[j] = weight(detail::key_token(keys_[j]));
    keep = top_k;
    if (use_top_p) {
      const double needed = settings_.top_p * total;
      double cumulative = 0;
      for (int32_t j = 0; j < top_k; ++j) {
        cumulative += weights_[j];
        if (cumulative >= needed) {
          keep = j + 1;
          break;
        }
      }
    }
  } else {
    // Nucleus over the whole vocabulary. Tokens lighter than (1 - top_p) * total / vocab
    // weigh less than (1 - top_p) * total all together, so the nucleus lies among the
    // others: usually a few hundred candidates out of tens of thousands.
    token_weights_.resize(static_cast<size_t>(vocab));
    double total = 0;
    for (int32_t i = 0; i < vocab; ++i) total += token_weights_[i] = weight(i);
    const float threshold = static_cast<float>((1.0 - settings_.top_p) * total / vocab);
    keys_.clear();
    for (int32_t i = 0; i < vocab; ++i)
      if (token_weights_[i] >= threshold) keys_.push_back(detail::rank_key(logits[i], i));
    const int32_t candidates = static_cast<int32_t>(keys_.size());
    // Sort a growing best-first prefix of the candidates until it holds top_p of the mass.
    const double needed = settings_.top_p * total;
    double cumulative = 0;
    int32_t sorted = 0;
    while (keep == 0) {
      const int32_t count = std::min(candidates, std::max(64, sorted * 4));
      sort_prefix(sorted, count);
      for (int32_t j = sorted; j < count; ++j) {
        cumulative += weights_[j] = token_weights_[detail::key_token(keys_[j])];
        if (cumulative >= needed) {
          keep = j + 1;
          break;
        }
      }
      sorted = count;
      if (keep == 0 && sorted == candidates) keep = candidates;
    }
  }
  while (keep > 1 && weights_[keep - 1] < min_weight) --keep;

  double total = 0;
  for (int32_t j = 0; j < keep; ++j) total += weights_[j];
  const double target = rng_.uniform() * total;
  double cumulative = 0;
  for (int32_t j = 0; j < keep; ++j) {
    cumulative += weights_[j];
    if (cumulative > target && weights_[j] > 0) return detail::key_token(keys_[j]);
  }
  return detail::key_token(keys_[0]);
}

}  // namespace tessera::decoding
