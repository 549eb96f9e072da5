// The core's log (spdlog underneath), also what ts_host.log writes to.
#pragma once

#include <string_view>

namespace tessera {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3, off = 4 };

void set_log_level(LogLevel level);
void log(LogLevel level, std::string_view message);

}  // namespace tessera
