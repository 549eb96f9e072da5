// GGUF reader: memory mapping, a bounds-checked parser, metadata lookups and tensor loading.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tessera/engine/input_file.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <tessera/engine/error.hpp>
#include <tessera/formats/gguf.hpp>

namespace tessera {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;     // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;  // deeper nesting is surely corrupt (and bounds the stack)
// Smallest encodings, used to reject counts that cannot fit in the bytes left.
constexpr uint64_t kMinMetadataEntryBytes = 8 + 4 + 1;   // empty key, type, one-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, 0 dims, type, offset
constexpr uint64_t kStringHeaderBytes = 8;
constexpr uint64_t kArrayHeaderBytes = 4 + 8;

// Bytes of a fixed-size value type; 0 for string and array.
size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
      return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32:
      return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64:
      return 8;
    default:
      return 0;
  }
}

bool known_value_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufValueType::FLOAT64);
}

uint64_t min_encoded_size(GgufValueType t) {
  if (t == GgufValueType::STRING) return kStringHeaderBytes;
  if (t == GgufValueType::ARRAY) return kArrayHeaderBytes;
  return scalar_size(t);
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string printable(std::string_view s, size_t max_chars = 60) {
  std::string out;
  for (char c : s.substr(0, max_chars)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (s.size() > max_chars) out += "...";
  return out;
}

// A read-only private mapping of a whole file.
std::shared_ptr<const void> map_file(const std::filesystem::path& path, size_t& size) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a FIFO must not wait for a writer (fstat refuses it next).
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    throw ModelError("GGUF file '" + name + "': cannot open: " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    const std::string what = not_a_regular_file(path);
    throw ModelError(
        "GGUF file '" + name +
        "': " + (what.empty() ? std::string("not a regular file") : what + ", not a regular file"));
  }
  size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    throw ModelError("GGUF file '" + name + "': the file is empty; expected a GGUF header");
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file open
  if (p == MAP_FAILED) {
    throw ModelError("GGUF file '" + name + "': cannot memory-map " + std::to_string(size) +
                     " bytes: " + std::strerror(map_errno));
  }
  const size_t mapped = size;
  return std::shared_ptr<const void>(
      p, [mapped](const void* q) { ::munmap(const_cast<void*>(q), mapped); });
}

}  // namespace

std::string gguf_value_type_name(uint32_t type) {
  static constexpr const char* kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                           "int32",  "float32", "bool",   "string", "array",
                                           "uint64", "int64",   "float64"};
  if (known_value_type(type)) return kNames[type];
  return "type " + std::to_string(type);
}

// ---- GgufValue ------------------------------------------------------------------------------

