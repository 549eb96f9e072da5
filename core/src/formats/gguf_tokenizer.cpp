// tokenizer.ggml.* -> TokenizerData, and the tokens that end a reply.
#include <tessera/formats/gguf_model.hpp>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace tessera {
namespace {

[[noreturn]] void fail(const GgufFile& file, const std::string& what) {
  throw TokenizerError("GGUF file '" + file.name() + "': " + what);
}

std::vector<std::string> string_array(const GgufFile& file, const char* key) {
  const GgufValue* value = file.find(key);
  if (value == nullptr) fail(file, "metadata key '" + std::string(key) + "' is missing");
  if (!value->is_array() || value->element_type() != GgufValueType::STRING) {
    fail(file, "metadata key '" + std::string(key) + "' is " + value->to_string() +
                   "; expected an array of strings");
  }
  return {value->strings().begin(), value->strings().end()};
}

std::optional<int32_t> optional_id(const GgufFile& file, const char* key) {
  const GgufValue* value = file.find(key);
  if (value == nullptr) return std::nullopt;
  const std::optional<int64_t> id = value->as_int();
  if (!id || value->type() == GgufValueType::BOOL || *id < 0 ||
      *id > std::numeric_limits<int32_t>::max()) {
    fail(file, "metadata key '" + std::string(key) + "' is " + value->to_string() +
                   "; expected a token id");
  }
  return static_cast<int32_t>(*id);
}

}  // namespace

TokenizerData gguf_tokenizer_data(const GgufFile& file) {
  TokenizerData data;
  const GgufValue* model = file.find("tokenizer.ggml.model");
  if (model == nullptr) {
    fail(file, "the file has no tokenizer (metadata key 'tokenizer.ggml.model' is missing)");
  }
  const std::optional<std::string_view> model_name = model->as_string();
  if (!model_name) {
    fail(file,
         "metadata key 'tokenizer.ggml.model' is " + model->to_string() + "; expected a string");
  }
  data.model = std::string(*model_name);
  if (data.model != "gpt2") {
    fail(file, "tokenizer.ggml.model is \"" + data.model +
                   "\"; only \"gpt2\" (byte-level BPE) tokenizers are supported");
  }
  try {
    data.pre = file.get_string("tokenizer.ggml.pre", "gpt2");
    data.tokens = string_array(file, "tokenizer.ggml.tokens");
    data.merges = string_array(file, "tokenizer.ggml.merges");
    if (const GgufValue* types = file.find("tokenizer.ggml.token_type")) {
      const std::optional<std::vector<int64_t>> values = types->as_int_array();
      if (!types->is_array() || !values) {
        fail(file, "metadata key 'tokenizer.ggml.token_type' is " + types->to_string() +
                       "; expected an array of integers");
      }
      for (const int64_t type : *values) {
        data.token_types.push_back(static_cast<int32_t>(std::clamp<int64_t>(type, -1, 1000)));
      }
    }
    data.bos_id = optional_id(file, "tokenizer.ggml.bos_token_id");
    data.eos_id = optional_id(file, "tokenizer.ggml.eos_token_id");
    data.unknown_id = optional_id(file, "tokenizer.ggml.unknown_token_id");
    data.padding_id = optional_id(file, "tokenizer.ggml.padding_token_id");
    if (file.contains("tokenizer.ggml.add_bos_token")) {
      data.add_bos = file.get_bool("tokenizer.ggml.add_bos_token");
    }
    data.chat_template = file.get_string("tokenizer.chat_template", "");
  } catch (const ModelError& e) {  // a wrong type from the GGUF reader: already names the key
    throw TokenizerError(e.what());
  }
  return data;
}

std::vector<int64_t> end_of_turn_ids(const GgufFile& file, const Tokenizer& tokenizer,
                                     const TokenizerData& data) {
  std::vector<int64_t> ids;
  if (data.eos_id) ids.push_back(*data.eos_id);
  if (const std::optional<int32_t> eot = optional_id(file, "tokenizer.ggml.eot_token_id")) {
    if (*eot < tokenizer.vocab_size()) ids.push_back(*eot);
  }
  // The end-of-turn markers of the chat template families Tessera formats.
  for (const char* marker : {"<|im_end|>", "<|eot_id|>"}) {
    if (data.chat_template.find(marker) == std::string::npos) continue;
    const std::optional<int32_t> id = tokenizer.token_id(marker);
    if (id && tokenizer.is_special(*id)) ids.push_back(*id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace tessera
