// Writing a file whole or not at all: an interrupted writer (a kill, a full disk) never leaves
// a half-written file for a reader, or its own resume, to take as complete.
#pragma once

#include <filesystem>
#include <string_view>

namespace tessera {

// Writes `text` to path + ".partial", flushes it and renames it over `path`. Throws Error
// naming the file and the system's reason; a failed write or rename removes its ".partial".
void write_file_atomically(const std::filesystem::path& path, std::string_view text);

}  // namespace tessera
