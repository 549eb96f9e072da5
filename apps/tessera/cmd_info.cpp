// tessera info: what a model is, without running it: its source and architecture, global
// shape, per-layer blocks (equal neighbours merged into ranges), parameters by block kind and
// KV-cache bytes (in each layer's kv_dtype) from what the blocks declare (the weight plan),
// bytes by dtype, tokenizer and chat template. --json for tools.
#include <tessera/engine/error.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/formats/model_source.hpp>

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <type_traits>
#include <variant>

#include "commands.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

struct InfoArgs {
  std::string model;
  bool json = false;
  std::vector<std::string> plugin_paths;
};

struct TensorInfo {
  std::string name;
  int64_t elements = 0;
  ts_dtype dtype = TS_F32;
};

// What info reports on: the loaded model (random weights are not generated: their tensors
// are the plan's, in f32) and its weight plan.
struct Described {
  LoadedModel model;
  std::unique_ptr<WeightPlan> plan;
  std::vector<TensorInfo> tensors;
  bool random = false;
};

Described describe(const InfoArgs& args) {
  Described d;
  d.model = open_model(args.model);
  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &d.model.manifest);
  d.plan = std::make_unique<WeightPlan>(plan_for(d.model.manifest, registry));
  d.random = d.model.manifest.weights.format == "random" && d.model.weights.all().empty();
  if (d.random) {
    for (const PlannedTensor& t : d.plan->tensors) d.tensors.push_back({t.name, t.numel(), TS_F32});
  } else {
    // In the dtype each will run in, as the model converts it.
    for (const auto& [name, tensor] : d.model.weights.all())
      d.tensors.push_back({name, tensor.numel(), run_dtype(*d.plan, name, tensor)});
  }
  return d;
}

// "gqa kv_heads=8": a block with the values it actually gets (model defaults filled in).
std::string block_text(const Manifest& m, const BlockSpec& block) {
  std::string text = block.kind;
  const ParamList params = m.block_params(block);
  auto add_int = [&](const char* key) {
    if (const ParamValue* v = params.find(key)) {
      if (const auto* i = std::get_if<int64_t>(v))
        text += " " + std::string(key) + "=" + std::to_string(*i);
    }
  };
  if (block.kind == "gqa") {
    add_int("kv_heads");
  } else if (block.kind == "swiglu") {
    add_int("intermediate_size");
  } else if (block.kind != "linear" && block.kind != "noop") {
    // A plugin's own kind: the parameters its block table gives, as written.
    for (const Param& p : block.params.items()) {
      text += " " + p.key + "=";
      std::visit(
          [&text](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::string>) {
              text += "\"" + v + "\"";
            } else if constexpr (std::is_same_v<T, bool>) {
              text += v ? "true" : "false";
            } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
              std::string list;
              for (const int64_t i : v) list += (list.empty() ? "" : ",") + std::to_string(i);
              text += "[" + list + "]";
            } else {
              std::ostringstream number;
              number << v;
              text += number.str();
            }
          },
          p.value);
    }
  }
  if (!block.plugin.empty()) text += " (plugin " + block.plugin + ")";
  return text;
}

struct LayerRange {
  int32_t first = 0;
  int32_t last = 0;
  std::string attention;
  std::string ffn;
};

std::vector<LayerRange> layer_ranges(const Manifest& m) {
  std::vector<LayerRange> ranges;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const std::string attention = block_text(m, m.layers[i].attention);
    const std::string ffn = block_text(m, m.layers[i].ffn);
    if (!ranges.empty() && ranges.back().attention == attention && ranges.back().ffn == ffn) {
      ranges.back().last = static_cast<int32_t>(i);
    } else {
      ranges.push_back({static_cast<int32_t>(i), static_cast<int32_t>(i), attention, ffn});
    }
  }
  return ranges;
}

// embedding, lm_head, norms, "attention gqa", "ffn swiglu", ...: the group of a planned tensor.
std::string tensor_group(const WeightPlan& plan, const PlannedTensor& t) {
  if (t.name == "model.embed_tokens.weight") return "embedding";
  if (t.name == "lm_head.weight") return "lm_head";
  if (t.local.empty()) return "norms";
  return std::string(kind_name(t.kind)) + " " +
         plan.block(t.layer, static_cast<ts_kind>(t.kind)).spec.kind;
}

