// Named weight tensors of a model, and the safetensors files they come from.
#pragma once

#include <tessera/core/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace tessera {

class WeightStore {
 public:
  void add(const std::string& name, Tensor t);
  bool has(const std::string& name) const;
  // Throws ModelError naming the tensor (and the file, when loaded from one).
  const Tensor& get(const std::string& name) const;
  const std::map<std::string, Tensor>& all() const { return tensors_; }
  std::string source;  // file the weights came from, for error messages

 private:
  std::map<std::string, Tensor> tensors_;
};

// safetensors: 8-byte little-endian header length, JSON header, raw data.
// The reader memory-maps the file and checks every offset against its size;
// errors name the file, the tensor and what was expected.
WeightStore read_safetensors(const std::filesystem::path& path);
// The same parser over an image already in memory (fuzzing, embedded data); source_name
// stands for the file in messages. Every tensor is copied out of `data`.
WeightStore read_safetensors_from_memory(const void* data, size_t size,
                                         const std::string& source_name);
void write_safetensors(const std::filesystem::path& path, const WeightStore& weights,
                       const std::map<std::string, std::string>& metadata = {});

// Deterministic pseudo-random numbers, identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed ^ 0x9e3779b97f4a7c15ull) {}
  uint64_t next();  // splitmix64
  float uniform();  // [0, 1)
  float normal();   // Box-Muller, N(0, 1)

 private:
  uint64_t state_;
};

}  // namespace tessera
