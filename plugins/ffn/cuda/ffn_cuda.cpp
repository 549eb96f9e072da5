// CUDA feed-forward blocks: SwiGLU ("swiglu"), a plain linear map ("linear") and the
// identity ("noop"). bf16 activations on the device, bf16 weights, f32 accumulation.
//
// swiglu: y = down(silu(gate(x)) * up(x)) as
//   gate_up [n, 2 * inter] = x [gate; up]^T   one cuBLASLt GEMM when gate and up are
//                                             adjacent in memory (always for weights
//                                             uploaded here), else two into the halves
//   act [n, inter] = silu(gate) * up          one fused elementwise pass (ffn_kernels.cu)
//   y = act down^T                            one cuBLASLt GEMM
#include "ffn_kernels.hpp"

#include <tessera/abi.h>
#include <tessera/cuda/block_support.hpp>
#include <tessera/cuda/cublaslt.hpp>
#include <tessera/cuda/dense_blocks.hpp>
#include <tessera/cuda/runtime.hpp>
#include <tessera/plugin.hpp>

#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace cu = tessera::cuda;

// intermediate_size, checked: the one parameter a swiglu block needs.
int64_t swiglu_width(const ts_block_config& config, const std::string& label) {
  int64_t inter = 0;
  try {
    inter = tessera::sdk::Params(config.params).get_int("intermediate_size");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(label + ": " + e.what());
  }
  if (inter <= 0)
    throw std::invalid_argument(label + ": intermediate_size must be positive, got " +
                                std::to_string(inter) + " (give it in the block or in [model])");
  if (config.hidden <= 0)
    throw std::invalid_argument(label + ": hidden size must be positive, got " +
                                std::to_string(config.hidden));
  return inter;
}

class SwigluFfn {
 public:
  explicit SwigluFfn(const ts_block_config& config)
      : label_(cu::block_label(config, "ffn swiglu")),
        host_(config.host),
        device_(config.device_index) {
    cu::check_block_config(config, label_);
    const cu::DeviceScope scope(device_);
    hidden_ = config.hidden;
    inter_ = swiglu_width(config, label_);
    const ts_weights* w = config.weights;
    std::vector<cu::DeviceBuffer> uploaded;
    gate_ = cu::fetch_weight(w, label_, "gate_proj.weight", inter_, hidden_, device_, uploaded);
    up_ = cu::fetch_weight(w, label_, "up_proj.weight", inter_, hidden_, device_, uploaded);
    down_ = cu::fetch_weight(w, label_, "down_proj.weight", hidden_, inter_, device_, owned_);
    if (uploaded.size() == 2) {
      // Both came from host memory: keep them back to back, so one GEMM makes gate_up.
      const size_t half = static_cast<size_t>(inter_ * hidden_) * sizeof(uint16_t);
      cu::DeviceBuffer& both = owned_.emplace_back(2 * half);
      cu::check(cudaMemcpy(both.get(), gate_.data, half, cudaMemcpyDeviceToDevice), "cudaMemcpy");
      cu::check(
          cudaMemcpy(both.get<unsigned char>() + half, up_.data, half, cudaMemcpyDeviceToDevice),
          "cudaMemcpy");
      gate_.data = both.get();
      up_.data = both.get<unsigned char>() + half;
    } else {
      for (cu::DeviceBuffer& b : uploaded) owned_.push_back(std::move(b));
    }
    fused_gate_up_ = gate_.ld == hidden_ && up_.ld == hidden_ &&
                     static_cast<const unsigned char*>(up_.data) ==
                         static_cast<const unsigned char*>(gate_.data) +
                             inter_ * hidden_ * static_cast<int64_t>(sizeof(uint16_t));
    gemm_ = std::make_unique<cu::Gemm>();
  }

  // The three projections create reads, unsharded (the CUDA blocks refuse world > 1).
  static tessera::sdk::BlockLayout describe(const ts_block_config& config) {
    const int64_t inter = swiglu_width(config, cu::block_label(config, "ffn swiglu"));
    const int64_t hidden = config.hidden;
    tessera::sdk::BlockLayout layout;
    layout.kv_dtype = TS_BF16;
    layout.weights = {{"gate_proj.weight", {inter, hidden}, TS_SPLIT_ROWS},
                      {"up_proj.weight", {inter, hidden}, TS_SPLIT_ROWS},
                      {"down_proj.weight", {hidden, inter}, TS_SPLIT_COLUMNS}};
    return layout;
  }

