#include <tessera/engine/error.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/puzzle/library.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace tessera::puzzle {

namespace {

size_t sz(int64_t n) {
  return static_cast<size_t>(n);
}

int64_t param_int(const ParamList& params, const std::string& key) {
  const ParamValue* v = params.find(key);
  if (v == nullptr || !std::holds_alternative<int64_t>(*v))
    throw Error("block parameter '" + key + "' is missing or not an integer");
  return std::get<int64_t>(*v);
}

std::string number_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string default_or(const BlockSpec& spec, int32_t layer, ts_kind kind) {
  return spec.prefix.empty() ? default_block_prefix(layer, kind) : spec.prefix;
}

std::vector<float> f32_values(const WeightStore& weights, const std::string& name) {
  const Tensor& t = weights.get(name);
  std::vector<float> out(sz(t.numel()));
  convert(t.raw(), t.dtype(), out.data(), TS_F32, t.numel());
  return out;
}

Tensor tensor_of(const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor t(std::move(shape), TS_F32);
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

Variant linear_variant(int32_t layer, ts_kind part, int64_t hidden) {
  Variant v;
  v.name = "linear";
  v.part = part;
  v.block.kind = "linear";
  v.block.prefix = variant_prefix(layer, part, v.name);
  v.init = VariantInit::kLeastSquares;
  v.parameters = hidden * hidden;
  return v;
}

// A parent block of a kind without cheaper variants of its own (linear, noop, a plugin's).
// Its parameter count is known for the built-in kinds only (0 otherwise: the cost stage
// measures bytes).
Variant parent_block_variant(const BlockSpec& block, ts_kind part, int64_t hidden) {
  Variant v;
  v.name = block.kind;
  v.part = part;
  v.block = block;
  v.init = VariantInit::kParent;
  v.parameters = block.kind == "linear" ? hidden * hidden : 0;
  return v;
}

Variant noop_variant(ts_kind part) {
  Variant v;
  v.name = "noop";
  v.part = part;
  v.block.kind = "noop";
  v.init = VariantInit::kNone;
  return v;
}

}  // namespace

std::string_view to_string(VariantInit init) {
  switch (init) {
    case VariantInit::kParent:
      return "parent";
    case VariantInit::kPruned:
      return "pruned";
    case VariantInit::kMeanPooled:
      return "mean-pooled";
    case VariantInit::kLeastSquares:
      return "least-squares";
    case VariantInit::kNone:
      return "none";
  }
  return "none";
}

std::string variant_prefix(int32_t layer, ts_kind part, const std::string& name) {
  return "model.layers." + std::to_string(layer) + ".variants." +
         (part == TS_KIND_ATTENTION ? "attention." : "ffn.") + name + ".";
}

std::vector<int64_t> ffn_widths(int64_t intermediate, const LibraryOptions& o) {
  if (o.ffn_width_multiple < 1)
    throw Error("ffn_width_multiple is " + std::to_string(o.ffn_width_multiple) +
                "; expected an integer >= 1");
  std::vector<int64_t> out;
  for (const double f : o.ffn_fractions) {
    if (!(f > 0.0 && f <= 1.0))
      throw Error("FFN width fraction " + number_text(f) + " is outside (0, 1]");
    const double m = static_cast<double>(o.ffn_width_multiple);
    int64_t w = static_cast<int64_t>(std::llround(f * static_cast<double>(intermediate) / m)) *
                o.ffn_width_multiple;
    w = std::clamp<int64_t>(w, std::min(o.ffn_width_multiple, intermediate), intermediate);
    if (f == 1.0) w = intermediate;
    if (std::find(out.begin(), out.end(), w) == out.end()) out.push_back(w);
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

std::vector<LayerVariants> plan_variants(const Manifest& parent, const LibraryOptions& o) {
  const ModelSpec& m = parent.model;
  const int64_t hidden = m.hidden_size;
  std::vector<LayerVariants> out;
  for (int32_t l = 0; l < m.num_layers; ++l) {
    const LayerSpec& spec = parent.layers[sz(l)];
    LayerVariants lv;

    // Attention.
    const ParamList ap = parent.block_params(spec.attention);
    if (spec.attention.kind == "gqa") {
      const int64_t heads = param_int(ap, "num_heads");
      const int64_t head_dim = param_int(ap, "head_dim");
      const int64_t kv = param_int(ap, "kv_heads");
      std::vector<int32_t> counts = o.kv_heads;
      if (counts.empty()) {
        for (int64_t k = kv; k >= 1; --k)
          if (kv % k == 0) counts.push_back(static_cast<int32_t>(k));
      }
      std::sort(counts.rbegin(), counts.rend());
      counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
      for (const int32_t k : counts) {
        if (k < 1 || kv % k != 0)
          throw Error("kv_heads " + std::to_string(k) + " does not divide layer " +
                      std::to_string(l) + "'s " + std::to_string(kv) +
                      " KV heads; expected a divisor of it");
        Variant v;
        v.name = "gqa_kv" + std::to_string(k);
        v.part = TS_KIND_ATTENTION;
        v.block = spec.attention;
        v.kv_heads = k;
        v.parameters = 2 * heads * head_dim * hidden + 2 * k * head_dim * hidden;
        if (k == kv) {
          v.init = VariantInit::kParent;
        } else {
          v.block.params.set("kv_heads", int64_t{k});
          v.block.prefix = variant_prefix(l, TS_KIND_ATTENTION, v.name);
          v.init = VariantInit::kMeanPooled;
        }
        lv.attention.push_back(std::move(v));
      }
    } else {
      lv.attention.push_back(parent_block_variant(spec.attention, TS_KIND_ATTENTION, hidden));
    }
    const auto has = [](const std::vector<Variant>& list, const std::string& name) {
      return std::any_of(list.begin(), list.end(),
                         [&](const Variant& v) { return v.name == name; });
    };
    if (o.attention_linear && !has(lv.attention, "linear") && !has(lv.attention, "noop"))
      lv.attention.push_back(linear_variant(l, TS_KIND_ATTENTION, hidden));
    if (o.attention_noop && !has(lv.attention, "noop"))
      lv.attention.push_back(noop_variant(TS_KIND_ATTENTION));

    // FFN.
    if (spec.ffn.kind == "swiglu") {
      const int64_t inter = param_int(parent.block_params(spec.ffn), "intermediate_size");
      for (const int64_t w : ffn_widths(inter, o)) {
        Variant v;
        v.name = "swiglu_" + std::to_string(w);
        v.part = TS_KIND_FFN;
        v.block = spec.ffn;
        v.parameters = 3 * w * hidden;
        if (w == inter) {
          v.init = VariantInit::kParent;
        } else {
          v.block.params.set("intermediate_size", int64_t{w});
          v.block.prefix = variant_prefix(l, TS_KIND_FFN, v.name);
          v.init = VariantInit::kPruned;
        }
        lv.ffn.push_back(std::move(v));
      }
    } else {
      lv.ffn.push_back(parent_block_variant(spec.ffn, TS_KIND_FFN, hidden));
    }
    // A no-op parent has nothing cheaper (and a linear block fitted to its zero output would
    // be a slower no-op).
    if (o.ffn_linear && !has(lv.ffn, "linear") && !has(lv.ffn, "noop"))
      lv.ffn.push_back(linear_variant(l, TS_KIND_FFN, hidden));
    if (o.ffn_noop && !has(lv.ffn, "noop")) lv.ffn.push_back(noop_variant(TS_KIND_FFN));
    out.push_back(std::move(lv));
  }
  return out;
}

void build_variant_weights(const Manifest& parent, std::vector<LayerVariants>& library,
                           const Calibration& calibration, const LibraryOptions& o,
                           WeightStore& weights) {
  const int64_t hidden = parent.model.hidden_size;
  if (library.size() != parent.layers.size() || calibration.layers.size() != parent.layers.size())
    throw Error("block library: the parent has " + std::to_string(parent.layers.size()) +
                " layers but the library has " + std::to_string(library.size()) +
                " and the calibration " + std::to_string(calibration.layers.size()));
  for (int32_t l = 0; l < static_cast<int32_t>(library.size()); ++l) {
    const LayerSpec& spec = parent.layers[sz(l)];
    const LayerCalibration& cal = calibration.layers[sz(l)];
    for (Variant& v : library[sz(l)].attention) {
      if (v.init == VariantInit::kMeanPooled) {
        const ParamList ap = parent.block_params(spec.attention);
        const int64_t head_dim = param_int(ap, "head_dim");
        const int64_t kv = param_int(ap, "kv_heads");
        const int64_t heads = param_int(ap, "num_heads");
        const std::string from = default_or(spec.attention, l, TS_KIND_ATTENTION);
        for (const char* name : {"k_proj.weight", "v_proj.weight"}) {
          const std::vector<float> w = f32_values(weights, from + name);
          weights.add(v.block.prefix + name,
                      tensor_of(mean_pool_heads(w.data(), kv, head_dim, hidden, v.kv_heads),
                                {v.kv_heads * head_dim, hidden}));
        }
        weights.add(
            v.block.prefix + "q_proj.weight",
            tensor_of(f32_values(weights, from + "q_proj.weight"), {heads * head_dim, hidden}));
        weights.add(
            v.block.prefix + "o_proj.weight",
            tensor_of(f32_values(weights, from + "o_proj.weight"), {hidden, heads * head_dim}));
      } else if (v.init == VariantInit::kLeastSquares) {
        LinearFit fit = least_squares_linear(cal.attention, o.ridge);
        v.fit_nmse = fit.nmse;
        weights.add(v.block.prefix + "linear_attn.weight", tensor_of(fit.weight, {hidden, hidden}));
      }
    }
    for (Variant& v : library[sz(l)].ffn) {
      if (v.init == VariantInit::kPruned) {
        const int64_t inter = param_int(parent.block_params(spec.ffn), "intermediate_size");
        const int64_t width = param_int(v.block.params, "intermediate_size");
        const std::string from = default_or(spec.ffn, l, TS_KIND_FFN);
        const std::vector<float> gate = f32_values(weights, from + "gate_proj.weight");
        const std::vector<float> up = f32_values(weights, from + "up_proj.weight");
        const std::vector<float> down = f32_values(weights, from + "down_proj.weight");
        const std::vector<int32_t> keep =
            top_channels(channel_contributions(cal.channels, down.data(), hidden), width);
        SwigluWeights p = prune_swiglu(gate.data(), up.data(), down.data(), hidden, inter, keep);
        weights.add(v.block.prefix + "gate_proj.weight", tensor_of(p.gate, {width, hidden}));
        weights.add(v.block.prefix + "up_proj.weight", tensor_of(p.up, {width, hidden}));
        weights.add(v.block.prefix + "down_proj.weight", tensor_of(p.down, {hidden, width}));
      } else if (v.init == VariantInit::kLeastSquares) {
        LinearFit fit = least_squares_linear(cal.ffn, o.ridge);
        v.fit_nmse = fit.nmse;
        weights.add(v.block.prefix + "linear_mlp.weight", tensor_of(fit.weight, {hidden, hidden}));
      }
    }
  }
}

Manifest child_manifest(const Manifest& parent, const std::vector<LayerVariants>& library,
                        const std::vector<std::pair<std::string, std::string>>& choice) {
  if (choice.size() != library.size())
    throw Error("a child names " + std::to_string(choice.size()) + " layers but the library has " +
                std::to_string(library.size()));
  Manifest child = parent;
  for (size_t l = 0; l < choice.size(); ++l) {
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const std::string& name = part == TS_KIND_ATTENTION ? choice[l].first : choice[l].second;
      const std::vector<Variant>& list = library[l].of(part);
      const auto it =
          std::find_if(list.begin(), list.end(), [&](const Variant& v) { return v.name == name; });
      if (it == list.end()) {
        std::string names;
        for (const Variant& v : list) names += (names.empty() ? "" : ", ") + v.name;
        throw Error("layer " + std::to_string(l) + " has no " +
                    (part == TS_KIND_ATTENTION ? "attention" : "FFN") + " variant '" + name +
                    "'; it has " + names);
      }
      (part == TS_KIND_ATTENTION ? child.layers[l].attention : child.layers[l].ffn) = it->block;
    }
  }
  return child;
}

}  // namespace tessera::puzzle
