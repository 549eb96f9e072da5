// Replays the kept manifest fuzz corpus (fuzz/corpus/manifest, minimised by scripts/fuzz.sh
// manifest) and its seeds through the fuzz target's own checks (fuzz/manifest_fuzz_check.hpp),
// so CI keeps every input the fuzzer found interesting, past crashes (regression-*) included,
// without libFuzzer: each must parse and keep the to_toml round trip, or be refused with a
// ManifestError at file:line:column; nothing else may escape.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../../fuzz/manifest_fuzz_check.hpp"
#include "tessera/engine/error.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every regular file of fuzz/<folder>, sorted.
std::vector<fs::path> files_in(const std::string& folder) {
  const fs::path dir = fs::path(TESSERA_SOURCE_DIR) / "fuzz" / folder;
  std::vector<fs::path> files;
  if (fs::is_directory(dir)) {
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Runs the fuzz checks on each file; returns how many parsed.
size_t replay(const std::vector<fs::path>& files) {
  size_t parsed = 0;
  for (const fs::path& file : files) {
    const std::string name = file.filename().string();
    const std::string bytes = read_bytes(file);
    try {
      if (fuzz::check_manifest_input(bytes, [&](const char* what) {
            ADD_FAILURE() << name << " (" << bytes.size() << " bytes): " << what;
          })) {
        ++parsed;
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": threw something other than a ManifestError: " << e.what();
    }
  }
  return parsed;
}

TEST(FuzzCorpusManifest, EveryInputParsesBackOrThrowsManifestError) {
  const std::vector<fs::path> files = files_in("corpus/manifest");
  ASSERT_FALSE(files.empty());
  const size_t parsed = replay(files);
  EXPECT_GT(parsed, 0u);  // the corpus covers the successful path too
  std::printf("manifest fuzz corpus: %zu inputs, %zu parsed\n", files.size(), parsed);
}

TEST(FuzzCorpusManifest, SeedsParseBack) {
  const std::vector<fs::path> files = files_in("seeds/manifest");
  ASSERT_FALSE(files.empty());
  EXPECT_EQ(replay(files), files.size());  // the seeds are valid manifests
}

}  // namespace
}  // namespace tessera
