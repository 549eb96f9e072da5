// The Hugging Face tokenizer.json front end: checks the parts a byte-level BPE needs and
// turns them into TokenizerData. Every error names the JSON pointer of the offending value.
#include <nlohmann/json.hpp>

#include "tessera/text/tokenizer.hpp"

namespace tessera {

namespace {

using nlohmann::json;

constexpr std::string_view kGpt2Pattern =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kLlama3Pattern =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)re"
    R"re( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// RFC 6901: "~" -> "~0", "/" -> "~1".
std::string escape_pointer_token(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

class JsonReader {
 public:
  explicit JsonReader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& pointer, const std::string& message) const {
    throw TokenizerError(source_ + ": " + (pointer.empty() ? "/" : pointer) + ": " + message);
  }

  static std::string kind_of(const json& value) { return value.type_name(); }

  const json& member(const json& object, const std::string& pointer, const char* key) const {
    const auto found = object.find(key);
    if (found == object.end()) fail(pointer, std::string("missing required key \"") + key + "\"");
    return *found;
  }
  const json& object_at(const json& object, const std::string& pointer, const char* key) const {
    const json& value = member(object, pointer, key);
    if (!value.is_object())
      fail(pointer + "/" + key, "expected an object, found " + kind_of(value));
    return value;
  }
  std::string string_of(const json& value, const std::string& pointer) const {
    if (!value.is_string()) fail(pointer, "expected a string, found " + kind_of(value));
    return value.get<std::string>();
  }
  std::int32_t id_of(const json& value, const std::string& pointer) const {
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0 ||
        value.get<std::int64_t>() > 0x7FFFFFFF) {
      fail(pointer, "expected a non-negative integer token id, found " +
                        (value.is_number() ? value.dump() : kind_of(value)));
    }
    return static_cast<std::int32_t>(value.get<std::int64_t>());
  }
  bool bool_or(const json& object, const std::string& pointer, const char* key,
               bool fallback) const {
    const auto found = object.find(key);
    if (found == object.end() || found->is_null()) return fallback;
    if (!found->is_boolean()) {
      fail(pointer + "/" + key, "expected true or false, found " + kind_of(*found));
    }
    return found->get<bool>();
  }
  std::string type_of(const json& object, const std::string& pointer) const {
    if (!object.is_object()) fail(pointer, "expected an object, found " + kind_of(object));
    return string_of(member(object, pointer, "type"), pointer + "/type");
  }

 private:
  std::string source_;
};

// Checks a ByteLevel pre-tokenizer and returns whether it splits with the GPT-2 pattern itself.
bool read_byte_level(const JsonReader& reader, const json& node, const std::string& pointer) {
  if (reader.bool_or(node, pointer, "add_prefix_space", false)) {
    reader.fail(pointer + "/add_prefix_space",
                "add_prefix_space = true is not supported; expected false");
  }
  return reader.bool_or(node, pointer, "use_regex", true);
}

