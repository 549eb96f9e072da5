// tessera search: solves a problem document (docs/search.md) with a search plugin and
// prints the solution document.
#include <tessera/engine/error.hpp>
#include <tessera/engine/input_file.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/search.hpp>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

struct SearchArgs {
  std::string problem;
  std::string provider = "exact";
  std::string plugin;
  std::string output;
  std::vector<std::string> params;  // KEY=VALUE
  std::vector<std::string> plugin_paths;
};

std::string read_problem(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error("problem '" + path + "' does not exist");
  if (fs::is_directory(path, ec))
    throw Error("problem '" + path + "' is a folder, expected a JSON problem document");
  if (const std::string what = not_a_regular_file(path); !what.empty())
    throw Error("problem '" + path + "' is " + what + ", not a regular file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) throw Error("cannot read problem '" + path + "'");
  return text.str();
}

// Checks that the document is a JSON object, naming the line and column of a syntax error
// (the provider parses it again; this is for a message that points into the file).
void check_json(const std::string& path, const std::string& text) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte counts from 1 and points just past the last character read.
    const size_t end = std::min(text.size(), e.byte > 0 ? static_cast<size_t>(e.byte - 1) : 0);
    int line = 1, column = 1;
    for (size_t i = 0; i < end; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    throw Error(path + ":" + std::to_string(line) + ":" + std::to_string(column) +
                ": invalid JSON: " + e.what());
  }
  if (!doc.is_object())
    throw Error(path + ": the problem document is a JSON " + std::string(doc.type_name()) +
                ", expected an object whose \"problem\" field names its type");
}

// "max_nodes=1000" -> an integer, "x=0.5" a number, "x=true" a boolean, else a string.
ParamList parse_params(const std::vector<std::string>& items) {
  ParamList params;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error("--param '" + item + "': expected KEY=VALUE");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    int64_t i = 0;
    const auto [end_i, ec_i] = std::from_chars(value.data(), value.data() + value.size(), i);
    double d = 0;
    const auto [end_d, ec_d] = std::from_chars(value.data(), value.data() + value.size(), d);
    if (!value.empty() && ec_i == std::errc() && end_i == value.data() + value.size())
      params.set(key, i);
    else if (!value.empty() && ec_d == std::errc() && end_d == value.data() + value.size())
      params.set(key, d);
    else if (value == "true" || value == "false")
      params.set(key, value == "true");
    else
      params.set(key, value);
  }
  return params;
}

int run_search(const SearchArgs& args) {
  const std::string text = read_problem(args.problem);
  check_json(args.problem, text);
  const ParamList params = parse_params(args.params);
  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths);
  const std::unique_ptr<Search> search =
      make_search(registry, args.provider, args.plugin, params, nullptr);
  std::string solution;
  try {
    solution = search->solve(text);
  } catch (const Error& e) {
    throw Error(args.problem + ": " + e.what());
  }
  // Indented for people; the provider's own text when it is not JSON (it should be).
  std::string shown = solution;
  try {
    const nlohmann::json doc = nlohmann::json::parse(solution);
    shown = doc.dump(2);
    if (doc.is_object() && doc.value("status", "") == "infeasible")
      std::cerr << "infeasible: " << doc.value("reason", std::string("(no reason given)")) << "\n";
  } catch (const nlohmann::json::exception&) {
    std::cerr << "warning: the solution of " << search->label() << " is not valid JSON\n";
  }
  if (args.output.empty()) {
    std::cout << shown << "\n";
    return 0;
  }
  std::ofstream out(args.output, std::ios::binary | std::ios::trunc);
  out << shown << "\n";
  out.close();
  if (!out) throw Error("cannot write the solution to '" + args.output + "'");
  return 0;
}

}  // namespace

Runner add_search_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "search", "Solve a search problem document (JSON, docs/search.md) with a search plugin");
  auto a = std::make_shared<SearchArgs>();
  cmd->add_option("problem", a->problem, "Problem document (JSON)")->required();
  cmd->add_option("--provider", a->provider, "Search provider (default: exact)");
  cmd->add_option("--plugin", a->plugin, "Use the provider of this plugin (its name)");
  cmd->add_option("--param", a->params,
                  "Solver parameter KEY=VALUE, e.g. max_nodes=1000000 (repeatable)");
  cmd->add_option("-o,--output", a->output, "Write the solution here instead of stdout");
  cmd->add_option("--plugin-path", a->plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  return [a] { return run_search(*a); };
}

}  // namespace tessera::cli
