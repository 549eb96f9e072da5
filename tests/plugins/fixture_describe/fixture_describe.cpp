// FFN blocks y = x * scale + shift (elementwise, two [hidden] weights) under several kinds,
// each declaring its weights differently:
//   "affine"          declares both well: scale ONES, shift ZEROS, plus "noise.weight"
//                     [hidden] NORMAL(0.5) that it reads and ignores, and 20 [1] ZEROS
//                     weights "pad.N" (more than the host's first room for 16)
//   "affine-dup"      declares scale.weight twice
//   "affine-zero-dim" declares shift.weight with a dimension 0
//   "affine-kv"       declares a KV cache, which an FFN block cannot have
//   "affine-refuses"  refuses its parameters (TS_ERROR from describe) unless alpha > 0
//   "affine-lies"     declares an identity, which info() then denies
#include <tessera/plugin.hpp>

#include <stdexcept>
#include <string>

namespace {

namespace sdk = tessera::sdk;

enum class Defect { none, dup, zero_dim, kv, refuses, lies };

template <Defect D>
class Affine {
 public:
  explicit Affine(const ts_block_config& config) : hidden_(config.hidden) {
    scale_ = sdk::get_weight(config.weights, "scale.weight", {hidden_});
    shift_ = sdk::get_weight(config.weights, "shift.weight", {hidden_});
    if (D == Defect::none) (void)sdk::get_weight(config.weights, "noise.weight", {hidden_});
  }

  static sdk::BlockLayout describe(const ts_block_config& config) {
    const int64_t h = config.hidden;
    sdk::BlockLayout layout;
    layout.weights = {{"scale.weight", {h}, TS_SPLIT_REPLICATED, TS_INIT_ONES},
                      {"shift.weight", {h}, TS_SPLIT_REPLICATED, TS_INIT_ZEROS}};
    if constexpr (D == Defect::none) {
      layout.weights.push_back({"noise.weight", {h}, TS_SPLIT_REPLICATED, TS_INIT_NORMAL, 0.5f});
      for (int i = 0; i < 20; ++i)
        layout.weights.push_back(
            {"pad." + std::to_string(i), {1}, TS_SPLIT_REPLICATED, TS_INIT_ZEROS});
    } else if constexpr (D == Defect::dup) {
      layout.weights.push_back(layout.weights.front());
    } else if constexpr (D == Defect::zero_dim) {
      layout.weights[1].shape = {h, 0};
    } else if constexpr (D == Defect::kv) {
      layout.kv_heads = 2;
      layout.head_dim = 4;
    } else if constexpr (D == Defect::refuses) {
      if (!(sdk::Params(config.params).get_float("alpha", 0.0) > 0.0))
        throw std::invalid_argument("affine-refuses: parameter 'alpha' must be > 0");
    } else if constexpr (D == Defect::lies) {
      layout.flags = TS_BLOCK_IDENTITY;
    }
    return layout;
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.kv_dtype = TS_F32;
    i.parameters = 2 * hidden_;
    return i;
  }

  void forward(const ts_block_io& io) {
    const auto* x = static_cast<const float*>(io.x->data);
    auto* y = static_cast<float*>(io.y->data);
    const auto* scale = static_cast<const float*>(scale_.data);
    const auto* shift = static_cast<const float*>(shift_.data);
    if (scale_.dtype != TS_F32 || shift_.dtype != TS_F32)
      throw std::invalid_argument("affine: expected f32 weights");
    for (int64_t t = 0; t < io.x->shape[0]; ++t)
      for (int64_t i = 0; i < hidden_; ++i)
        y[t * hidden_ + i] = x[t * hidden_ + i] * scale[i] + shift[i];
  }

 private:
  int64_t hidden_;
  ts_tensor scale_{}, shift_{};
};

const ts_block_vtable kAffine = sdk::block_vtable<Affine<Defect::none>>();
const ts_block_vtable kDup = sdk::block_vtable<Affine<Defect::dup>>();
const ts_block_vtable kZeroDim = sdk::block_vtable<Affine<Defect::zero_dim>>();
const ts_block_vtable kKv = sdk::block_vtable<Affine<Defect::kv>>();
const ts_block_vtable kRefuses = sdk::block_vtable<Affine<Defect::refuses>>();
const ts_block_vtable kLies = sdk::block_vtable<Affine<Defect::lies>>();

const ts_provider kProviders[] = {
    sdk::provider(TS_KIND_FFN, "affine", TS_DEVICE_CPU, &kAffine),
    sdk::provider(TS_KIND_FFN, "affine-dup", TS_DEVICE_CPU, &kDup),
    sdk::provider(TS_KIND_FFN, "affine-zero-dim", TS_DEVICE_CPU, &kZeroDim),
    sdk::provider(TS_KIND_FFN, "affine-kv", TS_DEVICE_CPU, &kKv),
    sdk::provider(TS_KIND_FFN, "affine-refuses", TS_DEVICE_CPU, &kRefuses),
    sdk::provider(TS_KIND_FFN, "affine-lies", TS_DEVICE_CPU, &kLies),
};

}  // namespace

TESSERA_PLUGIN("fixture-describe", "0.1.0", kProviders)
