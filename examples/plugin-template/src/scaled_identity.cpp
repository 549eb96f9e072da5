// An FFN block that contributes scale * x to the residual stream.
//
// It is the smallest block that still does real work through the whole ABI:
// it reads a parameter from the manifest, checks what the host gives it,
// refuses what it cannot do (TS_UNSUPPORTED), and splits its work over the
// host's threads. Replace the arithmetic in forward() with your own.
//
// Manifest use (any layer range):
//   ffn = { kind = "scaled-identity", plugin = "template-scaled-identity", scale = 0.5 }
#include <tessera/plugin.hpp>

#include <cmath>
#include <stdexcept>
#include <string>

namespace {

using tessera::sdk::Unsupported;

class ScaledIdentity {
 public:
  explicit ScaledIdentity(const ts_block_config& config)
      : hidden_(config.hidden), host_(config.host) {
    if (config.kind != TS_KIND_FFN)
      throw std::invalid_argument("scaled-identity: is an FFN block, was created as kind " +
                                  std::to_string(config.kind));
    if (config.device != TS_DEVICE_CPU)
      throw Unsupported(std::string("scaled-identity: runs on the CPU only, asked for ") +
                        tessera::device_name(config.device));
    if (config.dtype != TS_F32)
      throw Unsupported(std::string("scaled-identity: supports f32 activations only, asked for ") +
                        tessera::dtype_name(config.dtype));
    if (hidden_ <= 0)
      throw std::invalid_argument("scaled-identity: hidden size must be positive, got " +
                                  std::to_string(hidden_));
    scale_ = scale_of(config);
  }

  // What a block of this configuration reads and caches, known before it is made: no
  // weights and no KV cache, and an identity when the scale is 0 (as info() will say).
  // The host derives random weights, the weight checks at load, the KV cache and
  // `tessera info` from it; `tessera plugin-check` runs its property checks on it.
  static tessera::sdk::BlockLayout describe(const ts_block_config& config) {
    tessera::sdk::BlockLayout layout;
    layout.flags = scale_of(config) == 0.0f ? static_cast<uint32_t>(TS_BLOCK_IDENTITY) : 0u;
    // A block with weights lists each here: its block-local name, whole shape, how it
    // splits over ranks and how random weights draw it, e.g.
    //   layout.weights = {{"scale.weight", {config.hidden}, TS_SPLIT_REPLICATED, TS_INIT_ONES}};
    return layout;
  }

  ts_block_info info() const {
    ts_block_info info{};
    // A zero scale adds nothing: tell the host it may skip the block entirely.
    info.flags = scale_ == 0.0f ? static_cast<uint32_t>(TS_BLOCK_IDENTITY) : 0u;
    info.kv_heads = 0;  // no KV cache
    info.parameters = 0;
    return info;
  }

  void forward(const ts_block_io& io) const {
    if (io.x == nullptr || io.y == nullptr)
      throw std::invalid_argument("scaled-identity: forward needs both x and y");
    check_activation("x", *io.x);
    check_activation("y", *io.y);
    if (io.x->shape[0] != io.y->shape[0])
      throw std::invalid_argument("scaled-identity: x has " + std::to_string(io.x->shape[0]) +
                                  " rows but y has " + std::to_string(io.y->shape[0]));
    const auto* x = static_cast<const float*>(io.x->data);
    auto* y = static_cast<float*>(io.y->data);
    const int64_t x_row = io.x->stride[0];
    const int64_t y_row = io.y->stride[0];
    const int64_t hidden = hidden_;
    const float scale = scale_;
    tessera::sdk::parallel_for(host_, io.x->shape[0], /*grain=*/16,
                               [&](int64_t begin, int64_t end) {
                                 for (int64_t t = begin; t < end; ++t)
                                   for (int64_t h = 0; h < hidden; ++h)
                                     y[t * y_row + h] = scale * x[t * x_row + h];
                               });
  }

 private:
  // The params hold the model-wide keys too; this block reads only its own.
  static float scale_of(const ts_block_config& config) {
    const auto scale =
        static_cast<float>(tessera::sdk::Params(config.params).get_float("scale", 1.0));
    if (!std::isfinite(scale))
      throw std::invalid_argument("scaled-identity: 'scale' must be a finite number");
    return scale;
  }

  // Rows of `hidden` contiguous f32 values on the CPU; rows may be padded.
  void check_activation(const char* name, const ts_tensor& t) const {
    const std::string what = std::string("scaled-identity: ") + name;
    if (t.dtype != TS_F32)
      throw Unsupported(what + " is " + tessera::dtype_name(t.dtype) + ", expected f32");
    if (t.device != TS_DEVICE_CPU)
      throw Unsupported(what + " is on " + tessera::device_name(t.device) + ", expected cpu");
    if (t.ndim != 2 || t.shape[1] != hidden_)
      throw std::invalid_argument(what + " has shape " + tessera::sdk::shape_string(t) +
                                  ", expected [n_tokens, " + std::to_string(hidden_) + "]");
    if (t.shape[0] > 0 && (t.stride[1] != 1 || t.stride[0] < hidden_))
      throw std::invalid_argument(what + " rows must be contiguous (strides [" +
                                  std::to_string(t.stride[0]) + ", " + std::to_string(t.stride[1]) +
                                  "])");
    if (t.shape[0] > 0 && t.data == nullptr) throw std::invalid_argument(what + " has no data");
  }

  int32_t hidden_;
  const ts_host* host_;
  float scale_ = 1.0f;
};

const ts_block_vtable kScaledIdentityVtable = tessera::sdk::block_vtable<ScaledIdentity>();

const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_FFN, "scaled-identity", TS_DEVICE_CPU, &kScaledIdentityVtable),
};

}  // namespace

TESSERA_PLUGIN("template-scaled-identity", "0.1.0", kProviders)
