// Deterministic pseudo-random numbers, identical on every platform: random
// weights, test data and the seeds decoders derive their streams from.
#pragma once

#include <cstdint>

namespace tessera {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed ^ 0x9e3779b97f4a7c15ull) {}
  uint64_t next();  // splitmix64
  float uniform();  // [0, 1)
  float normal();   // Box-Muller, N(0, 1)

 private:
  uint64_t state_;
};

}  // namespace tessera
