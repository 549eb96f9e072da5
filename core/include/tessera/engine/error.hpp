// Error types of the core. Every message says what, where and what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace tessera {

// A NUL inside a message (from a path or a name read from a file) would end what() early:
// it is shown as \0 instead.
struct Error : std::runtime_error {
  explicit Error(const std::string& message) : std::runtime_error(printable(message)) {}
  explicit Error(const char* message) : std::runtime_error(message) {}

  static std::string printable(const std::string& message) {
    if (message.find('\0') == std::string::npos) return message;
    std::string out;
    out.reserve(message.size() + 8);
    for (const char c : message) {
      if (c == '\0') {
        out += "\\0";
      } else {
        out += c;
      }
    }
    return out;
  }
};

// A manifest that does not parse or does not make sense. what() is
// "file:line:column: message"; the parts are kept for tests and tools.
struct ManifestError : Error {
  ManifestError(std::string file_name, int line_no, int column_no, std::string message)
      : Error(file_name + ":" + std::to_string(line_no) + ":" + std::to_string(column_no) + ": " +
              message),
        file(std::move(file_name)),
        line(line_no),
        column(column_no),
        detail(std::move(message)) {}
  std::string file;
  int line;
  int column;
  std::string detail;
};

// A plugin library that cannot be loaded or used, or a provider nobody has.
struct PluginError : Error {
  using Error::Error;
};

// A plugin object's create (or capability query) reported TS_UNSUPPORTED: this
// provider cannot build what was asked on this machine, and another may.
struct PluginUnsupported : Error {
  using Error::Error;
};

// A model file or weight that is missing, malformed or of the wrong shape.
struct ModelError : Error {
  using Error::Error;
};

}  // namespace tessera
