// write_file_atomically: the file appears whole, replaces what was there, and a write that
// cannot happen throws naming the file and leaves neither the target nor a ".partial" behind.
#include <gtest/gtest.h>

#include <tessera/engine/error.hpp>
#include <tessera/tools/atomic_file.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tessera {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(AtomicFile, WritesAndReplacesWhole) {
  const fs::path dir = fs::temp_directory_path() / ("tessera-atomic-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path p = dir / "a.json";
  write_file_atomically(p, std::string("first\0with a NUL", 16));
  EXPECT_EQ(read(p), std::string("first\0with a NUL", 16));
  write_file_atomically(p, "second");
  EXPECT_EQ(read(p), "second");
  EXPECT_FALSE(fs::exists(dir / "a.json.partial"));
  write_file_atomically(p, "");
  EXPECT_EQ(fs::file_size(p), 0u);
  fs::remove_all(dir);
}

TEST(AtomicFile, AWriteThatCannotHappenNamesTheFileAndLeavesNothing) {
  const fs::path dir =
      fs::temp_directory_path() / ("tessera-atomic-no-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  try {
    write_file_atomically(dir / "x.json", "text");
    FAIL() << "wrote into a folder that does not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "x.json.partial").string() + ": cannot create"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(dir));
  // A target that is a folder: the rename fails, the folder stays and the partial is removed.
  fs::create_directories(dir / "target" / "inside");
  EXPECT_THROW(write_file_atomically(dir / "target", "text"), Error);
  EXPECT_TRUE(fs::is_directory(dir / "target" / "inside"));
  EXPECT_FALSE(fs::exists(dir / "target.partial"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tessera
