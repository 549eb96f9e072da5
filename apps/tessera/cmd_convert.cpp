// tessera convert: read a model from any source open_model understands (manifest, GGUF file,
// Hugging Face folder) and write it as a Hugging Face folder or as manifest.toml +
// model.safetensors. Output goes to a staging folder first and is renamed into place, so a
// failed conversion leaves nothing that looks like a model.
#include <tessera/engine/error.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/formats/hf_writer.hpp>
#include <tessera/formats/model_source.hpp>

#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "model_folder.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

struct ConvertArgs {
  std::string source;
  std::string destination;
  std::string to;
  std::string dtype;
  std::string max_shard_size;
  bool decilm = false;
  bool force = false;
  std::vector<std::string> plugin_paths;
};

std::optional<ts_dtype> parse_dtype(const std::string& text) {
  if (text.empty()) return std::nullopt;
  if (text == "f32") return TS_F32;
  if (text == "f16") return TS_F16;
  if (text == "bf16") return TS_BF16;
  throw Error("--dtype is '" + text + "'; expected bf16, f16 or f32");
}

void report_dropped(const std::vector<std::string>& dropped) {
  if (dropped.empty()) return;
  std::cerr << "note: " << dropped.size() << " tensor(s) no block uses were not written:";
  for (size_t i = 0; i < dropped.size() && i < 5; ++i) std::cerr << " " << dropped[i];
  std::cerr << (dropped.size() > 5 ? " ..." : "") << "\n";
}

int convert_to_hf(const ConvertArgs& args, const LoadedModel& model, const WeightPlan& plan) {
  HfWriteOptions options;
  options.dtype = parse_dtype(args.dtype);
  options.max_shard_bytes = args.max_shard_size.empty() ? 0 : parse_byte_size(args.max_shard_size);
  options.always_decilm = args.decilm;
  options.overwrite = args.force;
  options.tokenizer = tokenizer_files(model);
  const HfWriteResult result = write_hf_model(args.destination, plan, model.weights, options);
  note_tokenizer(model, result.tokenizer_note);
  report_dropped(result.dropped);
  std::cout << "wrote " << args.destination << " (" << result.architecture << ", "
            << result.tensor_bytes << " bytes of tensors in " << result.files.size() << " files)\n";
  return 0;
}

int convert_to_manifest(const ConvertArgs& args, const LoadedModel& model) {
  if (!args.max_shard_size.empty() || args.decilm) {
    throw Error("--max-shard-size and --decilm apply only to --to hf");
  }
  const uint64_t bytes = write_manifest_folder(args.destination, model, model.weights,
                                               parse_dtype(args.dtype), args.force);
  std::cout << "wrote " << (fs::path(args.destination) / "manifest.toml").string()
            << " and model.safetensors (" << bytes << " bytes of tensors)\n";
  return 0;
}

int run_convert(const ConvertArgs& args) {
  if (args.to != "hf" && args.to != "manifest") {
    throw Error("--to is '" + args.to + "'; expected hf or manifest");
  }
  (void)parse_dtype(args.dtype);  // refuse a bad --dtype before reading a large model
  if (!args.max_shard_size.empty()) (void)parse_byte_size(args.max_shard_size);
  LoadedModel model = open_model(args.source);
  // What the blocks declare: which tensors to write, and random weights to draw.
  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &model.manifest);
  const WeightPlan plan = plan_for(model.manifest, registry);
  draw_random_weights(model, plan);
  return args.to == "hf" ? convert_to_hf(args, model, plan) : convert_to_manifest(args, model);
}

}  // namespace

Runner add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "Write a model (manifest, GGUF or Hugging Face) as a Hugging Face folder or a "
      "manifest with safetensors weights");
  auto a = std::make_shared<ConvertArgs>();
  cmd->add_option("source", a->source, "Manifest, .gguf file or Hugging Face folder")->required();
  cmd->add_option("destination", a->destination, "Folder to write")->required();
  cmd->add_option("--to", a->to, "Output format: hf or manifest")->required();
  cmd->add_option("--dtype", a->dtype, "Convert every tensor: bf16, f16 or f32 (default: keep)");
  cmd->add_option("--max-shard-size", a->max_shard_size,
                  "hf: split the weights into shards of at most this size (e.g. 5GB, 500MB)");
  cmd->add_flag("--decilm", a->decilm, "hf: DeciLMForCausalLM even when every layer is the same");
  cmd->add_flag("-f,--force", a->force, "Replace an existing non-empty destination folder");
  cmd->add_option("--plugin-path", a->plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  return [a] { return run_convert(*a); };
}

}  // namespace tessera::cli