// KV bytes per token: K and V rows of every layer whose attention declares a cache, in each
// one's dtype; `dtype` gets it ("mixed" when the layers differ, "none" without a cache).
int64_t kv_bytes_per_token(const WeightPlan& plan, std::string& dtype) {
  dtype.clear();
  for (const PlannedBlock& b : plan.attention) {
    const KvLayerShape kv = b.kv();
    if (kv.kv_heads == 0) continue;
    const std::string d = dtype_name(kv.dtype);
    dtype = dtype.empty() || dtype == d ? d : "mixed";
  }
  if (dtype.empty()) dtype = "none";
  return static_cast<int64_t>(plan.kv_bytes_per_token());
}

std::string number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

Json to_json(const Described& d) {
  const Manifest& m = d.model.manifest;
  const ModelSpec& s = m.model;
  Json j;
  j["path"] = d.model.path.string();
  j["format"] = std::string(to_string(d.model.format));
  j["architecture"] = d.model.architecture.empty() ? Json(nullptr) : Json(d.model.architecture);
  j["weights"] = {{"format", m.weights.format}, {"materialised", !d.random}};
  j["name"] = s.name;
  j["hidden_size"] = s.hidden_size;
  j["num_layers"] = s.num_layers;
  j["num_heads"] = s.num_heads;
  j["head_dim"] = s.head_dim;
  j["num_kv_heads"] = s.num_kv_heads;
  j["intermediate_size"] = s.intermediate_size;
  j["vocab_size"] = s.vocab_size;
  j["rope_theta"] = s.rope_theta;
  j["rope_scaling"] = s.rope_scaling.enabled()
                          ? Json{{"type", s.rope_scaling.type},
                                 {"factor", s.rope_scaling.factor},
                                 {"low_freq_factor", s.rope_scaling.low_freq_factor},
                                 {"high_freq_factor", s.rope_scaling.high_freq_factor},
                                 {"original_max_position_embeddings",
                                  s.rope_scaling.original_max_position_embeddings}}
                          : Json(nullptr);
  j["rms_norm_eps"] = s.rms_norm_eps;
  j["max_seq_len"] = s.max_seq_len;
  j["tie_embeddings"] = s.tie_embeddings;
  j["bos_token_id"] = s.bos_token_id >= 0 ? Json(s.bos_token_id) : Json(nullptr);
  j["eos_token_ids"] = s.eos_token_ids;

  Json layers = Json::array();
  for (const LayerRange& r : layer_ranges(m)) {
    layers.push_back(
        {{"first", r.first}, {"last", r.last}, {"attention", r.attention}, {"ffn", r.ffn}});
  }
  j["layers"] = std::move(layers);

  // Parameters as the blocks declare them; tensors of blocks that declare nothing, when the
  // weights are there, counted apart.
  const WeightPlan& plan = *d.plan;
  std::map<std::string, int64_t> groups;
  int64_t total = 0;
  for (const PlannedTensor& t : plan.tensors) {
    groups[tensor_group(plan, t)] += t.numel();
    total += t.numel();
  }
  std::map<std::string, int64_t> dtype_bytes;
  for (const TensorInfo& t : d.tensors) {
    dtype_bytes[dtype_name(t.dtype)] +=
        static_cast<int64_t>(tessera::dtype_bytes(t.dtype, t.elements));
    if (plan.find(t.name) == nullptr) {
      groups["undeclared"] += t.elements;
      total += t.elements;
    }
  }
  Json undeclared = Json::array();
  for (const PlannedBlock* b : plan.undeclared()) undeclared.push_back(b->label);
  j["parameters"] = {{"total", total}, {"by_group", groups}, {"undeclared_blocks", undeclared}};
  j["bytes_by_dtype"] = dtype_bytes;
  std::string kv_dtype;
  const int64_t kv = kv_bytes_per_token(plan, kv_dtype);
  j["kv_cache"] = {{"dtype", kv_dtype},
                   {"bytes_per_token", kv},
                   {"max_seq_len", s.max_seq_len},
                   {"bytes_at_max_seq_len", kv * s.max_seq_len}};
  j["tokenizer"] = d.model.tokenizer
                       ? Json{{"present", true}, {"vocab_size", d.model.tokenizer->vocab_size()}}
                       : Json{{"present", false}, {"reason", d.model.tokenizer_error}};
  j["chat_template"] = !d.model.chat_template.empty();
  return j;
}