PreTokenizerKind read_pre_tokenizer(const JsonReader& reader, const json& root) {
  const std::string pointer = "/pre_tokenizer";
  const json& node = reader.member(root, "", "pre_tokenizer");
  const std::string type = reader.type_of(node, pointer);
  const std::string expected =
      "; expected ByteLevel, Sequence[Digits(individual_digits), ByteLevel] (SmolLM) or "
      "Sequence[Split(Llama 3 or GPT-2 pattern), ByteLevel(use_regex=false)]";
  if (type == "ByteLevel") {
    if (!read_byte_level(reader, node, pointer)) {
      reader.fail(pointer + "/use_regex",
                  "use_regex = false alone does not split words" + expected);
    }
    return PreTokenizerKind::kGpt2;
  }
  if (type != "Sequence")
    reader.fail(pointer + "/type", "unsupported pre-tokenizer \"" + type + "\"" + expected);
  const json& steps = reader.member(node, pointer, "pretokenizers");
  if (!steps.is_array() || steps.size() != 2) {
    reader.fail(pointer + "/pretokenizers", "expected an array of two pre-tokenizers" + expected);
  }
  const std::string first_pointer = pointer + "/pretokenizers/0";
  const std::string second_pointer = pointer + "/pretokenizers/1";
  const std::string first_type = reader.type_of(steps[0], first_pointer);
  const std::string second_type = reader.type_of(steps[1], second_pointer);
  if (second_type != "ByteLevel") {
    reader.fail(second_pointer + "/type",
                "unsupported pre-tokenizer \"" + second_type + "\"" + expected);
  }
  const bool byte_level_splits = read_byte_level(reader, steps[1], second_pointer);
  if (first_type == "Digits") {
    if (!reader.bool_or(steps[0], first_pointer, "individual_digits", false)) {
      reader.fail(first_pointer + "/individual_digits",
                  "only individual_digits = true is supported");
    }
    if (!byte_level_splits)
      reader.fail(second_pointer + "/use_regex", "expected true after Digits");
    return PreTokenizerKind::kSmolLM;
  }
  if (first_type == "Split") {
    const json& pattern = reader.member(steps[0], first_pointer, "pattern");
    const auto regex = pattern.is_object() ? pattern.find("Regex") : pattern.end();
    if (regex == pattern.end()) {
      reader.fail(first_pointer + "/pattern",
                  "expected {\"Regex\": \"...\"}, found " + pattern.dump());
    }
    const std::string regex_text = reader.string_of(*regex, first_pointer + "/pattern/Regex");
    const std::string behavior = reader.string_of(
        reader.member(steps[0], first_pointer, "behavior"), first_pointer + "/behavior");
    if (behavior != "Isolated") {
      reader.fail(first_pointer + "/behavior",
                  "split behavior \"" + behavior + "\" is not supported; expected \"Isolated\"");
    }
    if (reader.bool_or(steps[0], first_pointer, "invert", false)) {
      reader.fail(first_pointer + "/invert", "invert = true is not supported");
    }
    if (byte_level_splits) {
      reader.fail(second_pointer + "/use_regex", "expected false after a Split pre-tokenizer");
    }
    if (regex_text == kLlama3Pattern) return PreTokenizerKind::kLlama3;
    if (regex_text == kGpt2Pattern) return PreTokenizerKind::kGpt2;
    reader.fail(first_pointer + "/pattern/Regex", "unsupported split pattern \"" + regex_text +
                                                      "\"; expected the Llama 3 or GPT-2 pattern");
  }
  reader.fail(first_pointer + "/type",
              "unsupported pre-tokenizer \"" + first_type + "\"" + expected);
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& source_name) {
  const JsonReader reader(source_name);
  json root;
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::parse_error& error) {
    throw TokenizerError(source_name + ": not valid JSON: " + error.what());
  }
  if (!root.is_object())
    reader.fail("", "expected a JSON object, found " + JsonReader::kind_of(root));

  const auto normalizer = root.find("normalizer");
  if (normalizer != root.end() && !normalizer->is_null()) {
    reader.fail("/normalizer", "normalizers are not supported (found " +
                                   (normalizer->is_object() && normalizer->contains("type")
                                        ? "\"" + normalizer->at("type").dump() + "\""
                                        : normalizer->dump()) +
                                   "); expected null");
  }
  const auto decoder = root.find("decoder");
  if (decoder != root.end() && !decoder->is_null()) {
    const std::string type = reader.type_of(*decoder, "/decoder");
    if (type != "ByteLevel") {
      reader.fail("/decoder/type", "unsupported decoder \"" + type + "\"; expected \"ByteLevel\"");
    }
  }

  TokenizerData data;
  switch (read_pre_tokenizer(reader, root)) {
    case PreTokenizerKind::kGpt2:
      data.pre = "gpt2";
      break;
    case PreTokenizerKind::kSmolLM:
      data.pre = "smollm";
      break;
    case PreTokenizerKind::kLlama3:
      data.pre = "llama-bpe";
      break;
  }

  const json& model = reader.object_at(root, "", "model");
  const auto model_type = model.find("type");
  if (model_type != model.end() && !(model_type->is_string() && *model_type == "BPE")) {
    reader.fail("/model/type", "unsupported model " + model_type->dump() + "; expected \"BPE\"");
  }
  if (reader.bool_or(model, "/model", "byte_fallback", false)) {
    reader.fail("/model/byte_fallback", "byte_fallback = true is not supported (byte-level BPE)");
  }
  data.ignore_merges = reader.bool_or(model, "/model", "ignore_merges", false);

  // Ids from the vocab and the added tokens; every id below the largest must be used.
  std::vector<std::string> tokens;
  std::vector<std::int32_t> types;
  std::vector<bool> assigned;
  const auto place = [&](std::int32_t id, const std::string& text, TokenType type,
                         const std::string& pointer) {
    const auto index = static_cast<std::size_t>(id);
    if (index >= tokens.size()) {
      tokens.resize(index + 1);
      types.resize(index + 1, static_cast<std::int32_t>(TokenType::kNormal));
      assigned.resize(index + 1, false);
    }
    if (assigned[index] && tokens[index] != text) {
      reader.fail(pointer, "id " + std::to_string(id) + " is given to both \"" + tokens[index] +
                               "\" and \"" + text + "\"");
    }
    if (text.empty()) reader.fail(pointer, "empty token text");
    tokens[index] = text;
    assigned[index] = true;
    if (type != TokenType::kNormal) types[index] = static_cast<std::int32_t>(type);
  };
  const json& vocab = reader.object_at(model, "/model", "vocab");
  for (const auto& [text, id_value] : vocab.items()) {
    const std::string pointer = "/model/vocab/" + escape_pointer_token(text);
    place(reader.id_of(id_value, pointer), text, TokenType::kNormal, pointer);
  }
  const auto added = root.find("added_tokens");
  if (added != root.end() && !added->is_null()) {
    if (!added->is_array())
      reader.fail("/added_tokens", "expected an array, found " + JsonReader::kind_of(*added));
    for (std::size_t i = 0; i < added->size(); ++i) {
      const std::string pointer = "/added_tokens/" + std::to_string(i);
      const json& entry = (*added)[i];
      if (!entry.is_object())
        reader.fail(pointer, "expected an object, found " + JsonReader::kind_of(entry));
      const std::int32_t id = reader.id_of(reader.member(entry, pointer, "id"), pointer + "/id");
      const std::string content =
          reader.string_of(reader.member(entry, pointer, "content"), pointer + "/content");
      const bool special = reader.bool_or(entry, pointer, "special", false);
      place(id, content, special ? TokenType::kControl : TokenType::kUserDefined, pointer);
    }
  }
  if (tokens.empty()) reader.fail("/model/vocab", "the vocabulary is empty");
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    if (!assigned[id]) {
      reader.fail("/model/vocab", "no token has id " + std::to_string(id) + " (ids must be 0.." +
                                      std::to_string(tokens.size() - 1) + " without gaps)");
    }
  }

  const json& merges = reader.member(model, "/model", "merges");
  if (!merges.is_array())
    reader.fail("/model/merges", "expected an array, found " + JsonReader::kind_of(merges));
  data.merges.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const std::string pointer = "/model/merges/" + std::to_string(i);
    const json& merge = merges[i];
    std::string left, right;
    if (merge.is_string()) {
      const std::string text = merge.get<std::string>();
      const std::size_t space = text.find(' ', 1);
      if (space == std::string::npos || space + 1 >= text.size() ||
          text.find(' ', space + 1) != std::string::npos) {
        reader.fail(pointer,
                    "expected \"left right\" (two tokens, one space), found \"" + text + "\"");
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      reader.fail(pointer, "expected a string \"left right\" or an array [left, right], found " +
                               merge.dump());
    }
    if (left.find(' ') != std::string::npos || right.find(' ') != std::string::npos) {
      reader.fail(pointer, "merge parts cannot contain spaces in a byte-level vocabulary");
    }
    data.merges.push_back(left + " " + right);
  }

  // Llama 3 style: the post-processor puts a special token (the BOS) first.
  const auto post = root.find("post_processor");
  if (post != root.end() && post->is_object() && post->value("type", "") == "TemplateProcessing") {
    const auto single = post->find("single");
    if (single != post->end() && single->is_array() && !single->empty() &&
        (*single)[0].contains("SpecialToken")) {
      const std::string bos_text = (*single)[0]["SpecialToken"].value("id", "");
      for (std::size_t id = 0; id < tokens.size(); ++id) {
        if (tokens[id] == bos_text) {
          data.bos_id = static_cast<std::int32_t>(id);
          data.add_bos = true;
          break;
        }
      }
    }
  }

  data.tokens = std::move(tokens);
  data.token_types = std::move(types);
  return from_data(data);
}

}  // namespace tessera

