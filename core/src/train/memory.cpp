// Activation memory: the per-layer formula and the report's table.
#include <tessera/train/memory.hpp>

#include <cstdio>
#include <string>
#include <variant>

namespace tessera::train {
namespace {

int64_t int_param(const ParamList& params, const char* key) {
  const ParamValue* v = params.find(key);
  if (v == nullptr) return 0;
  if (const auto* i = std::get_if<int64_t>(v)) return *i;
  if (const auto* d = std::get_if<double>(v)) return static_cast<int64_t>(*d);
  return 0;
}

std::string bytes_text(double bytes) {
  char text[32];
  if (bytes >= 1024.0 * 1024.0)
    std::snprintf(text, sizeof(text), "%.2f MiB", bytes / (1024.0 * 1024.0));
  else if (bytes >= 1024.0)
    std::snprintf(text, sizeof(text), "%.1f KiB", bytes / 1024.0);
  else
    std::snprintf(text, sizeof(text), "%.0f B", bytes);
  return text;
}

}  // namespace

const char* recompute_policy_name(ts_recompute policy) {
  switch (policy) {
    case TS_RECOMPUTE_NONE:
      return "none";
    case TS_RECOMPUTE_CORE:
      return "core";
    case TS_RECOMPUTE_ALL:
      return "all";
  }
  return "?";
}

double formula_layer_bytes(const LayerShape& layer, const std::vector<int64_t>& lengths,
                           ts_recompute policy, double bytes_per_element) {
  double tokens = 0, squares = 0;
  for (int64_t s : lengths) {
    tokens += static_cast<double>(s);
    squares += static_cast<double>(s) * static_cast<double>(s);
  }
  const auto h = static_cast<double>(layer.hidden);
  const bool has_blocks =
      layer.attention != LayerShape::Attention::none || layer.ffn != LayerShape::Ffn::none;
  if (policy == TS_RECOMPUTE_ALL) return has_blocks ? bytes_per_element * tokens * h : 0.0;
  double elements = 0;
  switch (layer.attention) {
    case LayerShape::Attention::gqa: {
      const auto q = static_cast<double>(layer.heads * layer.head_dim);
      const auto kv = static_cast<double>(layer.kv_heads * layer.head_dim);
      elements += tokens * (2 * h + 2 * q + 2 * kv);
      if (policy == TS_RECOMPUTE_NONE) elements += static_cast<double>(layer.heads) * squares;
      break;
    }
    case LayerShape::Attention::linear:
      elements += tokens * 2 * h;
      break;
    case LayerShape::Attention::none:
      break;
  }
  switch (layer.ffn) {
    case LayerShape::Ffn::swiglu:
      elements += tokens * (2 * h + 3 * static_cast<double>(layer.intermediate));
      break;
    case LayerShape::Ffn::linear:
      elements += tokens * 2 * h;
      break;
    case LayerShape::Ffn::none:
      break;
  }
  return bytes_per_element * elements;
}

double megatron_paper_layer_bytes(int64_t seq, int64_t batch, int64_t hidden, int64_t heads) {
  const auto s = static_cast<double>(seq), b = static_cast<double>(batch),
             h = static_cast<double>(hidden), a = static_cast<double>(heads);
  return s * b * h * (34.0 + 5.0 * a * s / h);
}

std::optional<LayerShape> layer_shape(const Manifest& manifest, int32_t layer) {
  if (layer < 0 || static_cast<size_t>(layer) >= manifest.layers.size()) return std::nullopt;
  const LayerSpec& spec = manifest.layers[static_cast<size_t>(layer)];
  LayerShape shape;
  shape.hidden = manifest.model.hidden_size;
  const ParamList attention = manifest.block_params(spec.attention);
  const ParamList ffn = manifest.block_params(spec.ffn);
  if (spec.attention.kind == "gqa") {
    shape.attention = LayerShape::Attention::gqa;
    shape.heads = int_param(attention, "num_heads");
    shape.kv_heads = int_param(attention, "kv_heads");
    shape.head_dim = int_param(attention, "head_dim");
  } else if (spec.attention.kind == "linear") {
    shape.attention = LayerShape::Attention::linear;
  } else if (spec.attention.kind == "noop") {
    shape.attention = LayerShape::Attention::none;
  } else {
    return std::nullopt;
  }
  if (spec.ffn.kind == "swiglu") {
    shape.ffn = LayerShape::Ffn::swiglu;
    shape.intermediate = int_param(ffn, "intermediate_size");
  } else if (spec.ffn.kind == "linear") {
    shape.ffn = LayerShape::Ffn::linear;
  } else if (spec.ffn.kind == "noop") {
    shape.ffn = LayerShape::Ffn::none;
  } else {
    return std::nullopt;
  }
  return shape;
}

std::string format_memory_report(const MemoryReport& report) {
  int64_t tokens = 0;
  for (int64_t s : report.lengths) tokens += s;
  std::string out =
      "activation memory, recompute " + std::string(recompute_policy_name(report.policy)) + ", " +
      std::to_string(report.lengths.size()) + " sequences, " + std::to_string(tokens) + " tokens\n";
  char line[160];
  std::snprintf(line, sizeof(line), "%-6s %14s %14s %14s %14s\n", "layer", "host", "workspace",
                "measured", "formula");
  out += line;
  double measured_total = 0, formula_total = 0;
  bool formula_complete = true;
  for (size_t l = 0; l < report.layers.size(); ++l) {
    const LayerMemory& m = report.layers[l];
    const std::optional<double> f =
        l < report.formula_bytes.size() ? report.formula_bytes[l] : std::nullopt;
    measured_total += static_cast<double>(m.total());
    if (f)
      formula_total += *f;
    else
      formula_complete = false;
    std::snprintf(line, sizeof(line), "%-6zu %14s %14s %14s %14s\n", l,
                  bytes_text(static_cast<double>(m.host_bytes)).c_str(),
                  bytes_text(static_cast<double>(m.workspace_bytes)).c_str(),
                  bytes_text(static_cast<double>(m.total())).c_str(),
                  f ? bytes_text(*f).c_str() : "-");
    out += line;
  }
  std::snprintf(line, sizeof(line), "%-6s %14s %14s %14s %14s\n", "all", "", "",
                bytes_text(measured_total).c_str(),
                formula_complete ? bytes_text(formula_total).c_str() : "-");
  out += line;
  out += "head " + bytes_text(static_cast<double>(report.head_bytes)) + ", peak " +
         bytes_text(static_cast<double>(report.peak_bytes)) + "; parameters: masters " +
         bytes_text(static_cast<double>(report.master_bytes)) + ", gradients " +
         bytes_text(static_cast<double>(report.gradient_bytes)) + ", optimiser " +
         bytes_text(static_cast<double>(report.optimizer_bytes)) + "\n";
  return out;
}

}  // namespace tessera::train
