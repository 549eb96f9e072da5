// Chat prompt formatting for the template families Tessera knows, picked by recognising the
// markers in the model's Jinja template text (tokenizer.chat_template). This is not a Jinja
// engine: each family's layout is written out by hand and checked against transformers'
// apply_chat_template output in tests/golden/tokenizer/chat_templates.json.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tessera/engine/error.hpp"

namespace tessera {

// A template that is not recognised or not supported; what() names it.
struct ChatTemplateError : Error {
  using Error::Error;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

enum class ChatTemplateKind {
  // <|im_start|>role\ncontent<|im_end|>\n ... generation prompt <|im_start|>assistant\n
  kChatML,
  // <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> ...
  // (content trimmed), generation prompt <|start_header_id|>assistant<|end_header_id|>\n\n
  kLlama3,
};

class ChatTemplate {
 public:
  // Recognises the family from the template text. A ChatML template that writes a constant
  // system message (SmolLM2: "You are a helpful AI assistant named SmolLM, ...") keeps it as
  // the default system prompt. Throws ChatTemplateError for anything else.
  static ChatTemplate from_template_text(std::string_view template_text);
  static ChatTemplate chatml(std::optional<std::string> default_system_prompt = std::nullopt);
  static ChatTemplate llama3(std::string bos_token = "<|begin_of_text|>");

  ChatTemplateKind kind() const { return kind_; }
  // ChatML: inserted as a system message when the first message is not a system message.
  const std::optional<std::string>& default_system_prompt() const { return default_system_; }

  // The prompt text. It already holds every special token (Llama 3's BOS included): encode it
  // with special-token parsing on and without adding another BOS.
  std::string apply(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

 private:
  ChatTemplate(ChatTemplateKind kind, std::optional<std::string> default_system,
               std::string bos_token)
      : kind_(kind), default_system_(std::move(default_system)), bos_token_(std::move(bos_token)) {}

  ChatTemplateKind kind_;
  std::optional<std::string> default_system_;
  std::string bos_token_;
};

}  // namespace tessera
