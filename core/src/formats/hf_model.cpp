// Hugging Face folders: config.json (hf_config.hpp), safetensors weights in one file or sharded
// with model.safetensors.index.json (memory-mapped), tokenizer.json and the chat template of
// tokenizer_config.json (or chat_template.jinja).
#include <tessera/engine/error.hpp>
#include <tessera/engine/input_file.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/formats/hf_config.hpp>
#include <tessera/formats/hf_model.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/formats/safetensors.hpp>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "hf_names.hpp"

namespace fs = std::filesystem;

namespace tessera {
namespace {

using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

struct HfPaths {
  fs::path folder;
  fs::path config;
};

HfPaths locate(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return {path, path / "config.json"};
  if (path.filename() == "config.json") {
    const fs::path parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    return {parent, path};
  }
  throw ModelError("'" + path.string() +
                   "' is not a Hugging Face model; expected its folder or its config.json");
}

std::string read_text(const fs::path& path) {
  if (const std::string what = not_a_regular_file(path); !what.empty())
    throw ModelError("'" + path.string() + "' is " + what + ", not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    throw ModelError("'" + path.string() + "' " +
                     (fs::exists(path, ec) ? "cannot be read" : "does not exist"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Weights and, for messages, the file each tensor came from.
struct FolderWeights {
  WeightStore store;
  std::map<std::string, std::string> origin;
};

// A shard name from the index must stay inside the folder.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos;
}

FolderWeights read_sharded(const fs::path& folder, const fs::path& index_path) {
  const std::string index = index_path.string();
  json root;
  try {
    root = json::parse(read_text(index_path));
  } catch (const json::exception& e) {
    throw ModelError("'" + index + "': not valid JSON: " + e.what());
  }
  const auto map_it = root.is_object() ? root.find("weight_map") : root.end();
  if (map_it == root.end() || !map_it->is_object() || map_it->empty()) {
    throw ModelError("'" + index +
                     "': expected an object with a non-empty \"weight_map\" of tensor name -> "
                     "shard file");
  }
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [tensor, shard] : map_it->items()) {
    if (!shard.is_string() || !is_plain_file_name(shard.get<std::string>())) {
      throw ModelError("'" + index + "': weight_map entry for tensor '" + tensor + "' is " +
                       shard.dump() + "; expected the file name of a shard in the same folder");
    }
    by_shard[shard.get<std::string>()].push_back(tensor);
  }

  // Every shard must exist before any is read.
  for (const auto& [shard, tensors] : by_shard) {
    std::error_code ec;
    if (!fs::is_regular_file(folder / shard, ec)) {
      throw ModelError("'" + index + "': tensor '" + tensors.front() + "' is in shard '" + shard +
                       "', which does not exist in '" + folder.string() + "'");
    }
  }
  FolderWeights out;
  out.store.source = folder.string();
  for (const auto& [shard, tensors] : by_shard) {
    const fs::path shard_path = folder / shard;
    const WeightStore loaded = read_safetensors(shard_path);
    for (const std::string& tensor : tensors) {
      if (!loaded.has(tensor)) {
        throw ModelError("'" + index + "': tensor '" + tensor + "' is in shard '" + shard +
                         "' by the index, but that shard does not hold it (it holds " +
                         std::to_string(loaded.all().size()) + " tensors)");
      }
    }
    const std::set<std::string> claimed(tensors.begin(), tensors.end());
    for (const auto& [name, tensor] : loaded.all()) {
      if (claimed.count(name) == 0) {
        const auto listed = map_it->find(name);
        throw ModelError("shard '" + shard_path.string() + "' holds tensor '" + name +
                         "', which '" + index + "' " +
                         (listed == map_it->end()
                              ? std::string("does not list")
                              : "puts in shard " + listed->dump() + " instead") +
                         "; expected the index and the shards to agree");
      }
      out.store.add(name, tensor);
      out.origin[name] = shard_path.string();
    }
  }
  return out;
}

FolderWeights read_folder_weights(const fs::path& folder) {
  std::error_code ec;
  const fs::path single = folder / kSingleFile;
  const fs::path index = folder / kIndexFile;
  if (fs::exists(single, ec)) {  // as Hugging Face does, the single file wins
    FolderWeights out;
    out.store = read_safetensors(single);
    for (const auto& [name, tensor] : out.store.all()) out.origin[name] = single.string();
    return out;
  }
  if (fs::exists(index, ec)) return read_sharded(folder, index);
  throw ModelError("Hugging Face folder '" + folder.string() + "' has neither " + kSingleFile +
                   " nor " + kIndexFile +
                   "; expected safetensors weights (PyTorch .bin files "
                   "are not read)");
}

std::string layer_of(const std::string& tensor) {
  const std::string prefix = "model.layers.";
  if (tensor.rfind(prefix, 0) != 0) return "";
  const size_t end = tensor.find('.', prefix.size());
  return " (layer " + tensor.substr(prefix.size(), end - prefix.size()) + ")";
}

// Every tensor name the manifest's blocks read, by the name map of hf_names.hpp. Throws
// ModelError naming the layer and the kind for a kind the map does not know.
std::set<std::string> expected_names(const Manifest& m, const std::string& config_name) {
  std::set<std::string> names = {"model.embed_tokens.weight", "model.norm.weight"};
  if (!m.model.tie_embeddings) names.insert("lm_head.weight");
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const auto layer = static_cast<int32_t>(i);
    for (const ts_kind kind : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const BlockSpec& spec = kind == TS_KIND_ATTENTION ? m.layers[i].attention : m.layers[i].ffn;
      const hf_names::BlockNames* block = hf_names::find_block(kind, spec.kind);
      if (block == nullptr)
        throw ModelError(config_name + ": layer " + std::to_string(layer) + " " + kind_name(kind) +
                         " kind '" + spec.kind +
                         "' has no Hugging Face tensor names (known: gqa, linear, noop "
                         "attention; swiglu, linear, noop ffn)");
      if (block->has_norm) names.insert(block_norm_name(layer, kind));
      const std::string prefix =
          spec.prefix.empty() ? default_block_prefix(layer, kind) : spec.prefix;
      for (const char* local : block->tensors) names.insert(prefix + local);
    }
  }
  return names;
}

// Keeps the tensors the manifest's blocks read (named by hf_names.hpp), each checked for a
// float dtype and remembered with the file it came from; the model checks them against
// what the blocks declare (presence and shape) when it is built. Tables some checkpoints
// carry that are derived, not learned (rotary_emb.inv_freq), and an lm_head next to tied
// embeddings (Hugging Face ties it away) are dropped; any other tensor is refused.
WeightStore checked_weights(const Manifest& m, const FolderWeights& loaded,
                            const std::string& config_name) {
  WeightStore out;
  out.source = loaded.store.source;
  const std::set<std::string> expected = expected_names(m, config_name);
  for (const auto& [name, t] : loaded.store.all()) {
    const std::string& file = loaded.origin.at(name);
    if (expected.count(name) == 0) {
      const bool derived = name.size() > 20 && name.ends_with(".rotary_emb.inv_freq");
      const bool tied_head = m.model.tie_embeddings && name == "lm_head.weight";
      if (derived || tied_head) continue;
      throw ModelError("'" + file + "': tensor '" + name + "'" + layer_of(name) +
                       " is not a weight of the model " + config_name +
                       " describes (a block it calls noop or linear, or another architecture); "
                       "expected only the tensors of the configured blocks");
    }
    if (t.dtype() != TS_F32 && t.dtype() != TS_F16 && t.dtype() != TS_BF16) {
      throw ModelError("'" + file + "': tensor '" + name + "' has dtype " + dtype_name(t.dtype()) +
                       "; expected f32, f16 or bf16");
    }
    out.add(name, t);
    out.set_origin(name, "'" + file + "'");
  }
  return out;
}

// tokenizer_config.json "chat_template": a string, or a list of {name, template} of which the
// one named "default" is used; else chat_template.jinja. *source names where it was found.
std::string read_chat_template(const fs::path& folder, std::string* source) {
  std::error_code ec;
  const fs::path config_path = folder / "tokenizer_config.json";
  if (fs::exists(config_path, ec)) {
    json config;
    try {
      config = json::parse(read_text(config_path));
    } catch (const json::exception& e) {
      throw ModelError("'" + config_path.string() + "': not valid JSON: " + e.what());
    }
    const auto it = config.is_object() ? config.find("chat_template") : config.end();
    if (it != config.end() && !it->is_null()) {
      *source = "'" + config_path.string() + "' (chat_template)";
      if (it->is_string()) return it->get<std::string>();
      if (it->is_array()) {
        for (const json& entry : *it) {
          if (entry.is_object() && entry.value("name", "") == "default" &&
              entry.contains("template") && entry["template"].is_string()) {
            return entry["template"].get<std::string>();
          }
        }
      }
      throw ModelError("'" + config_path.string() +
                       "': 'chat_template' must be a string or a list of {\"name\", "
                       "\"template\"} with one named \"default\"; got " +
                       std::string(it->type_name()));
    }
  }
  const fs::path jinja = folder / "chat_template.jinja";
  if (fs::exists(jinja, ec)) {
    *source = "'" + jinja.string() + "'";
    return read_text(jinja);
  }
  source->clear();
  return "";
}

}  // namespace

void attach_hf_tokenizer(const fs::path& folder, LoadedModel& out) {
  out.tokenizer.reset();
  out.tokenizer_error.clear();
  out.chat_template = read_chat_template(folder, &out.chat_template_source);
  std::error_code ec;
  const fs::path path = folder / "tokenizer.json";
  if (!fs::exists(path, ec)) {
    out.tokenizer_error = "no tokenizer.json in '" + folder.string() + "'";
    return;
  }
  try {
    auto tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_json_file(path));
    if (tokenizer->vocab_size() > out.manifest.model.vocab_size) {
      throw TokenizerError("'" + path.string() + "' has " +
                           std::to_string(tokenizer->vocab_size()) +
                           " tokens, more than the model's vocab_size of " +
                           std::to_string(out.manifest.model.vocab_size));
    }
    out.tokenizer = std::move(tokenizer);
  } catch (const TokenizerError& e) {
    out.tokenizer_error = e.what();
  }
}

LoadedModel load_hf_model(const fs::path& path) {
  const HfPaths paths = locate(path);
  const std::string config_name = paths.config.string();
  HfConfig config = parse_hf_config(read_text(paths.config), config_name);

  LoadedModel out;
  out.format = ModelFormat::kHuggingFace;
  out.path = path;
  out.architecture = config.architecture;
  out.manifest = std::move(config.manifest);
  Manifest& m = out.manifest;
  std::error_code ec;
  fs::path folder = fs::absolute(paths.folder, ec).lexically_normal();
  if (ec) folder = paths.folder;
  if (m.model.name.empty()) {
    m.model.name = (folder.has_filename() ? folder : folder.parent_path()).filename().string();
  }
  m.source = paths.config;
  m.weights.path = folder;
  out.weights = checked_weights(m, read_folder_weights(paths.folder), config_name);
  attach_hf_tokenizer(paths.folder, out);
  return out;
}

WeightStore load_hf_weights(const fs::path& path) {
  FolderWeights loaded = read_folder_weights(locate(path).folder);
  for (const auto& [name, file] : loaded.origin) loaded.store.set_origin(name, "'" + file + "'");
  return std::move(loaded.store);
}

}  // namespace tessera
