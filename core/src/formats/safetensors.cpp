#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tessera/engine/input_file.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/formats/safetensors.hpp>
#include <utility>

namespace tessera {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // refuses absurd headers early

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// safetensors dtype names.
const char* safetensors_dtype_name(ts_dtype d) {
  switch (d) {
    case TS_F32:
      return "F32";
    case TS_F16:
      return "F16";
    case TS_BF16:
      return "BF16";
    case TS_I32:
      return "I32";
    case TS_I64:
      return "I64";
    case TS_U8:
      return "U8";
    default:
      return "?";  // the quantised dtypes have no safetensors name
  }
}

bool parse_safetensors_dtype(const std::string& s, ts_dtype& out) {
  static const std::pair<const char*, ts_dtype> kTable[] = {{"F32", TS_F32},   {"F16", TS_F16},
                                                            {"BF16", TS_BF16}, {"I32", TS_I32},
                                                            {"I64", TS_I64},   {"U8", TS_U8}};
  for (const auto& [name, dtype] : kTable) {
    if (s == name) {
      out = dtype;
      return true;
    }
  }
  return false;
}

// A read-only view of a whole file, unmapped when the last tensor borrowing it goes.
struct FileMapping {
  void* address = nullptr;
  size_t size = 0;
  ~FileMapping() {
    if (address != nullptr) munmap(address, size);
  }
};

}  // namespace

// ---------------------------------------------------------------- safetensors

namespace {

// Parses a whole safetensors image. With a mapping, aligned tensors borrow `bytes` (which the
// mapping keeps alive and which must be writable); without one, every tensor is copied.
WeightStore parse_safetensors(unsigned char* bytes, uint64_t file_size, const std::string& file,
                              const std::shared_ptr<FileMapping>& mapping) {
  auto fail = [&file](const std::string& what) -> ModelError {
    return ModelError("safetensors file '" + file + "': " + what);
  };
  if (file_size < 8) {
    throw fail("file is " + std::to_string(file_size) +
               " bytes; expected at least 8 (the header length)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes) {
    throw fail("header length " + std::to_string(header_len) + " is over the limit of " +
               std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (header_len > file_size - 8) {
    throw fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
               std::to_string(file_size - 8) + " bytes after the length field)");
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) {
    throw fail(std::string("header is a JSON ") + header.type_name() + "; expected an object");
  }

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  unsigned char* data = bytes + data_start;

  WeightStore store;
  store.source = file;
  // Each tensor's byte range, to refuse two tensors sharing bytes (which no writer produces,
  // and which would tie one tensor's updates to another's).
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        throw fail(std::string("__metadata__ is a JSON ") + entry.type_name() +
                   "; expected an object of strings");
      }
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          throw fail("__metadata__ entry '" + key + "' is a JSON " + value.type_name() +
                     "; expected a string");
        }
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!entry.is_object()) {
      throw fail(where + "entry is a JSON " + entry.type_name() +
                 "; expected an object with dtype, shape and data_offsets");
    }

    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      throw fail(where + "missing or non-string 'dtype'");
    }
    ts_dtype dtype = TS_F32;
    const std::string dtype_text = dtype_it->get<std::string>();
    if (!parse_safetensors_dtype(dtype_text, dtype)) {
      throw fail(where + "dtype '" + dtype_text +
                 "' is not supported; expected one of F32, F16, BF16, I32, I64, U8");
    }

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) {
      throw fail(where + "missing or non-array 'shape'");
    }
    std::vector<int64_t> shape;
    // numel * element size must fit the file; track it without overflowing.
    uint64_t n_bytes = dtype_size(dtype);
    bool too_big = false;
    for (const auto& d : *shape_it) {
      if (!d.is_number_integer() ||
          (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)) {
        throw fail(where + "shape " + shape_it->dump() + " must hold non-negative integers");
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) too_big = true;
      shape.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && n_bytes > std::numeric_limits<uint64_t>::max() / dim) {
        too_big = true;
      } else {
        n_bytes *= dim;
      }
    }
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) {
      n_bytes = 0;
      too_big = false;
    }

    auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      throw fail(where + "'data_offsets' must be [begin, end] with non-negative integers");
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end) {
      throw fail(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] has begin after end");
    }
    if (end > data_size) {
      throw fail(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] run past the data section of " + std::to_string(data_size) + " bytes");
    }
    if (too_big || end - begin != n_bytes) {
      throw fail(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] hold " + std::to_string(end - begin) + " bytes; shape " + shape_string(shape) +
                 " of " + safetensors_dtype_name(dtype) + " needs " +
                 (too_big ? std::string("more than 2^64") : std::to_string(n_bytes)));
    }

    if (end > begin) ranges.emplace_back(begin, end, name);
    unsigned char* tensor_data = data + begin;
    if (mapping == nullptr || reinterpret_cast<uintptr_t>(tensor_data) % dtype_size(dtype) != 0) {
      // Bytes we may not keep, or misaligned for their type (a header length that is not a
      // multiple of 8): copy instead of handing out a misaligned pointer.
      Tensor copy(shape, dtype);
      if (n_bytes != 0) std::memcpy(copy.raw(), tensor_data, n_bytes);
      store.add(name, std::move(copy));
    } else {
      store.add(name, Tensor::borrow(tensor_data, shape, dtype, mapping));
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& [b0, e0, n0] = ranges[i - 1];
    const auto& [b1, e1, n1] = ranges[i];
    if (b1 < e0)
      throw fail("tensors '" + n0 + "' (data_offsets [" + std::to_string(b0) + ", " +
                 std::to_string(e0) + "]) and '" + n1 + "' ([" + std::to_string(b1) + ", " +
                 std::to_string(e1) + "]) share bytes; expected each tensor its own range");
  }
  return store;
}

}  // namespace

