// Hugging Face folder writer (hf_writer.hpp).
#include <tessera/engine/error.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/formats/hf_config.hpp>
#include <tessera/formats/hf_writer.hpp>
#include <tessera/formats/safetensors.hpp>
#include <tessera/tools/staging_folder.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace fs = std::filesystem;

namespace tessera {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool is_float(ts_dtype dtype) {
  return dtype == TS_F32 || dtype == TS_F16 || dtype == TS_BF16;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) throw ModelError("cannot write '" + path.string() + "'");
}

std::string shard_name(size_t index, size_t count) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return buffer;
}

// The tensors to write, in name order, checked against what the blocks declare. A block
// whose weights have a prefix of their own (a variant of its layer) is written under the
// layer's usual names, which is all config.json can say.
std::vector<std::pair<std::string, Tensor>> tensors_to_write(const WeightPlan& plan,
                                                             const WeightStore& weights,
                                                             std::vector<std::string>& dropped) {
  for (const PlannedBlock* b : plan.undeclared()) {
    throw ModelError("cannot write the model: " + b->label +
                     " declares no weights (its provider has no describe), so which of its "
                     "tensors to write is unknown");
  }
  std::map<std::string, std::pair<std::string, Tensor>> out;  // by the name written
  std::set<std::string> read;
  for (const PlannedTensor& p : plan.tensors) {
    read.insert(p.name);
    if (!weights.has(p.name)) {
      throw ModelError("cannot write the model: tensor '" + p.name + "' with shape " +
                       shape_text(p.shape) + " (" + p.owner + ") is missing from " +
                       (weights.source.empty() ? "the weights" : "'" + weights.source + "'"));
    }
    const Tensor& t = weights.get(p.name);
    if (t.shape() != p.shape) {
      throw ModelError("cannot write the model: tensor '" + p.name + "' has shape " +
                       shape_text(t.shape()) + "; " + p.owner + " declares " + shape_text(p.shape));
    }
    if ((!is_float(t.dtype()) && !is_quantized(t.dtype())) || t.device() != TS_DEVICE_CPU) {
      throw ModelError("cannot write the model: tensor '" + p.name + "' is " +
                       dtype_name(t.dtype()) + " on " + device_name(t.device()) +
                       "; expected f32, f16, bf16 or a quantised dtype on the CPU");
    }
    std::string written = p.name;
    if (!p.local.empty())
      written = default_block_prefix(p.layer, static_cast<ts_kind>(p.kind)) + p.local;
    if (out.count(written) != 0) {
      throw ModelError("cannot write the model: tensors '" + out.at(written).first + "' and '" +
                       p.name + "' would both be written as '" + written + "'");
    }
    out.emplace(written, std::make_pair(p.name, t));
  }
  for (const auto& [name, tensor] : weights.all()) {
    if (read.count(name) == 0) dropped.push_back(name);
  }
  std::vector<std::pair<std::string, Tensor>> sorted;
  sorted.reserve(out.size());
  for (auto& [written, source] : out) sorted.emplace_back(written, std::move(source.second));
  return sorted;
}

}  // namespace

std::vector<std::string> write_tokenizer_files(const fs::path& folder, const TokenizerFiles& files,
                                               std::string* note) {
  std::vector<std::string> written;
  if (note != nullptr) note->clear();
  bool have_json = false, have_config = false;
  if (!files.source.empty()) {
    std::error_code ec;
    const fs::path source =
        fs::is_directory(files.source, ec) ? files.source : files.source.parent_path();
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "chat_template.jinja"}) {
      if (!fs::is_regular_file(source / name, ec)) continue;
      fs::copy_file(source / name, folder / name, fs::copy_options::overwrite_existing, ec);
      if (ec) {
        throw ModelError("cannot copy '" + (source / name).string() + "': " + ec.message());
      }
      written.emplace_back(name);
      const std::string n = name;
      have_json = have_json || n == "tokenizer.json";
      have_config = have_config || n == "tokenizer_config.json" || n == "chat_template.jinja";
    }
  }
  bool wrote_json = false;
  if (!have_json && files.tokenizer) {
    try {
      write_text(folder / "tokenizer.json", to_tokenizer_json(*files.tokenizer));
      written.emplace_back("tokenizer.json");
      wrote_json = true;
    } catch (const TokenizerError& e) {
      if (note != nullptr) *note = e.what();
    }
  }
  if (!have_config && (wrote_json || !files.chat_template.empty())) {
    const std::string text =
        wrote_json ? to_tokenizer_config_json(*files.tokenizer, files.chat_template)
                   : nlohmann::json({{"chat_template", files.chat_template}}).dump(2) + "\n";
    write_text(folder / "tokenizer_config.json", text);
    written.emplace_back("tokenizer_config.json");
  }
  return written;
}