  // A CUDA device, bf16 activations, one rank.
  static void supports(const ts_block_config& config) {
    const std::string label = cu::block_label(config, "ffn swiglu");
    cu::check_block_config(config, label);
    (void)swiglu_width(config, label);
  }

  ts_block_info info() const {
    ts_block_info i{};
    i.struct_size = sizeof(ts_block_info);
    i.kv_dtype = TS_BF16;
    i.parameters = 3 * inter_ * hidden_;
    return i;
  }

  void forward(const ts_block_io& io) {
    const cu::DeviceScope scope(device_);
    const int64_t n = cu::checked_rows(io, label_, hidden_, device_);
    if (n == 0) return;
    const cudaStream_t stream = cu::host_stream(host_);
    scratch_.reserve(static_cast<size_t>(3 * n * inter_) * sizeof(uint16_t));
    auto* gate_up = scratch_.get<cu::ffn::bf16>();
    auto* act = gate_up + 2 * n * inter_;

    cu::GemmArgs g;
    g.x = io.x->data;
    g.m = n;
    g.k = hidden_;
    g.ldx = hidden_;
    g.ldy = 2 * inter_;
    if (fused_gate_up_) {
      g.w = gate_.data;
      g.n = 2 * inter_;
      g.ldw = hidden_;
      g.y = gate_up;
      gemm_->run(g, stream);
    } else {
      g.n = inter_;
      g.w = gate_.data;
      g.ldw = gate_.ld;
      g.y = gate_up;
      gemm_->run(g, stream);
      g.w = up_.data;
      g.ldw = up_.ld;
      g.y = gate_up + inter_;
      gemm_->run(g, stream);
    }
    cu::ffn::launch_swiglu(gate_up, n, inter_, act, stream);

    cu::GemmArgs d;
    d.x = act;
    d.w = down_.data;
    d.y = io.y->data;
    d.m = n;
    d.n = hidden_;
    d.k = inter_;
    d.ldx = inter_;
    d.ldw = down_.ld;
    d.ldy = hidden_;
    gemm_->run(d, stream);
  }

 private:
  std::string label_;
  const ts_host* host_ = nullptr;
  int32_t device_ = 0;
  int64_t hidden_ = 0, inter_ = 0;
  std::vector<cu::DeviceBuffer> owned_;
  cu::DeviceMatrix gate_, up_, down_;
  bool fused_gate_up_ = false;
  std::unique_ptr<cu::Gemm> gemm_;
  cu::DeviceBuffer scratch_;  // gate_up and act; grows, never shrinks
};

struct LinearFfn : cu::LinearBlock {
  explicit LinearFfn(const ts_block_config& c)
      : LinearBlock(c, "ffn linear", "linear_mlp.weight") {}
  static tessera::sdk::BlockLayout describe(const ts_block_config& c) {
    return layout(c, "linear_mlp.weight");
  }
};

struct NoopFfn : cu::NoopBlock {
  explicit NoopFfn(const ts_block_config& c) : NoopBlock(c, "ffn noop") {}
};

int32_t score() {
  return cu::score_when_device_present();
}

const ts_block_vtable kSwigluVtable = tessera::sdk::block_vtable<SwigluFfn>();
const ts_block_vtable kLinearVtable = tessera::sdk::block_vtable<LinearFfn>();
const ts_block_vtable kNoopVtable = tessera::sdk::block_vtable<NoopFfn>();

const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_FFN, "swiglu", TS_DEVICE_CUDA, &kSwigluVtable, score),
    tessera::sdk::provider(TS_KIND_FFN, "linear", TS_DEVICE_CUDA, &kLinearVtable, score),
    tessera::sdk::provider(TS_KIND_FFN, "noop", TS_DEVICE_CUDA, &kNoopVtable, score),
};

}  // namespace

TESSERA_PLUGIN("tessera-ffn-cuda", "0.1.0", kProviders)
