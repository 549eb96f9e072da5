// Shared pieces of the training-data tests: a tokenizer with one token per byte (so token
// counts are byte counts) and an end-of-text token, and running a Python check on files.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <tessera/text/tokenizer.hpp>
#include <vector>

namespace tessera::test {

// Tokens 0..255 are the bytes (in the GPT-2 byte alphabet), no merges; 256 is
// "<|endoftext|>", a control token, the EOS. No BOS.
inline const Tokenizer& byte_tokenizer() {
  static const Tokenizer tokenizer = [] {
    TokenizerData data;
    for (int b = 0; b < 256; ++b) {
      const char32_t c = byte_to_unicode(static_cast<uint8_t>(b));
      std::string utf8;
      if (c < 0x80) {
        utf8 += static_cast<char>(c);
      } else {  // the alphabet stays below U+0800
        utf8 += static_cast<char>(0xC0 | (c >> 6));
        utf8 += static_cast<char>(0x80 | (c & 0x3F));
      }
      data.tokens.push_back(utf8);
      data.token_types.push_back(1);
    }
    data.tokens.push_back("<|endoftext|>");
    data.token_types.push_back(3);
    data.eos_id = 256;
    return Tokenizer::from_data(data);
  }();
  return tokenizer;
}

inline bool have_python() {
  static const bool found = std::system("python3 -c pass >/dev/null 2>&1") == 0;
  return found;
}

// Runs python3 with `script` (its arguments: `args`) and returns what it printed; fails the
// test when it exits non-zero. Check have_python() first.
inline std::string run_python(const std::filesystem::path& folder, const std::string& script,
                              const std::vector<std::string>& args) {
  const std::filesystem::path file = folder / "check.py";
  {
    std::FILE* out = std::fopen(file.c_str(), "w");
    std::fputs(script.c_str(), out);
    std::fclose(out);
  }
  std::string command = "python3 '" + file.string() + "'";
  for (const std::string& a : args) command += " '" + a + "'";
  command += " 2>&1";
  std::string printed;
  std::FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) printed.append(buffer, n);
  const int status = pclose(pipe);
  EXPECT_EQ(status, 0) << printed;
  return printed;
}

}  // namespace tessera::test
