// A small GGUF writer for tests: builds version-3 files key by key and tensor by tensor, so a
// test can start from a valid model and break exactly one thing (a key, a tensor, a shape).
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tessera::test {

class GgufTestWriter {
 public:
  using Bytes = std::vector<uint8_t>;
  // GGUF value type ids.
  enum Type : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9 };

  void set_string(const std::string& key, const std::string& value) {
    Bytes b;
    put(b, uint32_t{kString});
    put_string(b, value);
    set_key(key, std::move(b));
  }
  void set_u32(const std::string& key, uint32_t value) { set_scalar(key, kU32, value); }
  void set_i32(const std::string& key, int32_t value) { set_scalar(key, kI32, value); }
  void set_f32(const std::string& key, float value) { set_scalar(key, kF32, value); }
  void set_bool(const std::string& key, bool value) {
    set_scalar(key, kBool, static_cast<uint8_t>(value ? 1 : 0));
  }
  void set_i32_array(const std::string& key, const std::vector<int32_t>& values) {
    Bytes b;
    put(b, uint32_t{kArray});
    put(b, uint32_t{kI32});
    put(b, static_cast<uint64_t>(values.size()));
    for (const int32_t v : values) put(b, v);
    set_key(key, std::move(b));
  }
  void set_string_array(const std::string& key, const std::vector<std::string>& values) {
    Bytes b;
    put(b, uint32_t{kArray});
    put(b, uint32_t{kString});
    put(b, static_cast<uint64_t>(values.size()));
    for (const std::string& v : values) put_string(b, v);
    set_key(key, std::move(b));
  }
  void erase_key(const std::string& key) { erase(keys_, key); }

  // An f32 tensor of a row-major shape (slowest dimension first, as Hugging Face writes it).
  void set_tensor(const std::string& name, const std::vector<int64_t>& shape,
                  const std::vector<float>& values) {
    std::vector<int64_t> ne(shape.rbegin(), shape.rend());
    Bytes data(values.size() * sizeof(float));
    if (!values.empty()) std::memcpy(data.data(), values.data(), data.size());
    set_raw_tensor(name, ne, 0, std::move(data));
  }
  // Any ggml type, `ne` fastest first, bytes as stored.
  void set_raw_tensor(const std::string& name, const std::vector<int64_t>& ne, uint32_t ggml_type,
                      Bytes data) {
    for (auto& t : tensors_) {
      if (t.name == name) {
        t = {name, ne, ggml_type, std::move(data)};
        return;
      }
    }
    tensors_.push_back({name, ne, ggml_type, std::move(data)});
  }
  void erase_tensor(const std::string& name) {
    for (auto it = tensors_.begin(); it != tensors_.end(); ++it) {
      if (it->name == name) {
        tensors_.erase(it);
        return;
      }
    }
    throw std::logic_error("GgufTestWriter: no tensor " + name);
  }

  void write(const std::filesystem::path& path) const {
    constexpr uint64_t kAlignment = 32;
    Bytes out;
    out.insert(out.end(), {'G', 'G', 'U', 'F'});
    put(out, uint32_t{3});
    put(out, static_cast<uint64_t>(tensors_.size()));
    put(out, static_cast<uint64_t>(keys_.size()));
    for (const auto& [key, value] : keys_) {
      put_string(out, key);
      out.insert(out.end(), value.begin(), value.end());
    }
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
      put_string(out, t.name);
      put(out, static_cast<uint32_t>(t.ne.size()));
      for (const int64_t d : t.ne) put(out, static_cast<uint64_t>(d));
      put(out, t.type);
      put(out, offset);
      offset += (t.data.size() + kAlignment - 1) / kAlignment * kAlignment;
    }
    out.resize((out.size() + kAlignment - 1) / kAlignment * kAlignment, 0);
    for (const Tensor& t : tensors_) {
      out.insert(out.end(), t.data.begin(), t.data.end());
      out.resize((out.size() + kAlignment - 1) / kAlignment * kAlignment, 0);
    }
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
    if (!file) throw std::runtime_error("GgufTestWriter: cannot write " + path.string());
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type = 0;
    Bytes data;
  };

  template <class T>
  static void put(Bytes& b, T value) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    b.insert(b.end(), raw, raw + sizeof(T));
  }
  static void put_string(Bytes& b, const std::string& s) {
    put(b, static_cast<uint64_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
  template <class T>
  void set_scalar(const std::string& key, Type type, T value) {
    Bytes b;
    put(b, static_cast<uint32_t>(type));
    put(b, value);
    set_key(key, std::move(b));
  }
  void set_key(const std::string& key, Bytes value) {
    for (auto& [k, v] : keys_) {
      if (k == key) {
        v = std::move(value);
        return;
      }
    }
    keys_.emplace_back(key, std::move(value));
  }
  static void erase(std::vector<std::pair<std::string, Bytes>>& keys, const std::string& key) {
    for (auto it = keys.begin(); it != keys.end(); ++it) {
      if (it->first == key) {
        keys.erase(it);
        return;
      }
    }
    throw std::logic_error("GgufTestWriter: no key " + key);
  }

  std::vector<std::pair<std::string, Bytes>> keys_;
  std::vector<Tensor> tensors_;
};

}  // namespace tessera::test
