// ChatSession on the tiny llama GGUF fixture (ChatML template, random weights): a later turn
// reuses the cache and still answers exactly as one prompt holding the whole conversation;
// /reset; a full context. And TokenTextStream, which holds back incomplete UTF-8 characters.
#include <gtest/gtest.h>

#include <tessera/chat/chat_session.hpp>
#include <tessera/chat/text_stream.hpp>
#include <tessera/formats/model_source.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::test {
namespace {

const std::filesystem::path kLlama = std::filesystem::path(TESSERA_SOURCE_DIR) / "tests" / "data" /
                                     "gguf" / "tiny_llama.gguf-fixture";

const LoadedModel& tiny_llama() {
  static const LoadedModel loaded = load_gguf_model(kLlama);
  return loaded;
}

GenerateOptions greedy(int32_t max_new) {
  GenerateOptions options;
  options.max_new_tokens = max_new;
  options.decoder.kind = "greedy";
  return options;
}

class ChatSessionTest : public ::testing::Test {
 protected:
  explicit ChatSessionTest(int32_t capacity = 200)
      : loaded(tiny_llama()),
        chat_template(ChatTemplate::from_template_text(loaded.chat_template)),
        model(loaded.manifest, plugins(), loaded.weights, test_pool(),
              ModelOptions{1, capacity, nullptr}) {}

  const LoadedModel& loaded;
  ChatTemplate chat_template;
  Model model;
};

TEST_F(ChatSessionTest, LaterTurnsReuseTheCacheAndAnswerAsOneWholePrompt) {
  ChatSession session(model, plugins(), *loaded.tokenizer, chat_template);
  std::vector<int32_t> streamed;
  const ChatReply first =
      session.send("hello", greedy(6), [&](int32_t t) { streamed.push_back(t); });
  EXPECT_EQ(streamed, first.result.tokens);
  EXPECT_EQ(first.reused_tokens, 0);
  ASSERT_EQ(session.messages().size(), 2U);  // the template adds its default system message
  EXPECT_EQ(session.messages()[1].role, "assistant");
  EXPECT_EQ(session.messages()[1].content, loaded.tokenizer->decode(first.result.tokens, true));

  const ChatReply second = session.send("world", greedy(6));
  EXPECT_GT(second.reused_tokens, first.prompt_tokens);  // prompt 1 and most of reply 1
  EXPECT_LT(second.reused_tokens, second.prompt_tokens);

  // The same conversation as one prompt, on a fresh model.
  const std::vector<ChatMessage> whole{
      {"user", "hello"}, {"assistant", session.messages()[1].content}, {"user", "world"}};
  const std::vector<int32_t> prompt = encode_chat(*loaded.tokenizer, chat_template, whole);
  EXPECT_EQ(static_cast<int32_t>(prompt.size()), second.prompt_tokens);
  Model fresh(loaded.manifest, plugins(), loaded.weights, test_pool(),
              ModelOptions{1, 200, nullptr});
  Generator generator(fresh, plugins());
  EXPECT_EQ(generator.generate(prompt, greedy(6)).tokens, second.result.tokens);
}

TEST_F(ChatSessionTest, ResetForgetsTheConversationButKeepsTheSystemPrompt) {
  ChatSession session(model, plugins(), *loaded.tokenizer, chat_template, "be brief");
  const ChatReply first = session.send("hello", greedy(4));
  EXPECT_EQ(session.messages().front().content, "be brief");
  session.send("again", greedy(4));
  EXPECT_EQ(session.messages().size(), 5U);
  session.reset();
  ASSERT_EQ(session.messages().size(), 1U);
  EXPECT_EQ(session.messages().front().role, "system");
  const ChatReply after_reset = session.send("hello", greedy(4));
  EXPECT_EQ(after_reset.result.tokens, first.result.tokens);
  EXPECT_GT(after_reset.reused_tokens, 0);  // the system prompt's tokens were still cached
}

class SmallContextChatTest : public ChatSessionTest {
 protected:
  SmallContextChatTest() : ChatSessionTest(40) {}
};

TEST_F(SmallContextChatTest, AConversationTooLongForTheContextIsRefusedUnchanged) {
  ChatSession session(model, plugins(), *loaded.tokenizer, chat_template, "x");
  try {
    session.send(std::string(60, 'z'), greedy(4));
    FAIL() << "expected ContextFullError";
  } catch (const ContextFullError& e) {
    EXPECT_NE(std::string(e.what()).find("and the context holds 40"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(session.messages().size(), 1U);
  // A reply that runs into the end of the context is cut and says so.
  const ChatReply reply = session.send("hi", greedy(100));
  EXPECT_LT(reply.result.tokens.size(), 100U);
  EXPECT_EQ(reply.context_full, !reply.result.stopped_on_eos);
  EXPECT_LE(reply.prompt_tokens + static_cast<int32_t>(reply.result.tokens.size()) - 1, 40);
}

// ---------------------------------------------------------------- TokenTextStream

TEST(TokenTextStream, CompleteUtf8Prefix) {
  EXPECT_EQ(complete_utf8_prefix("abc"), 3U);
  EXPECT_EQ(complete_utf8_prefix(""), 0U);
  EXPECT_EQ(complete_utf8_prefix("a\xC3"), 1U);              // é without its second byte
  EXPECT_EQ(complete_utf8_prefix("a\xC3\xA9"), 3U);          // é whole
  EXPECT_EQ(complete_utf8_prefix("\xE2\x82"), 0U);           // € with 2 of 3 bytes
  EXPECT_EQ(complete_utf8_prefix("x\xF0\x9F\x98"), 1U);      // an emoji with 3 of 4 bytes
  EXPECT_EQ(complete_utf8_prefix("x\xF0\x9F\x98\x80"), 5U);  // and whole
  EXPECT_EQ(complete_utf8_prefix("x\xA9"), 2U);  // a stray continuation byte never completes
  EXPECT_EQ(complete_utf8_prefix("x\xFF"), 2U);  // nor does a byte that starts nothing
}

TEST(TokenTextStream, HoldsBackASplitCharacterUntilItCompletes) {
  const Tokenizer& tokenizer = *tiny_llama().tokenizer;
  // Byte-level tokens: 0xC3 is written "Ã" in the vocabulary, 0xA9 is "©".
  const int32_t lead = *tokenizer.token_id("\xC3\x83");
  const int32_t tail = *tokenizer.token_id("\xC2\xA9");
  const int32_t h = *tokenizer.token_id("h");
  TokenTextStream stream(tokenizer);
  EXPECT_EQ(stream.push(h), "h");
  EXPECT_EQ(stream.push(lead), "");
  EXPECT_EQ(stream.push(tail), "\xC3\xA9");
  EXPECT_EQ(stream.push(2), "");  // <|im_end|> is special: no text
  EXPECT_EQ(stream.push(lead), "");
  EXPECT_EQ(stream.flush(), "\xC3");  // what never completed comes out at the end
  EXPECT_EQ(stream.flush(), "");

  TokenTextStream with_special(tokenizer, /*skip_special=*/false);
  EXPECT_EQ(with_special.push(2), "<|im_end|>");
}

}  // namespace
}  // namespace tessera::test
