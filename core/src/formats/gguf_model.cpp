// GGUF (architectures llama and deci) -> manifest, weights under Hugging Face names, tokenizer.
#include <tessera/engine/error.hpp>
#include <tessera/engine/log.hpp>
#include <tessera/formats/gguf_model.hpp>
#include <tessera/formats/model_source.hpp>

#include <memory>
#include <string>

namespace tessera {

void attach_gguf_tokenizer(const GgufFile& file, LoadedModel& model) {
  ModelSpec& spec = model.manifest.model;
  // A manifest's own ids win; the file fills the ones it leaves out.
  const bool fill_bos = spec.bos_token_id < 0;
  const bool fill_eos = spec.eos_token_ids.empty();
  try {
    const TokenizerData data = gguf_tokenizer_data(file);
    std::shared_ptr<const Tokenizer> tokenizer;
    try {
      tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_data(data));
    } catch (const TokenizerError& e) {
      throw TokenizerError("GGUF file '" + file.name() + "': " + e.what());
    }
    if (tokenizer->vocab_size() > spec.vocab_size) {
      throw TokenizerError("GGUF file '" + file.name() + "': tokenizer.ggml.tokens has " +
                           std::to_string(tokenizer->vocab_size()) +
                           " tokens, more than the model's vocab_size of " +
                           std::to_string(spec.vocab_size));
    }
    model.tokenizer = std::move(tokenizer);
    model.chat_template = data.chat_template;
    model.chat_template_source = "'" + file.name() + "' (tokenizer.chat_template)";
    model.tokenizer_error.clear();
    if (fill_bos) spec.bos_token_id = data.bos_id.value_or(-1);
    if (fill_eos) spec.eos_token_ids = end_of_turn_ids(file, *model.tokenizer, data);
  } catch (const TokenizerError& e) {
    model.tokenizer.reset();
    model.chat_template.clear();
    model.chat_template_source.clear();
    model.tokenizer_error = e.what();
    log(LogLevel::info, model.tokenizer_error);
    // Token ids still work: keep the end token so that generation stops.
    const int64_t eos = file.get_int("tokenizer.ggml.eos_token_id", -1);
    if (fill_eos && eos >= 0 && eos < spec.vocab_size) spec.eos_token_ids = {eos};
  }
}

LoadedModel load_gguf_model(const std::filesystem::path& path) {
  const GgufFile file = GgufFile::open(path);
  LoadedModel out;
  out.format = ModelFormat::kGguf;
  out.path = path;
  out.manifest = gguf_manifest(file);
  attach_gguf_tokenizer(file, out);
  out.weights = gguf_weights(file, out.manifest);
  return out;
}

WeightStore load_gguf_weights(const std::filesystem::path& path) {
  const GgufFile file = GgufFile::open(path);
  return gguf_weights(file, gguf_manifest(file));
}

}  // namespace tessera
