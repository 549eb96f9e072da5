// RoPE frequency scaling for attention plugins: reads the rope_scaling_* block parameters the
// host passes (see docs/manifest.md) and adjusts the inverse frequencies. Header-only, so that
// CPU and GPU plugins compute the same table on the host.
//
// "llama3" (Llama 3.1): with L = original_max_position_embeddings and wavelength
// w = 2 pi / f of each inverse frequency f,
//   w < L / high_freq_factor   f unchanged              (high frequencies)
//   w > L / low_freq_factor    f / factor               (low frequencies)
//   otherwise                  (1 - s) f / factor + s f,  s = (L / w - low) / (high - low)
#pragma once

#include <tessera/plugin.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::sdk {

struct RopeScalingParams {
  std::string type;  // empty: no scaling
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192.0;
};

// Reads rope_scaling_type and, for "llama3", rope_scaling_factor, rope_scaling_low_freq_factor,
// rope_scaling_high_freq_factor and rope_scaling_original_max_position_embeddings (all
// required). Throws std::invalid_argument naming the parameter for an unknown type or a value
// that makes the formula meaningless.
inline RopeScalingParams rope_scaling_from_params(const Params& params) {
  RopeScalingParams s;
  s.type = params.get_string("rope_scaling_type", "");
  if (s.type.empty()) return s;
  if (s.type != "llama3")
    throw std::invalid_argument("rope_scaling_type '" + s.type +
                                "' is not supported; expected \"llama3\"");
  s.factor = params.get_float("rope_scaling_factor");
  s.low_freq_factor = params.get_float("rope_scaling_low_freq_factor");
  s.high_freq_factor = params.get_float("rope_scaling_high_freq_factor");
  s.original_max_position_embeddings =
      params.get_float("rope_scaling_original_max_position_embeddings");
  if (!(s.factor > 0.0) || !std::isfinite(s.factor))
    throw std::invalid_argument("rope_scaling_factor must be a finite number > 0");
  if (!(s.low_freq_factor > 0.0) || !(s.high_freq_factor > s.low_freq_factor) ||
      !std::isfinite(s.high_freq_factor))
    throw std::invalid_argument(
        "rope_scaling_low_freq_factor and rope_scaling_high_freq_factor must satisfy "
        "0 < low < high");
  if (!(s.original_max_position_embeddings > 0.0))
    throw std::invalid_argument("rope_scaling_original_max_position_embeddings must be > 0");
  return s;
}

// Applies the scaling to inverse frequencies (theta^(-2i/head_dim)) in place.
inline void apply_rope_scaling(std::vector<double>& inv_freq, const RopeScalingParams& s) {
  if (s.type.empty()) return;
  constexpr double kTwoPi = 6.283185307179586476925;
  const double context = s.original_max_position_embeddings;
  const double long_wavelength = context / s.low_freq_factor;
  const double short_wavelength = context / s.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelength = kTwoPi / f;
    if (wavelength < short_wavelength) continue;
    if (wavelength > long_wavelength) {
      f /= s.factor;
      continue;
    }
    const double smooth =
        (context / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    f = (1.0 - smooth) * f / s.factor + smooth * f;
  }
}

}  // namespace tessera::sdk
