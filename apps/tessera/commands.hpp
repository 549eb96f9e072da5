// The tessera command's sub-commands. Each registers itself on the CLI11 app and
// returns the function that runs it; errors are thrown and reported by main.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace tessera::cli {

using Runner = std::function<int()>;

Runner add_plugins_command(CLI::App& app);
Runner add_validate_command(CLI::App& app);
Runner add_generate_command(CLI::App& app);
Runner add_chat_command(CLI::App& app);
Runner add_plugin_check_command(CLI::App& app);
Runner add_init_random_command(CLI::App& app);
Runner add_convert_command(CLI::App& app);
Runner add_info_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);
Runner add_search_command(CLI::App& app);
Runner add_train_command(CLI::App& app);
Runner add_puzzle_command(CLI::App& app);
Runner add_medusa_command(CLI::App& app);

}  // namespace tessera::cli
