// libFuzzer target for TOML model manifests (engine/manifest.cpp, engine/toml_reader.cpp): any
// input text must either be refused with tessera::ManifestError whose message is
// "fuzz.toml:<line>:<column>: <detail>" (a location inside the text, a non-empty detail), or
// parse into a Manifest whose to_toml() output parses again into the same model section,
// weights, runtime and layers (and writes back to the same text). Anything else (another
// exception, a crash, a sanitizer report, a broken property) is a bug. The checks live in
// manifest_fuzz_check.hpp, shared with the unit test that replays the kept corpus.
//
//   scripts/fuzz.sh manifest [seconds]
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

#include "manifest_fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  tessera::fuzz::check_manifest_input(text, [](const char* what) {
    std::fprintf(stderr, "manifest_fuzz: %s\n", what);
    __builtin_trap();
  });
  return 0;
}
