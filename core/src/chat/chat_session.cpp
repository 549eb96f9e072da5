#include <tessera/chat/chat_session.hpp>

#include <algorithm>
#include <utility>

namespace tessera {

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                 const std::vector<ChatMessage>& messages) {
  const std::string text = chat_template.apply(messages, /*add_generation_prompt=*/true);
  EncodeOptions options;
  options.parse_special = true;
  // Templates that write the BOS token themselves (Llama 3) must not get a second one.
  const std::optional<int32_t> bos = tokenizer.bos_id();
  options.add_bos =
      tokenizer.add_bos_by_default() && bos && !text.starts_with(tokenizer.token_text(*bos));
  return tokenizer.encode(text, options);
}

ChatSession::ChatSession(Model& model, const PluginRegistry& registry, const Tokenizer& tokenizer,
                         ChatTemplate chat_template, std::optional<std::string> system_prompt)
    : model_(model),
      generator_(model, registry),
      tokenizer_(tokenizer),
      template_(std::move(chat_template)) {
  if (system_prompt) initial_.push_back({"system", *system_prompt});
  messages_ = initial_;
}

void ChatSession::reset() {
  messages_ = initial_;
}

ChatReply ChatSession::send(const std::string& user_message, const GenerateOptions& options,
                            const std::function<void(int32_t)>& on_token) {
  std::vector<ChatMessage> next = messages_;
  next.push_back({"user", user_message});
  const std::vector<int32_t> prompt = encode_chat(tokenizer_, template_, next);
  const int32_t capacity = model_.capacity();
  if (prompt.size() >= static_cast<size_t>(capacity)) {
    throw ContextFullError("the conversation is " + std::to_string(prompt.size()) +
                           " tokens with this message, and the context holds " +
                           std::to_string(capacity) + "; start a new conversation");
  }

  // What the cache already holds of this prompt; at least one token is fed for fresh logits.
  if (model_.kv_cache().length(0) != static_cast<int32_t>(cached_.size())) cached_.clear();
  const auto mismatch = std::mismatch(cached_.begin(), cached_.end(), prompt.begin(), prompt.end());
  const auto keep = std::min<int32_t>(static_cast<int32_t>(mismatch.first - cached_.begin()),
                                      static_cast<int32_t>(prompt.size()) - 1);
  const std::vector<int32_t> fresh(prompt.begin() + keep, prompt.end());

  ChatReply reply;
  reply.prompt_tokens = static_cast<int32_t>(prompt.size());
  reply.reused_tokens = keep;
  reply.result = generator_.generate_after(keep, fresh, options, on_token);
  const std::vector<int32_t>& tokens = reply.result.tokens;

  // The decoder fed every emitted token but the last.
  cached_ = prompt;
  if (!tokens.empty()) cached_.insert(cached_.end(), tokens.begin(), tokens.end() - 1);
  if (model_.kv_cache().length(0) != static_cast<int32_t>(cached_.size())) cached_.clear();

  reply.text = tokenizer_.decode(tokens, /*skip_special=*/true);
  reply.context_full =
      !reply.result.stopped_on_eos && static_cast<int32_t>(tokens.size()) < options.max_new_tokens;
  messages_ = std::move(next);
  messages_.push_back({"assistant", reply.text});
  return reply;
}

}  // namespace tessera