// ------------------------------------------------------------------ writing

namespace tessera {
namespace {

// Objects come out with their keys sorted (nlohmann::json's map); readers do not care.
using nlohmann::json;

json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", true},
          {"use_regex", use_regex}};
}

// The pre-tokenizer from_json recognises as `kind`.
json pre_tokenizer_json(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::kSmolLM:
      return {
          {"type", "Sequence"},
          {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
    case PreTokenizerKind::kLlama3:
      return {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Split"},
                 {"pattern", {{"Regex", std::string(kLlama3Pattern)}}},
                 {"behavior", "Isolated"},
                 {"invert", false}},
                byte_level(false)}}};
    case PreTokenizerKind::kGpt2:
    default:
      return byte_level(true);
  }
}

bool is_added_type(std::int32_t type) {
  return type == static_cast<std::int32_t>(TokenType::kControl) ||
         type == static_cast<std::int32_t>(TokenType::kUserDefined);
}

}  // namespace

std::string to_tokenizer_json(const Tokenizer& tokenizer) {
  const TokenizerData& data = tokenizer.data();
  json vocab = json::object();
  json added = json::array();
  for (std::size_t id = 0; id < data.tokens.size(); ++id) {
    const std::string& text = data.tokens[id];
    if (const auto found = vocab.find(text); found != vocab.end()) {
      throw TokenizerError("cannot write tokenizer.json: ids " +
                           std::to_string(found->get<std::int64_t>()) + " and " +
                           std::to_string(id) + " share the text \"" + text +
                           "\", and a JSON vocabulary holds each text once");
    }
    vocab[text] = id;
    const std::int32_t type = id < data.token_types.size() ? data.token_types[id] : 1;
    if (is_added_type(type)) {
      added.push_back({{"id", id},
                       {"content", text},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == static_cast<std::int32_t>(TokenType::kControl)}});
    }
  }
  json post = byte_level(true);
  post["trim_offsets"] = false;
  if (data.add_bos && data.bos_id) {
    // Hugging Face adds a BOS through a template; from_json reads add_bos back from it.
    const std::string& bos = data.tokens[static_cast<std::size_t>(*data.bos_id)];
    const json bos_piece = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
    post = {{"type", "TemplateProcessing"},
            {"single", {bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {bos_piece,
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              bos_piece,
              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{bos, {{"id", bos}, {"ids", {*data.bos_id}}, {"tokens", {bos}}}}}}};
  }
  json unk = nullptr;
  if (data.unknown_id) unk = data.tokens[static_cast<std::size_t>(*data.unknown_id)];
  const json root = {{"version", "1.0"},
                     {"truncation", nullptr},
                     {"padding", nullptr},
                     {"added_tokens", added},
                     {"normalizer", nullptr},
                     {"pre_tokenizer", pre_tokenizer_json(tokenizer.pre_tokenizer())},
                     {"post_processor", post},
                     {"decoder",
                      {{"type", "ByteLevel"},
                       {"add_prefix_space", true},
                       {"trim_offsets", true},
                       {"use_regex", true}}},
                     {"model",
                      {{"type", "BPE"},
                       {"dropout", nullptr},
                       {"unk_token", unk},
                       {"continuing_subword_prefix", nullptr},
                       {"end_of_word_suffix", nullptr},
                       {"fuse_unk", false},
                       {"byte_fallback", false},
                       {"ignore_merges", data.ignore_merges.value_or(false)},
                       {"vocab", vocab},
                       {"merges", data.merges}}}};
  // Invalid UTF-8 in a token's text (possible in GGUF data) is written as U+FFFD rather than
  // failing: such a token could not round-trip through JSON in any case.
  return root.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string to_tokenizer_config_json(const Tokenizer& tokenizer, const std::string& chat_template) {
  const TokenizerData& data = tokenizer.data();
  auto text_of = [&](const std::optional<std::int32_t>& id) -> json {
    if (!id) return nullptr;
    return data.tokens[static_cast<std::size_t>(*id)];
  };
  json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                 {"add_bos_token", data.add_bos},
                 {"bos_token", text_of(data.bos_id)},
                 {"eos_token", text_of(data.eos_id)},
                 {"unk_token", text_of(data.unknown_id)}};
  if (data.padding_id) config["pad_token"] = text_of(data.padding_id);
  if (!chat_template.empty()) config["chat_template"] = chat_template;
  return config.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace tessera
