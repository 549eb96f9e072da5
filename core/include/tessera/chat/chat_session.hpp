// A multi-turn conversation with one model, keeping its KV cache between turns.
//
// Each turn formats the whole conversation with the chat template and encodes it, then keeps
// the longest prefix of those tokens that the cache already holds and prefills only the rest.
// The model therefore always sees exactly what a single prompt holding the whole conversation
// would give it; the cache only saves the work. After /reset the system prompt's tokens are
// still a shared prefix, so even they are not computed again.
#pragma once

#include <tessera/chat/chat_template.hpp>
#include <tessera/engine/generator.hpp>
#include <tessera/text/tokenizer.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

// The prompt ids of a conversation: the template's text with its special tokens, plus a BOS
// token in front when the tokenizer wants one and the template did not write it.
std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                 const std::vector<ChatMessage>& messages);

// The conversation with the new message does not fit the model's context; nothing changed.
struct ContextFullError : Error {
  using Error::Error;
};

struct ChatReply {
  std::string text;           // the reply, without special tokens
  GenerateResult result;      // its tokens (the end-of-turn token included) and timings
  int32_t prompt_tokens = 0;  // the whole conversation as the model saw it this turn
  int32_t reused_tokens = 0;  // of those, already in the KV cache
  bool context_full = false;  // the reply was cut because the context ran out
};

class ChatSession {
 public:
  // system_prompt: the conversation's first message (nullopt: the template's default, if any).
  ChatSession(Model& model, const PluginRegistry& registry, const Tokenizer& tokenizer,
              ChatTemplate chat_template, std::optional<std::string> system_prompt = std::nullopt);

  // Adds the user's message, generates the reply (each token goes to on_token as it comes) and
  // adds the reply to the conversation. Throws ContextFullError, leaving the conversation as
  // it was, when the formatted conversation does not leave room for at least one new token.
  ChatReply send(const std::string& user_message, const GenerateOptions& options,
                 const std::function<void(int32_t)>& on_token = {});

  // Starts a new conversation (the system prompt stays).
  void reset();

  const std::vector<ChatMessage>& messages() const { return messages_; }

 private:
  Model& model_;
  Generator generator_;
  const Tokenizer& tokenizer_;
  ChatTemplate template_;
  std::vector<ChatMessage> initial_;
  std::vector<ChatMessage> messages_;
  std::vector<int32_t> cached_;  // the ids in slot 0 of the KV cache, in order
};

}  // namespace tessera
