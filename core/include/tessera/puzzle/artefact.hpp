// Writing a stage's artefact: the whole file or nothing, so an interrupted stage never leaves a
// half-written one for the next stage (or its own resume) to read.
#pragma once

#include <filesystem>
#include <string>

namespace tessera::puzzle {

// Writes `text` to path + ".partial", flushes it and renames it over `path`. Throws Error
// naming the file and the system's reason.
void write_artefact(const std::filesystem::path& path, const std::string& text);

}  // namespace tessera::puzzle
