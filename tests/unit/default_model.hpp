// Where the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) is cached, and what a test
// does when it is absent: skip on a developer's machine, fail where the model is required.
// scripts/test.sh (CI) fetches the model and sets TESSERA_REQUIRE_DEFAULT_MODEL=1, so the
// golden tests can never pass by skipping there.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace tessera::test {

inline std::filesystem::path default_model_cache() {
  if (const char* cache = std::getenv("TESSERA_CACHE")) return std::filesystem::path(cache);
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : "/root") / ".cache" / "tessera";
}

inline std::filesystem::path default_model_path() {
  return default_model_cache() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

inline bool default_model_required() {
  const char* value = std::getenv("TESSERA_REQUIRE_DEFAULT_MODEL");
  return value != nullptr && *value != '\0' && std::string(value) != "0";
}

}  // namespace tessera::test

// In a test body or SetUp: skips (or fails, when the model is required) without the file.
#define TESSERA_NEED_DEFAULT_MODEL(present, what)                                        \
  do {                                                                                   \
    if (!(present)) {                                                                    \
      if (::tessera::test::default_model_required())                                     \
        GTEST_FAIL() << (what) << " is absent and TESSERA_REQUIRE_DEFAULT_MODEL is set " \
                     << "(run scripts/fetch-default-model.sh)";                          \
      GTEST_SKIP() << (what) << " is absent (scripts/fetch-default-model.sh)";           \
    }                                                                                    \
  } while (false)
