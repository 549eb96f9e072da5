# Install rules and the CMake package (find_package(Tessera)).
#
# What is installed: the SDK headers, the tessera command, the plugins and the
# package files. The core's static libraries (tessera_engine, tessera_formats, ...)
# are linked into the command; they are internal and not installed. Plugins go to lib/tessera/plugins whatever the
# platform's libdir, because the registry looks for them at
# <tessera executable>/../lib/tessera/plugins.
include(CMakePackageConfigHelpers)

set(TESSERA_INSTALL_PLUGINDIR lib/tessera/plugins)
set(TESSERA_INSTALL_CMAKEDIR lib/cmake/Tessera)

# SDK headers: the C ABI, the C++ helpers and the shared CPU kernels.
file(GLOB _tessera_sdk_headers CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/sdk/include/tessera/*.h
  ${PROJECT_SOURCE_DIR}/sdk/include/tessera/*.hpp)
file(GLOB _tessera_sdk_cpu_headers CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/sdk/include/tessera/cpu/*.hpp)
install(FILES ${_tessera_sdk_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tessera
  COMPONENT sdk)
if(_tessera_sdk_cpu_headers)
  install(FILES ${_tessera_sdk_cpu_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tessera/cpu
    COMPONENT sdk)
endif()
# The search documents' helpers (they need nlohmann-json's headers to compile).
file(GLOB _tessera_sdk_search_headers CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/sdk/include/tessera/search/*.hpp)
if(_tessera_sdk_search_headers)
  install(FILES ${_tessera_sdk_search_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tessera/search
    COMPONENT sdk)
endif()
# Host-side helpers for CUDA plugins (they need the CUDA toolkit's headers to compile).
file(GLOB _tessera_sdk_cuda_headers CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/sdk/include/tessera/cuda/*.hpp)
if(_tessera_sdk_cuda_headers)
  install(FILES ${_tessera_sdk_cuda_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tessera/cuda
    COMPONENT sdk)
endif()

install(TARGETS tessera_sdk EXPORT TesseraTargets COMPONENT sdk)
install(EXPORT TesseraTargets
  NAMESPACE Tessera::
  FILE TesseraTargets.cmake
  DESTINATION ${TESSERA_INSTALL_CMAKEDIR}
  COMPONENT sdk)

if(TARGET tessera)
  install(TARGETS tessera RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
endif()

# Only the real plugins: test fixtures (tessera_add_plugin with OUTPUT_DIRECTORY)
# are recorded in TESSERA_FIXTURE_TARGETS instead and never installed.
get_property(_tessera_installed_plugins GLOBAL PROPERTY TESSERA_PLUGIN_TARGETS)
if(_tessera_installed_plugins)
  install(TARGETS ${_tessera_installed_plugins}
    LIBRARY DESTINATION ${TESSERA_INSTALL_PLUGINDIR} COMPONENT runtime)
endif()

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/TesseraConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/TesseraConfig.cmake
  INSTALL_DESTINATION ${TESSERA_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_BINDIR TESSERA_INSTALL_PLUGINDIR)
# 0.x: a new minor version may change the SDK, so only the same minor matches.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/TesseraConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/cmake/TesseraConfig.cmake
  ${PROJECT_BINARY_DIR}/cmake/TesseraConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/TesseraPlugin.cmake
  DESTINATION ${TESSERA_INSTALL_CMAKEDIR}
  COMPONENT sdk)

# Everything that is installed as the runtime (the command and every plugin),
# buildable without the tests: `cmake --build <dir> --target tessera_runtime`.
add_custom_target(tessera_runtime)
if(TARGET tessera)
  add_dependencies(tessera_runtime tessera)
endif()
if(_tessera_installed_plugins)
  add_dependencies(tessera_runtime ${_tessera_installed_plugins})
endif()