void print_text(const Json& j) {
  auto line = [](const std::string& label, const std::string& value) {
    std::cout << label << std::string(label.size() < 14 ? 14 - label.size() : 1, ' ') << value
              << "\n";
  };
  const std::string architecture =
      j["architecture"].is_null() ? "" : " (" + j["architecture"].get<std::string>() + ")";
  line("model", j["name"].get<std::string>().empty() ? "(unnamed)" : j["name"].get<std::string>());
  line("source",
       j["format"].get<std::string>() + architecture + ", " + j["path"].get<std::string>());
  line("weights",
       j["weights"]["format"].get<std::string>() +
           (j["weights"]["materialised"].get<bool>() ? "" : " (not generated; f32 when they are)"));
  line("shape", "hidden " + j["hidden_size"].dump() + ", " + j["num_layers"].dump() + " layers, " +
                    j["num_heads"].dump() + " heads x " + j["head_dim"].dump() + ", vocab " +
                    j["vocab_size"].dump());
  std::string rope = "theta " + number(j["rope_theta"].get<double>());
  if (!j["rope_scaling"].is_null()) {
    const Json& s = j["rope_scaling"];
    rope += ", " + s["type"].get<std::string>() + " scaling (factor " +
            number(s["factor"].get<double>()) + ", low " +
            number(s["low_freq_factor"].get<double>()) + ", high " +
            number(s["high_freq_factor"].get<double>()) + ", original context " +
            s["original_max_position_embeddings"].dump() + ")";
  }
  line("rope", rope);
  std::string eos;
  for (const Json& id : j["eos_token_ids"]) eos += (eos.empty() ? "" : ", ") + id.dump();
  line("tokens", "bos " + (j["bos_token_id"].is_null() ? "none" : j["bos_token_id"].dump()) +
                     ", eos " + (eos.empty() ? "none" : eos) + ", max_seq_len " +
                     j["max_seq_len"].dump() + ", rms_norm_eps " +
                     number(j["rms_norm_eps"].get<double>()) +
                     (j["tie_embeddings"].get<bool>() ? ", tied embeddings" : ""));
  std::cout << "layers\n";
  for (const Json& r : j["layers"]) {
    const std::string range =
        r["first"] == r["last"] ? r["first"].dump() : r["first"].dump() + "-" + r["last"].dump();
    std::cout << "  " << range << std::string(range.size() < 8 ? 8 - range.size() : 1, ' ')
              << "attention " << r["attention"].get<std::string>() << " | ffn "
              << r["ffn"].get<std::string>() << "\n";
  }
  line("parameters", j["parameters"]["total"].dump() + " total");
  for (const auto& [group, count] : j["parameters"]["by_group"].items()) {
    std::cout << "  " << group << std::string(group.size() < 18 ? 18 - group.size() : 1, ' ')
              << count.dump() << "\n";
  }
  for (const Json& label : j["parameters"]["undeclared_blocks"]) {
    std::cout << "  (" << label.get<std::string>()
              << " declares no weights: its provider has no describe)\n";
  }
  std::string bytes;
  for (const auto& [dtype, count] : j["bytes_by_dtype"].items()) {
    bytes += (bytes.empty() ? "" : ", ") + count.dump() + " " + dtype;
  }
  line("bytes", bytes.empty() ? "none" : bytes);
  const Json& kv = j["kv_cache"];
  line("kv cache", kv["bytes_per_token"].dump() + " bytes per token (" +
                       kv["dtype"].get<std::string>() + "), " + kv["bytes_at_max_seq_len"].dump() +
                       " bytes at max_seq_len " + kv["max_seq_len"].dump());
  const Json& tokenizer = j["tokenizer"];
  line("tokenizer", tokenizer["present"].get<bool>()
                        ? "yes (" + tokenizer["vocab_size"].dump() + " tokens)"
                        : "no" + (tokenizer["reason"].get<std::string>().empty()
                                      ? std::string()
                                      : " (" + tokenizer["reason"].get<std::string>() + ")"));
  line("chat template", j["chat_template"].get<bool>() ? "yes" : "no");
}

int run_info(const InfoArgs& args) {
  const Json j = to_json(describe(args));
  if (args.json) {
    std::cout << j.dump(2) << "\n";
  } else {
    print_text(j);
  }
  return 0;
}

}  // namespace

Runner add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a model: shape, layers, parameters, memory");
  auto a = std::make_shared<InfoArgs>();
  cmd->add_option("model", a->model, "Manifest, .gguf file or Hugging Face folder")->required();
  cmd->add_flag("--json", a->json, "Machine-readable output");
  cmd->add_option("--plugin-path", a->plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  return [a] { return run_info(*a); };
}

}  // namespace tessera::cli
