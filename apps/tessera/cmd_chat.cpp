// tessera chat: a conversation on stdin/stdout. Each line is one user message; the reply
// streams out as it is generated. The KV cache is kept between turns, so each turn prefills
// only what is new. /reset starts a new conversation, /exit (or the end of input) quits.
#include <unistd.h>
#include <tessera/chat/chat_session.hpp>
#include <tessera/chat/text_stream.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/thread_pool.hpp>

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "commands.hpp"
#include "numeric_flags.hpp"
#include "run_options.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

// Without --context, long enough for a real conversation without the KV cache of a
// 128k-context model.
constexpr int32_t kDefaultContext = 4096;

struct ChatArgs {
  std::string model;
  std::optional<std::string> system;
  int32_t max_tokens = 512;
  int32_t context = 0;
  RunOptions run;
};

std::string trimmed(const std::string& line) {
  const size_t first = line.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  return line.substr(first, line.find_last_not_of(" \t\r\n") - first + 1);
}

int run_chat(const ChatArgs& args) {
  LoadedModel loaded = open_model_for_run(args.model, args.run);
  if (!loaded.tokenizer) {
    throw Error(no_tokenizer_message(args.model, loaded, "chat needs one"));
  }
  if (loaded.chat_template.empty()) {
    throw Error("model '" + args.model +
                "' has no chat template (tokenizer.chat_template); chat needs one, tessera "
                "generate --raw does not");
  }
  ChatTemplate chat_template = known_chat_template(
      args.model, loaded,
      "chat needs a template it knows, tessera generate --raw runs without one");
  const Manifest& manifest = loaded.manifest;
  const GenerateOptions options = generate_options(manifest, args.run, args.max_tokens);

  PluginRegistry registry;
  load_plugins(registry, args.run.plugin_paths, &manifest);
  ThreadPool pool(manifest.runtime.threads);
  const int32_t context =
      std::min(manifest.model.max_seq_len, args.context > 0 ? args.context : kDefaultContext);
  Model model(manifest, registry, std::move(loaded.weights), pool,
              ModelOptions{1, context, nullptr});
  ChatSession session(model, registry, *loaded.tokenizer, std::move(chat_template), args.system);

  const bool interactive = isatty(STDIN_FILENO) != 0;
  if (interactive) {
    std::cerr << "chatting with "
              << (manifest.model.name.empty() ? args.model : manifest.model.name) << " (context "
              << context << " tokens); /reset starts over, /exit quits\n";
  }
  std::string line;
  while (true) {
    if (interactive) std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    const std::string message = trimmed(line);
    if (message.empty()) continue;
    if (message == "/exit" || message == "/quit") break;
    if (message == "/reset") {
      session.reset();
      std::cerr << "(new conversation)\n";
      continue;
    }
    if (message.front() == '/') {
      std::cerr << "tessera chat: unknown command '" << message << "'; commands: /reset, /exit\n";
      continue;
    }
    TokenTextStream stream(*loaded.tokenizer);
    ChatReply reply;
    try {
      reply = session.send(message, options,
                           [&](int32_t token) { std::cout << stream.push(token) << std::flush; });
    } catch (const ContextFullError& e) {
      std::cerr << "tessera chat: " << e.what() << " with /reset\n";
      continue;
    }
    std::cout << stream.flush() << std::endl;
    if (reply.context_full) {
      std::cerr << "tessera chat: the context of " << context
                << " tokens is full; the reply was cut. Start a new conversation with /reset\n";
    }
    if (!args.run.quiet) {
      const auto n_decoded = static_cast<double>(reply.result.tokens.size()) - 1;
      const double decode_tps = reply.result.decode_seconds > 0 && n_decoded > 0
                                    ? n_decoded / reply.result.decode_seconds
                                    : 0;
      std::cerr << "[conversation " << reply.prompt_tokens << " tokens, " << reply.reused_tokens
                << " reused from the cache; reply " << reply.result.tokens.size() << " tokens, "
                << decode_tps << " tok/s]\n";
    }
  }
  return 0;
}

}  // namespace

Runner add_chat_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "chat", "Talk with a model: one message per line on stdin, /reset starts over, /exit quits");
  auto a = std::make_shared<ChatArgs>();
  cmd->add_option("model", a->model,
                  "GGUF file (.gguf), Hugging Face folder or manifest with a tokenizer")
      ->required();
  cmd->add_option("--system", a->system, "System prompt (default: the template's, if any)");
  cmd->add_option("-n,--max-tokens", a->max_tokens, "Most tokens per reply")
      ->check(integer_in(1, 1 << 20));
  cmd->add_option("--context", a->context,
                  "Tokens the conversation may hold (default: the model's, at most 4096)")
      ->check(integer_in(2, 1 << 24));
  add_run_options(*cmd, a->run);
  return [a] { return run_chat(*a); };
}

}  // namespace tessera::cli
