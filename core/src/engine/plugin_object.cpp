#include <tessera/engine/plugin_object.hpp>

#include <cstring>

namespace tessera {

std::string plugin_status_message(int status, const ts_error& err) {
  std::string message(err.message, strnlen(err.message, sizeof(err.message)));
  if (message.empty()) message = "the plugin reported no message";
  if (status == TS_UNSUPPORTED) return "unsupported: " + message;
  if (status != TS_ERROR) return "status " + std::to_string(status) + ": " + message;
  return message;
}

}  // namespace tessera