ts_dtype dominant_dtype(const WeightStore& weights) {
  if (weights.has("model.embed_tokens.weight")) {
    const ts_dtype dtype = weights.get("model.embed_tokens.weight").dtype();
    if (is_float(dtype)) return dtype;
  }
  return TS_F32;
}

HfWriteResult write_hf_model(const fs::path& folder, const WeightPlan& plan,
                             const WeightStore& weights, const HfWriteOptions& options) {
  const Manifest& manifest = plan.manifest;
  if (options.dtype && !is_float(*options.dtype)) {
    throw ModelError(std::string("cannot write the model as ") + dtype_name(*options.dtype) +
                     "; expected f32, f16 or bf16");
  }
  const ts_dtype dtype = options.dtype.value_or(dominant_dtype(weights));
  HfWriteResult result;
  HfConfigWriteOptions config_options;
  config_options.always_decilm = options.always_decilm;
  config_options.torch_dtype = dtype;
  const std::string config = hf_config_json(manifest, config_options);
  result.architecture = is_uniform_llama(manifest) && !options.always_decilm ? "LlamaForCausalLM"
                                                                             : "DeciLMForCausalLM";
  const auto tensors = tensors_to_write(plan, weights, result.dropped);

  // What a tensor is written as: --dtype, else its own; quantised ones (safetensors has no
  // such dtypes) dequantised to f32.
  auto written_dtype = [&](const Tensor& t) {
    return options.dtype ? *options.dtype : is_quantized(t.dtype()) ? TS_F32 : t.dtype();
  };
  // Shards in name order; a new one starts when the next tensor would pass the limit.
  auto bytes_written = [&](const Tensor& t) {
    return static_cast<uint64_t>(t.numel()) * dtype_size(written_dtype(t));
  };
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = bytes_written(tensors[i].second);
    if (options.max_shard_bytes > 0 && !shards.back().empty() &&
        shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += bytes;
    result.tensor_bytes += bytes;
  }

  StagingFolder staging(folder, options.overwrite);
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name =
        shards.size() == 1 ? "model.safetensors" : shard_name(s, shards.size());
    WeightStore shard;
    for (const size_t i : shards[s]) {
      const auto& [tensor_name, tensor] = tensors[i];
      const ts_dtype want = written_dtype(tensor);
      shard.add(tensor_name, tensor.dtype() != want ? tensor.to(want) : tensor);
      weight_map[tensor_name] = name;
    }
    write_safetensors(staging.path() / name, shard, {{"format", "pt"}});
    result.files.push_back(name);
  }
  if (shards.size() > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", result.tensor_bytes}}},
                                  {"weight_map", weight_map}};
    write_text(staging.path() / "model.safetensors.index.json", index.dump(2) + "\n");
    result.files.emplace_back("model.safetensors.index.json");
  }
  write_text(staging.path() / "config.json", config);
  result.files.emplace_back("config.json");
  for (std::string& name :
       write_tokenizer_files(staging.path(), options.tokenizer, &result.tokenizer_note))
    result.files.push_back(std::move(name));
  staging.commit();
  std::sort(result.files.begin(), result.files.end());
  return result;
}

}  // namespace tessera
