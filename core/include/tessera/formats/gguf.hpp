// Reader for GGUF model files (versions 2 and 3, little-endian), memory-mapped.
//
// File layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata
// (key string, u32 value type, value), the tensor infos (name string, u32 dimension count,
// u64 dimensions fastest first, u32 ggml type, u64 offset into the data section), padding to
// `general.alignment` (default 32), then the tensor data. Strings are a u64 length and bytes.
//
// Every read is checked against the file size before it happens: a corrupt count or length
// throws tessera::ModelError naming the file, the byte offset, the field and what was
// expected, and never leads to a crash or an allocation larger than a small multiple of the
// file size. Strings and scalar arrays are not copied: they point into the mapping, so a
// GgufValue lives only as long as its GgufFile.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tessera/engine/tensor.hpp>
#include <tessera/formats/dequantize.hpp>
#include <unordered_map>
#include <vector>

namespace tessera {

enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

// "uint32", "string", "array", ... or "type 99" for an unknown id.
std::string gguf_value_type_name(uint32_t type);

// One metadata value: a scalar, a string, or an array of any of them (arrays may nest).
class GgufValue {
 public:
  GgufValueType type() const { return type_; }
  bool is_array() const { return type_ == GgufValueType::ARRAY; }

  // Scalars. as_int accepts every integer type whose value fits an int64 (and bool, as 0/1);
  // as_float accepts float32/float64 and integers; as_string only strings. nullopt otherwise.
  std::optional<int64_t> as_int() const;
  std::optional<uint64_t> as_uint() const;
  std::optional<double> as_float() const;
  std::optional<bool> as_bool() const;
  std::optional<std::string_view> as_string() const;

  // Arrays (all zero / empty for a non-array).
  GgufValueType element_type() const { return element_type_; }
  uint64_t size() const { return count_; }
  // Element i as a value (nested arrays are copied; prefer nested() for them).
  // Throws std::out_of_range past the end or for a non-array.
  GgufValue element(uint64_t i) const;
  // The elements of an array of strings, of arrays.
  const std::vector<std::string_view>& strings() const { return strings_; }
  const std::vector<GgufValue>& nested() const { return nested_; }
  // Every element converted with as_int / as_float; nullopt if one does not convert.
  std::optional<std::vector<int64_t>> as_int_array() const;
  std::optional<std::vector<double>> as_float_array() const;

  // Short human-readable form, e.g. `"llama"`, `30`, `[array of 49152 string]`.
  std::string to_string() const;

 private:
  friend class GgufParser;
  GgufValueType type_ = GgufValueType::UINT8;
  GgufValueType element_type_ = GgufValueType::UINT8;
  // Scalars and fixed-size array elements: `raw_` points at the little-endian bytes.
  const uint8_t* raw_ = nullptr;
  uint64_t count_ = 0;
  std::string_view string_;
  std::vector<std::string_view> strings_;
  std::vector<GgufValue> nested_;
};

struct GgufMetadataEntry {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;   // ggml order: ne[0] varies fastest
  uint32_t type = 0;         // a GgmlType id
  uint64_t offset = 0;       // from the start of the data section, as stored
  uint64_t file_offset = 0;  // from the start of the file
  uint64_t bytes = 0;        // stored size
  int64_t numel = 0;

  // Row-major shape (slowest first): ne reversed. A [vocab, dim] embedding has ne = {dim, vocab}.
  std::vector<int64_t> shape() const { return {ne.rbegin(), ne.rend()}; }
  GgmlType ggml_type() const { return static_cast<GgmlType>(type); }
};

class GgufFile {
 public:
  // Maps and parses `path`. Throws ModelError (file missing, not GGUF, unsupported version,
  // malformed anywhere).
  static GgufFile open(const std::filesystem::path& path);
  // Parses bytes already in memory (tests, fuzzing). `name` stands for the file in errors;
  // `keepalive` (may be empty) owns the bytes, which must outlive the GgufFile otherwise.
  static GgufFile from_memory(const void* data, size_t size, std::string name,
                              std::shared_ptr<const void> keepalive = {});

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }

  // Metadata, in file order.
  const std::vector<GgufMetadataEntry>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // Typed lookups: throw ModelError naming the key when it is missing or of the wrong type.
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const GgufValue& get_array(std::string_view key) const;
  // The same with a fallback when the key is missing (a wrong type still throws).
  std::string get_string(std::string_view key, std::string fallback) const;
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_float(std::string_view key, double fallback) const;

  // Tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const GgufTensorInfo& tensor(std::string_view name) const;  // throws ModelError if absent
  // The stored bytes of a tensor (inside the mapping; info.bytes long).
  const uint8_t* tensor_data(const GgufTensorInfo& info) const;
  // A new CPU tensor of the row-major shape, dequantised to `out` (f32, f16 or bf16).
  // Throws ModelError for an absent tensor, a type that cannot be dequantised, or another `out`.
  Tensor load_tensor(std::string_view name, ts_dtype out = TS_F32) const;
  Tensor load_tensor(const GgufTensorInfo& info, ts_dtype out = TS_F32) const;

 private:
  friend class GgufParser;
  GgufFile() = default;

  std::shared_ptr<const void> storage_;  // the mapping (or the caller's buffer)
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufMetadataEntry> metadata_;
  // Keyed by views into the mapping, which never moves, so copies of a GgufFile stay valid.
  std::unordered_map<std::string_view, size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace tessera
