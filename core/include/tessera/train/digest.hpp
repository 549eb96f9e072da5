// SHA-256 (FIPS 180-4), for the identities the token cache is keyed on: a corpus' files and a
// tokenizer's vocabulary. Streamed: add() any number of times, then hex() or digest().
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tessera {

class Sha256 {
 public:
  Sha256();
  Sha256& add(const void* data, size_t size);
  Sha256& add(std::string_view text) { return add(text.data(), text.size()); }
  // A field of a record: its length first (8 bytes, little-endian), so that ("ab", "c") and
  // ("a", "bc") differ.
  Sha256& add_field(std::string_view text);
  Sha256& add_u64(uint64_t value);
  // The digest; the object must not be added to afterwards.
  std::array<uint8_t, 32> digest();
  std::string hex();  // 64 lowercase hex digits

 private:
  void block(const uint8_t* data);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes added
  bool finished_ = false;
};

std::string sha256_hex(std::string_view data);

}  // namespace tessera
