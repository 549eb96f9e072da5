// CUDA error checks that throw a message naming the call. Depends on the CUDA runtime
// only, so that kernel files (.cu) can include it without the plugin helpers.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace tessera::cuda {

inline std::string error_text(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
}

// Throws std::runtime_error "<what>: <error name> (<description>)" unless status is success.
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + error_text(status));
}

// Checks a kernel launch (configuration errors surface here, not at the next call).
inline void check_launch(const char* kernel) {
  check(cudaGetLastError(), kernel);
}

}  // namespace tessera::cuda