std::optional<uint64_t> GgufValue::as_uint() const {
  switch (type_) {
    case GgufValueType::UINT8:
    case GgufValueType::BOOL:
      return load<uint8_t>(raw_);
    case GgufValueType::UINT16:
      return load<uint16_t>(raw_);
    case GgufValueType::UINT32:
      return load<uint32_t>(raw_);
    case GgufValueType::UINT64:
      return load<uint64_t>(raw_);
    case GgufValueType::INT8:
    case GgufValueType::INT16:
    case GgufValueType::INT32:
    case GgufValueType::INT64: {
      const std::optional<int64_t> v = as_int();
      if (v && *v >= 0) return static_cast<uint64_t>(*v);
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

std::optional<int64_t> GgufValue::as_int() const {
  switch (type_) {
    case GgufValueType::INT8:
      return load<int8_t>(raw_);
    case GgufValueType::INT16:
      return load<int16_t>(raw_);
    case GgufValueType::INT32:
      return load<int32_t>(raw_);
    case GgufValueType::INT64:
      return load<int64_t>(raw_);
    case GgufValueType::UINT8:
    case GgufValueType::BOOL:
    case GgufValueType::UINT16:
    case GgufValueType::UINT32:
    case GgufValueType::UINT64: {
      const uint64_t v = *as_uint();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(v);
    }
    default:
      return std::nullopt;
  }
}

std::optional<double> GgufValue::as_float() const {
  switch (type_) {
    case GgufValueType::FLOAT32:
      return load<float>(raw_);
    case GgufValueType::FLOAT64:
      return load<double>(raw_);
    case GgufValueType::BOOL:
      return std::nullopt;
    default: {
      if (const auto i = as_int()) return static_cast<double>(*i);
      if (const auto u = as_uint()) return static_cast<double>(*u);
      return std::nullopt;
    }
  }
}

std::optional<bool> GgufValue::as_bool() const {
  if (type_ != GgufValueType::BOOL) return std::nullopt;
  return load<uint8_t>(raw_) != 0;
}

std::optional<std::string_view> GgufValue::as_string() const {
  if (type_ != GgufValueType::STRING) return std::nullopt;
  return string_;
}

GgufValue GgufValue::element(uint64_t i) const {
  if (!is_array() || i >= count_) {
    throw std::out_of_range("GgufValue::element(" + std::to_string(i) + ") of " + to_string());
  }
  if (element_type_ == GgufValueType::STRING) {
    GgufValue v;
    v.type_ = GgufValueType::STRING;
    v.string_ = strings_[i];
    return v;
  }
  if (element_type_ == GgufValueType::ARRAY) return nested_[i];
  GgufValue v;
  v.type_ = element_type_;
  v.raw_ = raw_ + i * scalar_size(element_type_);
  return v;
}

std::optional<std::vector<int64_t>> GgufValue::as_int_array() const {
  if (!is_array()) return std::nullopt;
  std::vector<int64_t> out;
  out.reserve(count_);
  for (uint64_t i = 0; i < count_; ++i) {
    const auto v = element(i).as_int();
    if (!v) return std::nullopt;
    out.push_back(*v);
  }
  return out;
}

std::optional<std::vector<double>> GgufValue::as_float_array() const {
  if (!is_array()) return std::nullopt;
  std::vector<double> out;
  out.reserve(count_);
  for (uint64_t i = 0; i < count_; ++i) {
    const auto v = element(i).as_float();
    if (!v) return std::nullopt;
    out.push_back(*v);
  }
  return out;
}

std::string GgufValue::to_string() const {
  switch (type_) {
    case GgufValueType::STRING:
      return "\"" + printable(string_) + "\"";
    case GgufValueType::ARRAY:
      return "[array of " + std::to_string(count_) + " " +
             gguf_value_type_name(static_cast<uint32_t>(element_type_)) + "]";
    case GgufValueType::BOOL:
      return *as_bool() ? "true" : "false";
    case GgufValueType::FLOAT32:
    case GgufValueType::FLOAT64:
      return std::to_string(*as_float());
    case GgufValueType::UINT64:
      return std::to_string(*as_uint());
    default:
      return std::to_string(*as_int());
  }
}

// ---- Parser ---------------------------------------------------------------------------------

class GgufParser {
 public:
  explicit GgufParser(GgufFile& file) : f_(file) {}

  void parse() {
    if (f_.size_ < 4 || load<uint32_t>(f_.base_) != kGgufMagic) {
      std::string got;
      for (size_t i = 0; i < std::min<size_t>(4, f_.size_); ++i) {
        got += std::to_string(f_.base_[i]) + (i + 1 < std::min<size_t>(4, f_.size_) ? " " : "");
      }
      fail(
          0, "magic",
          "the file does not start with \"GGUF\" (bytes: " + got + "); expected a GGUF model file");
    }
    pos_ = 4;
    parse_version();
    const uint64_t tensor_count = read_u64("tensor count");
    const uint64_t metadata_count = read_u64("metadata count");
    check_count(metadata_count, kMinMetadataEntryBytes, "metadata count", pos_ - 8);
    f_.metadata_.reserve(static_cast<size_t>(metadata_count));
    for (uint64_t i = 0; i < metadata_count; ++i) parse_metadata_entry(i);
    context_.clear();
    apply_alignment();
    check_count(tensor_count, kMinTensorInfoBytes, "tensor count", 16);
    f_.tensors_.reserve(static_cast<size_t>(tensor_count));
    std::vector<size_t> offset_field_at;
    offset_field_at.reserve(static_cast<size_t>(tensor_count));
    for (uint64_t i = 0; i < tensor_count; ++i) offset_field_at.push_back(parse_tensor_info(i));
    context_.clear();
    place_tensors(offset_field_at);
  }

 private:
  [[noreturn]] void fail(size_t offset, std::string_view field, const std::string& problem) const {
    std::string where = context_;
    for (size_t k = 0; k < element_path_.size(); ++k) {
      where +=
          (where.empty() ? "" : " ") + std::string("element ") + std::to_string(element_path_[k]);
    }
    if (!where.empty() && !field.empty()) where += ' ';
    where += field;
    throw ModelError("GGUF file '" + f_.name_ + "': byte offset " + std::to_string(offset) + ": " +
                     where + ": " + problem);
  }

  size_t remaining() const { return f_.size_ - pos_; }

  // Consumes n bytes after checking they are there.
  const uint8_t* take(uint64_t n, std::string_view field) {
    if (n > remaining()) {
      fail(pos_, field,
           "needs " + std::to_string(n) + " bytes but only " + std::to_string(remaining()) +
               " remain in the file of " + std::to_string(f_.size_) +
               " bytes; expected a complete field");
    }
    const uint8_t* p = f_.base_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }

  uint32_t read_u32(std::string_view field) { return load<uint32_t>(take(4, field)); }
  uint64_t read_u64(std::string_view field) { return load<uint64_t>(take(8, field)); }

  // The field names are only joined into strings when an error is reported.
  std::string_view read_string(std::string_view field) {
    const size_t at = pos_;
    if (remaining() < kStringHeaderBytes) {
      fail(at, std::string(field) + " string length",
           "needs 8 bytes but only " + std::to_string(remaining()) + " remain in the file of " +
               std::to_string(f_.size_) + " bytes; expected a complete field");
    }
    const uint64_t length = load<uint64_t>(f_.base_ + pos_);
    pos_ += kStringHeaderBytes;
    if (length > remaining()) {
      fail(at, std::string(field) + " string length",
           std::to_string(length) + " bytes, but only " + std::to_string(remaining()) +
               " bytes remain in the file; expected a length that fits");
    }
    const char* p = reinterpret_cast<const char*>(f_.base_ + pos_);
    pos_ += static_cast<size_t>(length);
    return {p, static_cast<size_t>(length)};
  }

  // A count of items of at least `min_bytes` each must fit in what is left.
  void check_count(uint64_t count, uint64_t min_bytes, std::string_view field, size_t at) const {
    if (count > remaining() / min_bytes) {
      fail(at, field,
           std::to_string(count) + " items of at least " + std::to_string(min_bytes) +
               " bytes cannot fit in the " + std::to_string(remaining()) +
               " bytes left; expected a count that fits the file");
    }
  }

  void parse_version() {
    const uint32_t version = read_u32("version");
    if (version == 1) {
      fail(4, "version",
           "GGUF version 1 is not supported (it used 32-bit counts); expected version 2 or 3");
    }
    if (version != 2 && version != 3) {
      uint32_t swapped = __builtin_bswap32(version);
      if (swapped == 2 || swapped == 3) {
        fail(4, "version",
             "this is a big-endian GGUF file (version " + std::to_string(swapped) +
                 "); expected a little-endian file");
      }
      fail(4, "version",
           "unknown GGUF version " + std::to_string(version) + "; expected version 2 or 3");
    }
    f_.version_ = version;
  }

  void parse_metadata_entry(uint64_t index) {
    context_ = "metadata key " + std::to_string(index);
    const size_t key_at = pos_;
    const std::string_view key = read_string("key");
    context_ += " '" + printable(key) + "'";
    if (f_.metadata_index_.count(key) != 0) {
      fail(key_at, "key",
           "the key is repeated (first at index " + std::to_string(f_.metadata_index_.at(key)) +
               "); expected unique keys");
    }
    const size_t type_at = pos_;
    const uint32_t type = read_u32("value type");
    if (!known_value_type(type)) {
      fail(type_at, "value type",
           "unknown value type " + std::to_string(type) + "; expected 0..12 (uint8..float64)");
    }
    GgufMetadataEntry entry;
    entry.key = std::string(key);
    value_at_.push_back(pos_);
    entry.value = read_value(static_cast<GgufValueType>(type), 0);
    f_.metadata_index_.emplace(key, f_.metadata_.size());
    f_.metadata_.push_back(std::move(entry));
  }

  GgufValue read_value(GgufValueType type, int depth) {
    GgufValue v;
    v.type_ = type;
    if (type == GgufValueType::STRING) {
      v.string_ = read_string("value");
      return v;
    }
    if (type != GgufValueType::ARRAY) {
      v.raw_ = take(scalar_size(type), "value");
      return v;
    }
    if (depth >= kMaxArrayNesting) {
      fail(pos_, "array",
           "arrays nested deeper than " + std::to_string(kMaxArrayNesting) +
               " levels; expected shallower nesting");
    }
    const size_t type_at = pos_;
    const uint32_t element_type = read_u32("array element type");
    if (!known_value_type(element_type)) {
      fail(type_at, "array element type",
           "unknown value type " + std::to_string(element_type) +
               "; expected 0..12 (uint8..float64)");
    }
    v.element_type_ = static_cast<GgufValueType>(element_type);
    const size_t count_at = pos_;
    v.count_ = read_u64("array length");
    check_count(v.count_, min_encoded_size(v.element_type_), "array length", count_at);
    if (v.element_type_ == GgufValueType::STRING) {
      v.strings_.reserve(static_cast<size_t>(v.count_));
      element_path_.push_back(0);
      for (uint64_t i = 0; i < v.count_; ++i) {
        element_path_.back() = i;
        v.strings_.push_back(read_string("value"));
      }
      element_path_.pop_back();
    } else if (v.element_type_ == GgufValueType::ARRAY) {
      v.nested_.reserve(static_cast<size_t>(v.count_));
      element_path_.push_back(0);
      for (uint64_t i = 0; i < v.count_; ++i) {
        element_path_.back() = i;
        v.nested_.push_back(read_value(GgufValueType::ARRAY, depth + 1));
      }
      element_path_.pop_back();
    } else {
      v.raw_ = take(v.count_ * scalar_size(v.element_type_), "array data");
    }
    return v;
  }

  void apply_alignment() {
    const GgufValue* a = f_.find("general.alignment");
    if (a == nullptr) {
      f_.alignment_ = kDefaultAlignment;
      return;
    }
    const std::optional<uint64_t> value = a->as_uint();
    if (!value || a->is_array() || *value == 0 || (*value & (*value - 1)) != 0) {
      const size_t index = f_.metadata_index_.at("general.alignment");
      context_ = "metadata key " + std::to_string(index) + " 'general.alignment'";
      fail(value_at_[index], "value",
           a->to_string() + " (" + gguf_value_type_name(static_cast<uint32_t>(a->type())) +
               "); expected a power of two as an unsigned integer");
    }
    f_.alignment_ = *value;
  }

  // Returns the byte offset of the tensor's offset field, for later errors.
  size_t parse_tensor_info(uint64_t index) {
    context_ = "tensor " + std::to_string(index);
    const size_t name_at = pos_;
    GgufTensorInfo info;
    const std::string_view name = read_string("name");
    context_ += " '" + printable(name) + "'";
    if (f_.tensor_index_.count(name) != 0) {
      fail(name_at, "name",
           "the name is repeated (first at tensor " + std::to_string(f_.tensor_index_.at(name)) +
               "); expected unique tensor names");
    }
    info.name = std::string(name);
    const size_t dims_at = pos_;
    const uint32_t n_dims = read_u32("dimension count");
    if (n_dims > kMaxDims) {
      fail(dims_at, "dimension count",
           std::to_string(n_dims) + "; expected at most " + std::to_string(kMaxDims));
    }
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const size_t dim_at = pos_;
      const uint64_t ne = read_u64("dimension " + std::to_string(d));
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (ne != 0 && numel > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(ne))) {
        fail(dim_at, "dimension " + std::to_string(d),
             std::to_string(ne) + " makes the element count overflow; expected a size that fits");
      }
      info.ne.push_back(static_cast<int64_t>(ne));
      numel *= static_cast<int64_t>(ne);
    }
    info.numel = numel;
    const size_t type_at = pos_;
    info.type = read_u32("ggml type");
    const GgmlTypeInfo* type_info = ggml_type_info(info.type);
    if (type_info == nullptr) {
      fail(type_at, "ggml type",
           "unknown ggml type id " + std::to_string(info.type) +
               "; expected a known id such as 0 (F32), 1 (F16), 8 (Q8_0) or 12 (Q4_K)");
    }
    const int64_t row = info.ne.empty() ? 1 : info.ne[0];
    if (row % type_info->block_elems != 0) {
      fail(dims_at, "dimension 0",
           std::to_string(row) + " values per row; expected a multiple of the " + type_info->name +
               " block size " + std::to_string(type_info->block_elems));
    }
    const std::optional<uint64_t> bytes = ggml_bytes_for(info.type, numel);
    if (!bytes) {
      fail(dims_at, "dimensions",
           std::to_string(numel) + " values of " + type_info->name +
               " overflow a 64-bit byte count; expected a size that fits");
    }
    info.bytes = *bytes;
    const size_t offset_at = pos_;
    info.offset = read_u64("data offset");
    f_.tensor_index_.emplace(name, f_.tensors_.size());
    f_.tensors_.push_back(std::move(info));
    return offset_at;
  }

  // Checks offsets (aligned, inside the file, not overlapping) once the data section is known.
  void place_tensors(const std::vector<size_t>& offset_field_at) {
    const uint64_t alignment = f_.alignment_;
    const uint64_t end_of_infos = pos_;
    if (end_of_infos > std::numeric_limits<uint64_t>::max() - (alignment - 1)) {
      fail(pos_, "data section", "alignment " + std::to_string(alignment) + " overflows");
    }
    f_.data_offset_ = (end_of_infos + alignment - 1) / alignment * alignment;
    const uint64_t size = f_.size_;
    for (size_t i = 0; i < f_.tensors_.size(); ++i) {
      GgufTensorInfo& t = f_.tensors_[i];
      context_ = "tensor " + std::to_string(i) + " '" + printable(t.name) + "'";
      if (t.offset % alignment != 0) {
        fail(offset_field_at[i], "data offset",
             std::to_string(t.offset) + "; expected a multiple of the alignment " +
                 std::to_string(alignment));
      }
      if (f_.data_offset_ > size || t.offset > size - f_.data_offset_ ||
          t.bytes > size - f_.data_offset_ - t.offset) {
        fail(offset_field_at[i], "data offset",
             "data at " + std::to_string(t.offset) + " + " + std::to_string(t.bytes) + " bytes (" +
                 ggml_type_name(t.type) + ") after the data section start " +
                 std::to_string(f_.data_offset_) + " ends past the end of the file (" +
                 std::to_string(size) + " bytes); expected the data inside the file");
      }
      t.file_offset = f_.data_offset_ + t.offset;
    }
    std::vector<size_t> order(f_.tensors_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [this](size_t a, size_t b) { return f_.tensors_[a].offset < f_.tensors_[b].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
      const GgufTensorInfo& prev = f_.tensors_[order[k - 1]];
      const GgufTensorInfo& next = f_.tensors_[order[k]];
      if (prev.offset + prev.bytes > next.offset && prev.bytes != 0 && next.bytes != 0) {
        context_ = "tensor " + std::to_string(order[k]) + " '" + printable(next.name) + "'";
        fail(offset_field_at[order[k]], "data offset",
             std::to_string(next.offset) + " lies inside tensor '" + printable(prev.name) + "' (" +
                 std::to_string(prev.offset) + " + " + std::to_string(prev.bytes) +
                 " bytes); expected tensors not to overlap");
      }
    }
  }

  GgufFile& f_;
  size_t pos_ = 0;
  std::string context_;                 // e.g. "metadata key 12 'general.name'"
  std::vector<uint64_t> element_path_;  // indices of the array elements being read
  std::vector<size_t> value_at_;        // byte offset of each metadata value
};

// ---- GgufFile -------------------------------------------------------------------------------

GgufFile GgufFile::open(const std::filesystem::path& path) {
  size_t size = 0;
  std::shared_ptr<const void> mapping = map_file(path, size);
  const void* base = mapping.get();
  return from_memory(base, size, path.string(), std::move(mapping));
}

GgufFile GgufFile::from_memory(const void* data, size_t size, std::string name,
                               std::shared_ptr<const void> keepalive) {
  GgufFile f;
  f.storage_ = std::move(keepalive);
  f.base_ = static_cast<const uint8_t*>(data);
  f.size_ = data == nullptr ? 0 : size;
  f.name_ = std::move(name);
  GgufParser(f).parse();
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

namespace {

[[noreturn]] void wrong_type(const std::string& file, std::string_view key, const GgufValue& v,
                             const char* expected) {
  throw ModelError("GGUF file '" + file + "': metadata key '" + std::string(key) + "' is " +
                   v.to_string() + " (" + gguf_value_type_name(static_cast<uint32_t>(v.type())) +
                   "); expected " + expected);
}

[[noreturn]] void missing_key(const std::string& file, std::string_view key) {
  throw ModelError("GGUF file '" + file + "': metadata key '" + std::string(key) + "' is missing");
}

}  // namespace

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) missing_key(name_, key);
  const auto s = v->as_string();
  if (!s) wrong_type(name_, key, *v, "a string");
  return std::string(*s);
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) missing_key(name_, key);
  if (v->type() == GgufValueType::BOOL) wrong_type(name_, key, *v, "an integer");
  const auto i = v->as_int();
  if (!i) wrong_type(name_, key, *v, "an integer that fits int64");
  return *i;
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) missing_key(name_, key);
  const auto x = v->as_float();
  if (!x) wrong_type(name_, key, *v, "a number");
  return *x;
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) missing_key(name_, key);
  const auto b = v->as_bool();
  if (!b) wrong_type(name_, key, *v, "a bool");
  return *b;
}

