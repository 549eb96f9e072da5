// Replays the kept tokenizer fuzz corpus (fuzz/corpus/tokenizer, minimised by
// scripts/fuzz.sh tokenizer) through the fuzz target's own checks, so CI keeps every input the
// fuzzer found interesting, past crashes (regression-*) included, without libFuzzer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "../../fuzz/tokenizer_fuzz_check.hpp"
#include "tessera/engine/error.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(TokenizerFuzzCorpus, EveryInputWorksOrThrowsTesseraError) {
  const fs::path corpus = fs::path(TESSERA_SOURCE_DIR) / "fuzz" / "corpus" / "tokenizer";
  ASSERT_TRUE(fs::is_directory(corpus)) << corpus;
  const fuzz::ToyTokenizers tokenizers;
  size_t files = 0;
  size_t threw = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    if (!entry.is_regular_file()) continue;
    ++files;
    const std::string name = entry.path().filename().string();
    const std::string bytes = read_bytes(entry.path());
    try {
      fuzz::check_tokenizer_input(tokenizers, bytes, [&](const char* what) {
        ADD_FAILURE() << name << " (" << bytes.size() << " bytes): " << what;
      });
    } catch (const Error&) {
      ++threw;  // a clean refusal is acceptable
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": threw something other than tessera::Error: " << e.what();
    }
  }
  EXPECT_GT(files, 0u);
  std::printf("tokenizer fuzz corpus: %zu inputs, %zu refused with tessera::Error\n", files, threw);
}

}  // namespace
}  // namespace tessera
