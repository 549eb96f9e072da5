// tessera: the command-line front end. Exit code 0 on success; otherwise
// non-zero with a one-line error on stderr.
#include <tessera/engine/log.hpp>

#include <csignal>
#include <iostream>

#include "commands.hpp"
#include "numeric_flags.hpp"

int main(int argc, char** argv) {
  // Over a file-size limit a write then fails (EFBIG) instead of the signal killing the
  // process: the error is reported and staged output removed, as for a full disk.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"Tessera: assemble language models from plugins and run them"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log what the engine does");

  std::vector<std::pair<CLI::App*, tessera::cli::Runner>> commands;
  auto add = [&](tessera::cli::Runner (*fn)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    tessera::cli::Runner r = fn(app);
    commands.emplace_back(app.get_subcommands({}).at(before), std::move(r));
  };
  add(tessera::cli::add_plugins_command);
  add(tessera::cli::add_validate_command);
  add(tessera::cli::add_generate_command);
  add(tessera::cli::add_chat_command);
  add(tessera::cli::add_plugin_check_command);
  add(tessera::cli::add_init_random_command);
  add(tessera::cli::add_convert_command);
  add(tessera::cli::add_info_command);
  add(tessera::cli::add_bench_command);
  add(tessera::cli::add_search_command);
  add(tessera::cli::add_train_command);
  add(tessera::cli::add_puzzle_command);
  add(tessera::cli::add_medusa_command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string unknown = tessera::cli::unknown_command_message(app, argc, argv);
    std::cerr << "tessera: error: " << (unknown.empty() ? e.what() : unknown) << "\n";
    return 2;
  }
  tessera::set_log_level(verbose ? tessera::LogLevel::info : tessera::LogLevel::warning);

  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const std::exception& e) {
    std::string message = e.what();
    for (char& c : message)
      if (c == '\n') c = ' ';
    std::cerr << "tessera: error: " << message << "\n";
    return 1;
  }
  return 1;
}
