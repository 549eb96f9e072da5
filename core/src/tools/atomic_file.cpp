#include <tessera/engine/error.hpp>
#include <tessera/tools/atomic_file.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>

namespace tessera {

void write_file_atomically(const std::filesystem::path& path, std::string_view text) {
  std::filesystem::path partial = path;
  partial += ".partial";
  {
    std::ofstream file(partial, std::ios::binary | std::ios::trunc);
    if (!file) throw Error(partial.string() + ": cannot create: " + std::strerror(errno));
    file.write(text.data(), static_cast<std::streamsize>(text.size()));
    file.flush();
    if (!file) {
      const std::string reason = std::strerror(errno);
      std::error_code ignored;
      std::filesystem::remove(partial, ignored);
      throw Error(partial.string() + ": cannot write " + std::to_string(text.size()) +
                  " bytes: " + reason);
    }
  }
  std::error_code ec;
  std::filesystem::rename(partial, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
    throw Error(path.string() + ": cannot replace it with " + partial.string() + ": " +
                ec.message());
  }
}

}  // namespace tessera
