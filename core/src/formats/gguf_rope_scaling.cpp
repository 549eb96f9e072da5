// RoPE scaling in GGUF files. Llama 3.1-style ("llama3") scaling has no metadata key: the
// converter stores its result, one wavelength multiplier per frequency, as the tensor
// rope_freqs.weight. The multipliers are 1 for short wavelengths, `factor` for long ones, and
// blend in between; the blend is linear in 1/wavelength, so two blended frequencies give back
// the wavelength thresholds. The parameters found are checked by recomputing every multiplier.
#include <tessera/engine/error.hpp>
#include <tessera/formats/gguf_model.hpp>
#include <tessera/rope_scaling.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace tessera {
namespace {

constexpr double kTolerance = 1e-4;  // relative; the multipliers are stored as f32

bool close(double a, double b) {
  return std::abs(a - b) <= kTolerance * std::max(std::abs(a), std::abs(b));
}

// Multipliers the scaling gives: unscaled frequency / scaled frequency, computed with the
// same formula the attention plugins use (sdk/rope_scaling.hpp).
std::vector<double> unscaled_inv_freq(int64_t head_dim, double theta) {
  std::vector<double> f(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i)
    f[static_cast<size_t>(i)] =
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  return f;
}

std::vector<double> multipliers(int64_t head_dim, double theta, const RopeScaling& scaling) {
  const std::vector<double> plain = unscaled_inv_freq(head_dim, theta);
  sdk::RopeScalingParams params;
  params.type = scaling.type;
  params.factor = scaling.factor;
  params.low_freq_factor = scaling.low_freq_factor;
  params.high_freq_factor = scaling.high_freq_factor;
  params.original_max_position_embeddings = scaling.original_max_position_embeddings;
  std::vector<double> scaled = plain;
  sdk::apply_rope_scaling(scaled, params);
  std::vector<double> out(plain.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = plain[i] / scaled[i];
  return out;
}

std::string number(double x) {
  std::string s = std::to_string(x);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

RopeScaling gguf_rope_scaling(const GgufFile& file, const std::string& arch, int64_t head_dim,
                              double theta) {
  const std::string where = "GGUF file '" + file.name() + "': ";
  const std::string type_key = arch + ".rope.scaling.type";
  if (const GgufValue* type = file.find(type_key)) {
    const auto text = type->as_string();
    if (!text || *text != "none") {
      throw ModelError(where + "metadata key '" + type_key + "' is " + type->to_string() +
                       "; only Llama 3 RoPE scaling (the tensor rope_freqs.weight) is supported");
    }
  }
  for (const std::string& key : {arch + ".rope.scale_linear", arch + ".rope.scaling.factor"}) {
    if (const GgufValue* factor = file.find(key)) {
      const std::optional<double> x = factor->as_float();
      if (!x || (*x != 0.0 && *x != 1.0)) {
        throw ModelError(where + "metadata key '" + key + "' is " + factor->to_string() +
                         "; linear and YaRN RoPE scaling are not supported (expected 1, or no "
                         "key)");
      }
    }
  }

  const GgufTensorInfo* info = file.find_tensor("rope_freqs.weight");
  if (info == nullptr) return {};
  const int64_t half = head_dim / 2;
  if (info->ne.size() != 1 || info->ne[0] != half) {
    std::string shape;
    for (const int64_t d : info->shape()) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    throw ModelError(where + "tensor 'rope_freqs.weight' has shape [" + shape + "]; expected [" +
                     std::to_string(half) + "] (one multiplier per frequency of a head of " +
                     std::to_string(head_dim) + ")");
  }
  const Tensor loaded = file.load_tensor(*info, TS_F32);
  const std::vector<double> stored(loaded.data<float>(), loaded.data<float>() + half);
  for (int64_t i = 0; i < half; ++i) {
    if (!(stored[static_cast<size_t>(i)] >= 1.0) ||
        !std::isfinite(stored[static_cast<size_t>(i)])) {
      throw ModelError(where + "tensor 'rope_freqs.weight' holds " +
                       number(stored[static_cast<size_t>(i)]) + " at frequency " +
                       std::to_string(i) +
                       "; Llama 3 RoPE scaling multipliers are finite and >= 1");
    }
  }

  RopeScaling s;
  s.factor = *std::max_element(stored.begin(), stored.end());
  if (close(s.factor, 1.0)) return {};  // every multiplier 1: no scaling at all
  s.type = "llama3";
  s.original_max_position_embeddings = static_cast<int32_t>(file.get_int(
      arch + ".rope.scaling.original_context_length", s.original_max_position_embeddings));

  // Blended frequencies: 1/m = (1 - t)/factor + t with t linear in 1/wavelength.
  const std::vector<double> plain = unscaled_inv_freq(head_dim, theta);
  std::vector<std::pair<double, double>> blend;  // (1/wavelength, t)
  const double pi = std::acos(-1.0);
  for (size_t i = 0; i < stored.size(); ++i) {
    if (!close(stored[i], 1.0) && !close(stored[i], s.factor)) {
      const double t = (1.0 / stored[i] - 1.0 / s.factor) / (1.0 - 1.0 / s.factor);
      blend.emplace_back(plain[i] / (2.0 * pi), t);
    }
  }
  if (blend.size() >= 2) {
    const auto& [x1, t1] = blend.front();
    const auto& [x2, t2] = blend.back();
    const double slope = (t2 - t1) / (x2 - x1);  // t = slope * (x - 1/low_wavelength)
    const double inv_low_wavelength = x1 - t1 / slope;
    const double inv_high_wavelength = inv_low_wavelength + 1.0 / slope;
    const double context = s.original_max_position_embeddings;
    s.low_freq_factor = context * inv_low_wavelength;
    s.high_freq_factor = context * inv_high_wavelength;
  }  // else keep Llama 3.1's low_freq_factor 1 and high_freq_factor 4

  const std::vector<double> expected = multipliers(head_dim, theta, s);
  for (size_t i = 0; i < stored.size(); ++i) {
    if (!close(stored[i], expected[i])) {
      throw ModelError(
          where +
          "tensor 'rope_freqs.weight' is not Llama 3 RoPE scaling: with "
          "factor " +
          number(s.factor) + ", low_freq_factor " + number(s.low_freq_factor) +
          ", high_freq_factor " + number(s.high_freq_factor) + " and original context " +
          std::to_string(s.original_max_position_embeddings) + ", frequency " + std::to_string(i) +
          " would have multiplier " + number(expected[i]) + ", the file has " + number(stored[i]));
    }
  }
  return s;
}

}  // namespace tessera
