// safetensors files: 8-byte little-endian header length, JSON header, raw data.
#pragma once

#include <tessera/engine/weights.hpp>

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>

namespace tessera {

// The reader memory-maps the file and checks every offset against its size;
// errors name the file, the tensor and what was expected.
WeightStore read_safetensors(const std::filesystem::path& path);
// The same parser over an image already in memory (fuzzing, embedded data); source_name
// stands for the file in messages. Every tensor is copied out of `data`.
WeightStore read_safetensors_from_memory(const void* data, size_t size,
                                         const std::string& source_name);
void write_safetensors(const std::filesystem::path& path, const WeightStore& weights,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace tessera
