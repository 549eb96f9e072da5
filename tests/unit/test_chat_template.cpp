// Chat templates: output identical to transformers' apply_chat_template (golden file), the
// SmolLM2 default system prompt, template recognition and its errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tessera/chat/chat_template.hpp"
#include "tessera/text/tokenizer.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kSourceDir = TESSERA_SOURCE_DIR;

json golden() {
  std::ifstream file(kSourceDir / "tests" / "golden" / "tokenizer" / "chat_templates.json");
  EXPECT_TRUE(file);
  return json::parse(file);
}

std::vector<ChatMessage> messages_of(const json& list) {
  std::vector<ChatMessage> messages;
  for (const json& message : list) {
    messages.push_back(
        {message.at("role").get<std::string>(), message.at("content").get<std::string>()});
  }
  return messages;
}

std::string error_of(std::string_view template_text) {
  try {
    ChatTemplate::from_template_text(template_text);
  } catch (const ChatTemplateError& error) {
    return error.what();
  }
  return "(no error)";
}

void expect_matches_golden(const std::string& name, ChatTemplateKind kind) {
  const json all = golden();
  ASSERT_TRUE(all.contains(name)) << "regenerate with tests/golden/tokenizer/make_golden.py";
  const json& entry = all.at(name);
  const ChatTemplate chat =
      ChatTemplate::from_template_text(entry.at("template").get<std::string>());
  EXPECT_EQ(chat.kind(), kind);
  ASSERT_GE(entry.at("cases").size(), 10U);
  for (const json& test_case : entry.at("cases")) {
    const auto messages = messages_of(test_case.at("messages"));
    const bool generation_prompt = test_case.at("add_generation_prompt");
    EXPECT_EQ(chat.apply(messages, generation_prompt), test_case.at("expected").get<std::string>())
        << name << " " << test_case.at("messages").dump() << " gen=" << generation_prompt;
  }
}

TEST(ChatTemplateGolden, SmolLM2MatchesTransformers) {
  expect_matches_golden("smollm2", ChatTemplateKind::kChatML);
}

TEST(ChatTemplateGolden, Llama3MatchesTransformers) {
  expect_matches_golden("llama3", ChatTemplateKind::kLlama3);
}

TEST(ChatTemplate, SmolLM2DefaultSystemPromptComesFromTheTemplate) {
  const ChatTemplate chat =
      ChatTemplate::from_template_text(golden().at("smollm2").at("template").get<std::string>());
  ASSERT_TRUE(chat.default_system_prompt());
  EXPECT_EQ(*chat.default_system_prompt(),
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const std::vector<ChatMessage> with_system = {{"system", "S"}, {"user", "U"}};
  EXPECT_EQ(
      chat.apply(with_system, true),
      "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(chat.apply({}, false), "");
}

TEST(ChatTemplate, RecognisesEscapedNewlinesAndPlainChatML) {
  const ChatTemplate escaped = ChatTemplate::from_template_text(
      "{{ '<|im_start|>system\\nBe brief, \\'really\\'.<|im_end|>\\n' }}{{'<|im_start|>' + "
      "message['role'] + '\\n' + message['content'] + '<|im_end|>'}}");
  ASSERT_TRUE(escaped.default_system_prompt());
  EXPECT_EQ(*escaped.default_system_prompt(), "Be brief, 'really'.");
  const ChatTemplate plain = ChatTemplate::from_template_text(
      "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + "
      "'<|im_end|>\n'}}{% endfor %}");
  EXPECT_FALSE(plain.default_system_prompt());
  const std::vector<ChatMessage> messages = {{"user", "hi"}};
  EXPECT_EQ(plain.apply(messages, false), "<|im_start|>user\nhi<|im_end|>\n");
}

TEST(ChatTemplate, Llama3TrimsContentAndStartsWithBos) {
  const std::vector<ChatMessage> messages = {{"user", " \t hi \n"}, {"assistant", "ok"}};
  EXPECT_EQ(ChatTemplate::llama3().apply(messages, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nok<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, PromptTokenizesWithSpecialTokens) {
  const Tokenizer tokenizer =
      Tokenizer::from_json_file(kSourceDir / "tests" / "data" / "tokenizer" / "toy_smollm.json");
  const std::vector<ChatMessage> messages = {{"user", "hello"}};
  const std::string prompt = ChatTemplate::chatml().apply(messages, true);
  const auto ids = tokenizer.encode(prompt);
  const std::int32_t start = *tokenizer.token_id("<|im_start|>");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), start), 2);
  EXPECT_EQ(tokenizer.decode(ids), prompt);
}

TEST(ChatTemplate, UnknownAndUnsupportedTemplatesAreNamed) {
  const std::string unknown =
      error_of("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}");
  EXPECT_NE(unknown.find("unrecognised template \"{% for m in messages %}[INST]"),
            std::string::npos)
      << unknown;
  EXPECT_NE(unknown.find("expected ChatML"), std::string::npos) << unknown;
  EXPECT_NE(error_of("").find("declares no chat template"), std::string::npos);
  const std::string llama31 = error_of(
      "{{- bos_token }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}<|start_header_id|>"
      "<|end_header_id|><|eot_id|>");
  EXPECT_NE(llama31.find("Llama 3.1+"), std::string::npos) << llama31;
}

}  // namespace
}  // namespace tessera
