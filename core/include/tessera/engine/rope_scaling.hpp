// RoPE frequency scaling of a model (Llama 3.1's "llama3" scheme), as the manifest and the
// Hugging Face config describe it. Attention blocks receive it as block parameters
// (rope_scaling_type, rope_scaling_factor, ...; see docs/manifest.md).
#pragma once

#include <cstdint>
#include <string>

namespace tessera {

struct RopeScaling {
  // "" (none) or "llama3": frequencies whose wavelength is longer than
  // original_max_position_embeddings / low_freq_factor are divided by factor, those shorter
  // than original_max_position_embeddings / high_freq_factor are kept, and the ones between
  // are interpolated smoothly.
  std::string type;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int32_t original_max_position_embeddings = 8192;

  bool enabled() const { return !type.empty(); }
  bool operator==(const RopeScaling&) const = default;
};

}  // namespace tessera
