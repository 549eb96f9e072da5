#include <tessera/engine/input_file.hpp>

#include <sys/stat.h>

namespace tessera {

std::string not_a_regular_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  switch (st.st_mode & S_IFMT) {
    case S_IFREG:
      return {};
    case S_IFIFO:
      return "a FIFO (named pipe)";
    case S_IFDIR:
      return "a folder";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFSOCK:
      return "a socket";
    default:
      return "not a regular file";
  }
}

}  // namespace tessera
