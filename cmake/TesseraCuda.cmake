# CUDA support for the tree's device plugins, tests and benchmarks (TESSERA_WITH_CUDA).
#
#   Tessera::cuda_sdk          the SDK plus the CUDA toolkit's headers and the static CUDA
#                              runtime; cuBLASLt is opened at run time (tessera/cuda/cublaslt.hpp)
#   tessera_cuda_kernels(<target> SOURCES <.cu...>)   (C++17: what CMake 3.25 offers nvcc)
#                              an object library of kernels, compiled once and linked into
#                              a plugin and into tests/cuda
find_package(CUDAToolkit REQUIRED)

add_library(tessera_cuda_sdk INTERFACE)
add_library(Tessera::cuda_sdk ALIAS tessera_cuda_sdk)
target_link_libraries(tessera_cuda_sdk INTERFACE Tessera::sdk CUDA::cudart_static ${CMAKE_DL_LIBS})

# Warnings for CUDA sources: nvcc's own, and the host compiler's on the host side.
function(tessera_cuda_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --expt-relaxed-constexpr>)
  if(TESSERA_WERROR)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings -Xcompiler=-Werror>)
  endif()
endfunction()

function(tessera_cuda_kernels target)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  add_library(${target} OBJECT ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    POSITION_INDEPENDENT_CODE ON
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_include_directories(${target} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${target} PUBLIC Tessera::cuda_sdk)
  # Source lines for Nsight Compute; no run-time cost.
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  tessera_cuda_warnings(${target})
endfunction()
