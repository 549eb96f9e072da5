// Inputs kept by the libFuzzer runs (scripts/fuzz.sh safetensors / hf_config) stay regressions
// here: every corpus file must parse or throw tessera::Error, never anything else, and what
// parses must keep the properties the fuzz targets check.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/formats/hf_config.hpp>
#include <tessera/formats/safetensors.hpp>
#include <vector>

#include "hf_fixtures.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Every regular file of fuzz/corpus/<target>, at least one.
std::vector<fs::path> corpus(const std::string& target) {
  const fs::path folder = fs::path(TESSERA_SOURCE_DIR) / "fuzz" / "corpus" / target;
  std::vector<fs::path> files;
  if (fs::is_directory(folder)) {
    for (const auto& entry : fs::directory_iterator(folder)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(FuzzCorpusHf, SafetensorsInputsParseOrThrowModelError) {
  const std::vector<fs::path> files = corpus("safetensors");
  ASSERT_FALSE(files.empty());
  size_t parsed = 0;
  for (const fs::path& file : files) {
    const std::string bytes = read_bytes(file);
    try {
      const WeightStore store =
          read_safetensors_from_memory(bytes.data(), bytes.size(), file.filename().string());
      for (const auto& [name, tensor] : store.all()) {
        EXPECT_FALSE(name.empty()) << file;
        EXPECT_LE(tensor.bytes(), bytes.size()) << file << " tensor " << name;
      }
      ++parsed;
    } catch (const ModelError& e) {
      EXPECT_NE(std::string(e.what()).find(file.filename().string()), std::string::npos)
          << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << file << ": not a ModelError: " << e.what();
    }
  }
  EXPECT_GT(parsed, 0u);  // the corpus covers the successful path too
}

TEST(FuzzCorpusHf, ConfigInputsParseOrThrowModelError) {
  const std::vector<fs::path> files = corpus("hf_config");
  ASSERT_FALSE(files.empty());
  size_t parsed = 0;
  for (const fs::path& file : files) {
    HfConfig config;
    try {
      config = parse_hf_config(read_bytes(file), "config.json");
    } catch (const ModelError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("config.json: ", 0), 0u) << e.what();
      continue;
    } catch (const std::exception& e) {
      ADD_FAILURE() << file << ": not a ModelError: " << e.what();
      continue;
    }
    ++parsed;
    // What the config gives is a manifest the manifest parser accepts, with the same layers.
    config.manifest.weights.path = "model";
    try {
      const Manifest back = parse_manifest(to_toml(config.manifest), "back.toml", ".");
      EXPECT_EQ(test::effective_layers(back), test::effective_layers(config.manifest)) << file;
    } catch (const Error& e) {
      ADD_FAILURE() << file << ": its manifest does not parse back: " << e.what();
    }
  }
  EXPECT_GT(parsed, 0u);
}

}  // namespace
}  // namespace tessera
