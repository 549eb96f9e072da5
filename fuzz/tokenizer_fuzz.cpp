// libFuzzer target: arbitrary bytes through the byte-level BPE tokenizer. Encoding then
// decoding must give back the input byte for byte, for every pre-tokenizer, with and without
// special-token parsing; pre-tokens must cover the input exactly. Also feeds the bytes to the
// chat-template recogniser, which may only answer with ChatTemplateError. The checks live in
// tokenizer_fuzz_check.hpp, shared with the unit test that replays the kept corpus.
//
//   scripts/fuzz.sh tokenizer [seconds]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "tokenizer_fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const tessera::fuzz::ToyTokenizers tokenizers;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  tessera::fuzz::check_tokenizer_input(tokenizers, text, [](const char* what) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", what);
    std::abort();
  });
  return 0;
}