const GgufValue& GgufFile::get_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) missing_key(name_, key);
  if (!v->is_array()) wrong_type(name_, key, *v, "an array");
  return *v;
}

std::string GgufFile::get_string(std::string_view key, std::string fallback) const {
  return contains(key) ? get_string(key) : std::move(fallback);
}

int64_t GgufFile::get_int(std::string_view key, int64_t fallback) const {
  return contains(key) ? get_int(key) : fallback;
}

double GgufFile::get_float(std::string_view key, double fallback) const {
  return contains(key) ? get_float(key) : fallback;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (t == nullptr) {
    throw ModelError("GGUF file '" + name_ + "': no tensor named '" + std::string(name) +
                     "' (the file has " + std::to_string(tensors_.size()) + " tensors)");
  }
  return *t;
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& info) const {
  return base_ + info.file_offset;
}

Tensor GgufFile::load_tensor(std::string_view name, ts_dtype out) const {
  return load_tensor(tensor(name), out);
}

Tensor GgufFile::load_tensor(const GgufTensorInfo& info, ts_dtype out) const {
  const std::string where = "GGUF file '" + name_ + "': tensor '" + info.name + "'";
  const bool as_stored = is_quantized(out) && ts_dtype_of(info.type) == out;
  if (out != TS_F32 && out != TS_F16 && out != TS_BF16 && !as_stored) {
    throw ModelError(where + ": cannot load as " + dtype_name(out) +
                     "; expected f32, f16, bf16 or the tensor's own quantised type (" +
                     ggml_type_name(info.type) + ")");
  }
  const GgmlTypeInfo* type_info = ggml_type_info(info.type);
  if (type_info == nullptr || !type_info->dequantizable) {
    throw ModelError(where + " has ggml type " + ggml_type_name(info.type) +
                     ", which this reader cannot dequantise; supported: F32, F16, BF16, Q8_0, "
                     "Q4_0, Q4_1, Q4_K, Q5_K, Q6_K");
  }
  Tensor result(info.shape(), out);
  const uint8_t* src = tensor_data(info);
  if (info.numel == 0) return result;
  if (out == TS_F32) {
    dequantize_to_f32(info.type, src, result.data<float>(), info.numel);
    return result;
  }
  const bool same = as_stored || (out == TS_F16 && info.ggml_type() == GgmlType::F16) ||
                    (out == TS_BF16 && info.ggml_type() == GgmlType::BF16);
  if (same) {
    std::memcpy(result.raw(), src, static_cast<size_t>(info.bytes));
    return result;
  }
  // Through an f32 scratch buffer a few rows at a time, so that memory stays small.
  const int64_t row = info.ne.empty() ? 1 : std::max<int64_t>(info.ne[0], 1);
  const int64_t rows_per_chunk = std::max<int64_t>(1, (int64_t{1} << 16) / row);
  const int64_t chunk = rows_per_chunk * row;
  std::vector<float> scratch(static_cast<size_t>(std::min(chunk, info.numel)));
  auto* dst = static_cast<uint8_t*>(result.raw());
  const size_t out_size = dtype_size(out);
  for (int64_t done = 0; done < info.numel; done += chunk) {
    const int64_t n = std::min(chunk, info.numel - done);
    const uint64_t src_offset = *ggml_bytes_for(info.type, done);
    dequantize_to_f32(info.type, src + src_offset, scratch.data(), n);
    convert(scratch.data(), TS_F32, dst + static_cast<size_t>(done) * out_size, out, n);
  }
  return result;
}

}  // namespace tessera
