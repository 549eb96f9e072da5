#include <tessera/engine/rng.hpp>

#include <cmath>

namespace tessera {

uint64_t Rng::next() {
  state_ += 0x9e3779b97f4a7c15ull;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

float Rng::uniform() {
  // 24 bits: every value is exact in a float and strictly below 1.
  return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
}

float Rng::normal() {
  // u1 in (0, 1] so that log(u1) is finite.
  const double u1 = (static_cast<double>(next() >> 40) + 1.0) / 16777216.0;
  const double u2 = static_cast<double>(next() >> 40) / 16777216.0;
  const double radius = std::sqrt(-2.0 * std::log(u1));
  return static_cast<float>(radius * std::cos(6.283185307179586476925 * u2));
}

}  // namespace tessera
