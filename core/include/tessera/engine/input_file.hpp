// Files a user names as input are checked before they are opened: a FIFO would block the
// open until some writer came (a hang), and a device or folder is never a model, manifest or
// config.
#pragma once

#include <filesystem>
#include <string>

namespace tessera {

// What `path` is when it exists and is not a regular file ("a FIFO (named pipe)", "a folder",
// "a character device", ...), after symbolic links; empty when it is a regular file or cannot
// be looked at (callers report a missing file in their own words).
std::string not_a_regular_file(const std::filesystem::path& path);

}  // namespace tessera