WeightStore read_safetensors(const std::filesystem::path& path) {
  const std::string file = path.string();
  auto fail = [&file](const std::string& what) -> ModelError {
    return ModelError("safetensors file '" + file + "': " + what);
  };
  // O_NONBLOCK: opening a FIFO must not wait for a writer (fstat refuses it next).
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw fail(std::string("cannot stat: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    const std::string what = not_a_regular_file(path);
    throw fail((what.empty() ? std::string("not a regular file") : what + ", not a regular file"));
  }
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw fail("file is " + std::to_string(file_size) +
               " bytes; expected at least 8 (the header length)");
  }
  auto mapping = std::make_shared<FileMapping>();
  // Private and writable: a caller that scribbles on a weight gets its own copy of
  // the page and never changes the file.
  void* address = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (address == MAP_FAILED) throw fail(std::string("cannot mmap: ") + std::strerror(map_errno));
  mapping->address = address;
  mapping->size = file_size;
  return parse_safetensors(static_cast<unsigned char*>(address), file_size, file, mapping);
}

WeightStore read_safetensors_from_memory(const void* data, size_t size,
                                         const std::string& source_name) {
  // Never borrowed (no mapping), so the const bytes are only read.
  return parse_safetensors(static_cast<unsigned char*>(const_cast<void*>(data)), size, source_name,
                           nullptr);
}

void write_safetensors(const std::filesystem::path& path, const WeightStore& weights,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : weights.all()) {  // std::map: sorted by name
    if (name == "__metadata__") {
      throw ModelError("cannot write '" + file + "': a tensor may not be named __metadata__");
    }
    if (tensor.empty()) {
      throw ModelError("cannot write '" + file + "': tensor '" + name + "' has no data");
    }
    if (tensor.device() != TS_DEVICE_CPU) {
      throw ModelError("cannot write '" + file + "': tensor '" + name + "' is on " +
                       device_name(tensor.device()) + "; expected a CPU tensor");
    }
    nlohmann::json entry;
    entry["dtype"] = safetensors_dtype_name(tensor.dtype());
    entry["shape"] = tensor.shape();
    entry["data_offsets"] = {offset, offset + tensor.bytes()};
    header[name] = entry;
    offset += tensor.bytes();
  }
  std::string text = header.dump();
  // Pad with spaces so that the data section starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw ModelError("cannot open '" + file + "' for writing: " + std::strerror(errno));
  unsigned char length_bytes[8];
  uint64_t header_len = text.size();
  for (unsigned char& b : length_bytes) {
    b = static_cast<unsigned char>(header_len & 0xffu);
    header_len >>= 8;
  }
  out.write(reinterpret_cast<const char*>(length_bytes), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, tensor] : weights.all()) {
    out.write(static_cast<const char*>(tensor.raw()), static_cast<std::streamsize>(tensor.bytes()));
  }
  out.flush();
  if (!out) throw ModelError("failed writing '" + file + "': " + std::strerror(errno));
}

}  // namespace tessera
