#include "tessera/chat/chat_template.hpp"

#include <vector>

#include "tessera/text/unicode.hpp"

namespace tessera {

namespace {

constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// Jinja's trim is Python's str.strip(): Unicode whitespace plus the separators U+001C..U+001F.
bool is_python_space(char32_t cp) {
  return unicode::is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

std::string python_strip(std::string_view text) {
  struct Char {
    std::size_t offset;
    std::size_t length;
    bool space;
  };
  std::vector<Char> chars;
  for (std::size_t offset = 0; offset < text.size();) {
    const unicode::DecodedCodePoint decoded = unicode::decode_utf8(text, offset);
    chars.push_back({offset, decoded.length, decoded.valid && is_python_space(decoded.code_point)});
    offset += decoded.length;
  }
  std::size_t first = 0;
  std::size_t last = chars.size();
  while (first < last && chars[first].space) ++first;
  while (last > first && chars[last - 1].space) --last;
  if (first == last) return {};
  const std::size_t begin = chars[first].offset;
  return std::string(text.substr(begin, chars[last - 1].offset + chars[last - 1].length - begin));
}

// A short, one-line excerpt of a template for error messages.
std::string excerpt(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, 80)) {
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  if (text.size() > 80) out += "...";
  return out;
}

// Finds a constant ChatML system message inside a Jinja string literal, such as
// '<|im_start|>system\nYou are ...<|im_end|>\n', and returns its content.
std::optional<std::string> find_default_system(std::string_view text) {
  for (const char quote : {'\'', '"'}) {
    const std::string opening = std::string(1, quote) + std::string(kImStart) + "system";
    std::size_t at = text.find(opening);
    if (at == std::string_view::npos) continue;
    at += opening.size();
    // The newline after the role: written as a real newline or as the escape \n.
    if (text.substr(at).starts_with("\n")) {
      at += 1;
    } else if (text.substr(at).starts_with("\\n")) {
      at += 2;
    } else {
      continue;
    }
    std::string content;
    for (std::size_t i = at; i < text.size(); ++i) {
      if (text.substr(i).starts_with(kImEnd)) return content;
      const char c = text[i];
      if (c == quote) break;  // the literal ends before <|im_end|>: not a constant message
      if (c == '\\' && i + 1 < text.size()) {
        const char escaped = text[++i];
        content += escaped == 'n' ? '\n' : escaped == 't' ? '\t' : escaped;
      } else {
        content += c;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

ChatTemplate ChatTemplate::chatml(std::optional<std::string> default_system_prompt) {
  return ChatTemplate(ChatTemplateKind::kChatML, std::move(default_system_prompt), "");
}

ChatTemplate ChatTemplate::llama3(std::string bos_token) {
  return ChatTemplate(ChatTemplateKind::kLlama3, std::nullopt, std::move(bos_token));
}

ChatTemplate ChatTemplate::from_template_text(std::string_view template_text) {
  if (template_text.empty()) {
    throw ChatTemplateError(
        "chat template: the model declares no chat template "
        "(tokenizer.chat_template is empty); expected ChatML or Llama 3");
  }
  if (contains(template_text, kImStart) && contains(template_text, kImEnd)) {
    if (contains(template_text, "tools")) {
      throw ChatTemplateError(
          "chat template: ChatML template with tool calling is not supported: \"" +
          excerpt(template_text) + "\"");
    }
    return chatml(find_default_system(template_text));
  }
  if (contains(template_text, "<|start_header_id|>") &&
      contains(template_text, "<|end_header_id|>") && contains(template_text, "<|eot_id|>")) {
    if (contains(template_text, "Cutting Knowledge Date") || contains(template_text, "tools")) {
      throw ChatTemplateError(
          "chat template: the Llama 3.1+ template (date header, tool calling) is not supported; "
          "only the Llama 3 template is: \"" +
          excerpt(template_text) + "\"");
    }
    return llama3();
  }
  throw ChatTemplateError("chat template: unrecognised template \"" + excerpt(template_text) +
                          "\"; expected ChatML (<|im_start|>, <|im_end|>) or Llama 3 "
                          "(<|start_header_id|>, <|end_header_id|>, <|eot_id|>) markers");
}

std::string ChatTemplate::apply(std::span<const ChatMessage> messages,
                                bool add_generation_prompt) const {
  std::string out;
  switch (kind_) {
    case ChatTemplateKind::kChatML: {
      const auto add = [&](std::string_view role, std::string_view content) {
        out.append(kImStart).append(role).append("\n").append(content).append(kImEnd).append("\n");
      };
      if (default_system_ && !messages.empty() && messages.front().role != "system") {
        add("system", *default_system_);
      }
      for (const ChatMessage& message : messages) add(message.role, message.content);
      if (add_generation_prompt) out.append(kImStart).append("assistant\n");
      break;
    }
    case ChatTemplateKind::kLlama3: {
      for (std::size_t i = 0; i < messages.size(); ++i) {
        if (i == 0) out += bos_token_;
        out.append("<|start_header_id|>").append(messages[i].role).append("<|end_header_id|>\n\n");
        out.append(python_strip(messages[i].content)).append("<|eot_id|>");
      }
      if (add_generation_prompt) out.append("<|start_header_id|>assistant<|end_header_id|>\n\n");
      break;
    }
  }
  return out;
}

}  // namespace tessera
