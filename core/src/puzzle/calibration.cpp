#include <tessera/engine/error.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/puzzle/calibration.hpp>
#include <tessera/train/ops.hpp>

#include <string>

namespace tessera::puzzle {

namespace {

// A weight of the model as f32 (the store keeps [runtime] weight_dtype).
std::vector<float> f32_values(const Model& model, const std::string& name) {
  const Tensor& t = model.weights().get(name);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  convert(t.raw(), t.dtype(), out.data(), TS_F32, t.numel());
  return out;
}

std::string block_prefix(const Model& model, int32_t layer, ts_kind kind) {
  const LayerSpec& spec = model.manifest().layers.at(static_cast<size_t>(layer));
  const BlockSpec& block = kind == TS_KIND_ATTENTION ? spec.attention : spec.ffn;
  return block.prefix.empty() ? default_block_prefix(layer, kind) : block.prefix;
}

}  // namespace

Calibration calibrate(Model& model, const std::vector<train::TrainBatch>& batches,
                      const std::function<void(int64_t tokens)>& progress) {
  const int32_t layers = model.num_layers();
  const int64_t hidden = model.hidden();
  const double eps = model.manifest().model.rms_norm_eps;
  const ts_host* host = model.pool().host();

  Calibration c;
  std::vector<train::BlockRef> refs;
  struct Swiglu {
    std::vector<float> gate, up;
  };
  std::vector<Swiglu> swiglu(static_cast<size_t>(layers));
  std::vector<std::vector<float>> norms;  // per ref
  for (int32_t l = 0; l < layers; ++l) {
    LayerCalibration lc{LinearFitStats(hidden), LinearFitStats(hidden), ChannelStats(0)};
    for (const ts_kind kind : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const Block& block = kind == TS_KIND_ATTENTION ? model.attention(l) : model.ffn(l);
      if (block.identity()) continue;
      refs.push_back({l, kind});
      norms.push_back(f32_values(model, block_norm_name(l, kind)));
    }
    const BlockSpec& ffn = model.manifest().layers[static_cast<size_t>(l)].ffn;
    if (ffn.kind == "swiglu") {
      const std::string p = block_prefix(model, l, TS_KIND_FFN);
      Swiglu& s = swiglu[static_cast<size_t>(l)];
      s.gate = f32_values(model, p + "gate_proj.weight");
      s.up = f32_values(model, p + "up_proj.weight");
      lc.channels = ChannelStats(static_cast<int64_t>(s.gate.size()) / hidden);
    }
    c.layers.push_back(std::move(lc));
  }

  std::vector<float> normed;
  for (const train::TrainBatch& batch : batches) {
    const std::vector<train::BlockRecord> records = train::record_blocks_io(model, batch, refs);
    const int64_t n = static_cast<int64_t>(batch.tokens.size());
    normed.resize(static_cast<size_t>(n * hidden));
    for (size_t i = 0; i < refs.size(); ++i) {
      const train::BlockRef& r = refs[i];
      LayerCalibration& lc = c.layers[static_cast<size_t>(r.layer)];
      train::rmsnorm_forward(host, records[i].input.data(), norms[i].data(), eps, n, hidden,
                             normed.data(), nullptr);
      if (r.kind == TS_KIND_ATTENTION) {
        lc.attention.add(host, normed.data(), records[i].output.data(), n);
      } else {
        lc.ffn.add(host, normed.data(), records[i].output.data(), n);
        const Swiglu& s = swiglu[static_cast<size_t>(r.layer)];
        if (!s.gate.empty())
          lc.channels.add(host, normed.data(), n, hidden, s.gate.data(), s.up.data());
      }
    }
    c.tokens += n;
    if (progress) progress(c.tokens);
  }
  return c;
}

}  // namespace tessera::puzzle
