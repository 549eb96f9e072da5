// tessera generate: run a model on a prompt and stream the new tokens (as text when the prompt
// is text, as ids when it is --tokens).
#include <tessera/chat/chat_session.hpp>
#include <tessera/chat/chat_template.hpp>
#include <tessera/chat/text_stream.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/generator.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/thread_pool.hpp>

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "numeric_flags.hpp"
#include "run_options.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::optional<std::string> prompt;
  std::string tokens;
  std::optional<std::string> system;
  bool raw = false;
  int32_t max_tokens = 32;
  RunOptions run;
};

// The prompt text as token ids: inside the chat template (one user message, the generation
// prompt) unless --raw or the model has none.
std::vector<int32_t> encode_prompt(const GenerateArgs& args, const LoadedModel& model) {
  if (!model.tokenizer) {
    throw Error(no_tokenizer_message(args.model, model, "pass token ids with --tokens"));
  }
  const std::string& text = *args.prompt;
  if (text.empty()) throw Error("--prompt is empty; expected some text to continue");
  const Tokenizer& tokenizer = *model.tokenizer;
  if (args.raw || model.chat_template.empty()) {
    if (args.system) {
      throw Error(args.raw ? "--system needs the chat template, which --raw leaves out"
                           : "--system needs a chat template, and model '" + args.model +
                                 "' has none (tokenizer.chat_template)");
    }
    EncodeOptions options;
    options.add_bos = tokenizer.add_bos_by_default();
    return tokenizer.encode(text, options);
  }
  const ChatTemplate chat_template =
      known_chat_template(args.model, model, "pass --raw to use the prompt without it");
  std::vector<ChatMessage> messages;
  if (args.system) messages.push_back({"system", *args.system});
  messages.push_back({"user", text});
  return encode_chat(tokenizer, chat_template, messages);
}

int run_generate(const GenerateArgs& args) {
  LoadedModel loaded = open_model_for_run(args.model, args.run);
  const Manifest& manifest = loaded.manifest;

  std::vector<int32_t> prompt;
  if (!args.tokens.empty()) {
    prompt = parse_token_list(args.tokens);
  } else if (args.prompt) {
    prompt = encode_prompt(args, loaded);
  } else {
    throw Error("give a prompt: --prompt TEXT or --tokens 1,2,3");
  }
  const int32_t context = manifest.model.max_seq_len;
  if (prompt.size() >= static_cast<size_t>(context)) {
    throw Error("the prompt is " + std::to_string(prompt.size()) + " tokens; model '" + args.model +
                "' has a context of " + std::to_string(context) +
                " tokens (max_seq_len), which leaves no room to generate");
  }
  GenerateOptions options = generate_options(manifest, args.run, args.max_tokens);

  PluginRegistry registry;
  load_plugins(registry, args.run.plugin_paths, &manifest);
  ThreadPool pool(manifest.runtime.threads);
  const int32_t capacity =
      std::min<int32_t>(context, static_cast<int32_t>(prompt.size()) + args.max_tokens);
  Model model(manifest, registry, std::move(loaded.weights), pool,
              ModelOptions{1, capacity, nullptr});
  const std::unique_ptr<DecoderWeights> decoder_weights =
      attach_decoder_weights(args.run, model, options);
  Generator generator(model, registry);

  GenerateResult result;
  if (args.prompt && args.tokens.empty()) {
    TokenTextStream stream(*loaded.tokenizer);
    result = generator.generate(
        prompt, options, [&](int32_t token) { std::cout << stream.push(token) << std::flush; });
    std::cout << stream.flush() << std::endl;
  } else {
    result = generator.generate(prompt, options,
                                [&](int32_t token) { std::cout << token << ' ' << std::flush; });
    std::cout << std::endl;
  }
  if (!args.run.quiet) {
    const auto n_prompt = static_cast<double>(prompt.size());
    const auto n_decoded = static_cast<double>(result.tokens.size()) - 1;
    const double prefill_tps = result.prefill_seconds > 0 ? n_prompt / result.prefill_seconds : 0;
    const double decode_tps =
        result.decode_seconds > 0 && n_decoded > 0 ? n_decoded / result.decode_seconds : 0;
    std::cerr << "prompt " << prompt.size() << " tokens, " << prefill_tps << " tok/s; generated "
              << result.tokens.size() << " tokens, " << decode_tps << " tok/s"
              << (result.stopped_on_eos ? " (end token)" : "");
    if (result.decode_steps > 0 && result.tokens.size() > static_cast<size_t>(result.decode_steps))
      std::cerr << "; " << static_cast<double>(result.tokens.size()) / result.decode_steps
                << " tokens per decoder step";
    std::cerr << "\n";
  }
  return 0;
}

}  // namespace

Runner add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text or tokens from a model");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("model", a->model,
                  "Manifest (.toml), model folder, GGUF file (.gguf) or Hugging Face folder")
      ->required();
  auto* prompt = cmd->add_option("-p,--prompt", a->prompt,
                                 "Prompt text (needs a tokenizer); put in the model's chat "
                                 "template as one user message unless --raw");
  // The last --prompt / -n wins, so wrappers such as scripts/run-default.sh can give defaults.
  prompt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("-t,--tokens", a->tokens, "Prompt as comma-separated token ids")
      ->excludes(prompt);
  auto* raw = cmd->add_flag("--raw", a->raw, "Use the prompt text as it is, without the template")
                  ->needs(prompt);
  cmd->add_option("--system", a->system, "System prompt for the chat template")
      ->excludes(raw)
      ->needs(prompt);
  cmd->add_option("-n,--max-tokens", a->max_tokens, "Most tokens to generate")
      ->check(integer_in(1, 1 << 20))
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_run_options(*cmd, a->run);
  return [a] { return run_generate(*a); };
}

}  // namespace tessera::cli
