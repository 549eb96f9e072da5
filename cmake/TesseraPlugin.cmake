# tessera_add_plugin(<target> NAME <plugin-file-name> SOURCES <src...>)
#
# Builds a plugin library named libtessera-<plugin-file-name>.so with hidden
# symbols (only the entry alias is exported). Used by the tree and, through the
# installed CMake package, by plugins built out of tree.
function(tessera_add_plugin target)
  cmake_parse_arguments(ARG "" "NAME;OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  if(NOT ARG_NAME)
    message(FATAL_ERROR "tessera_add_plugin(${target}): NAME is required")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME "tessera-${ARG_NAME}"
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  elseif(DEFINED TESSERA_PLUGIN_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${TESSERA_PLUGIN_OUTPUT_DIR})
  endif()
  target_link_libraries(${target} PRIVATE Tessera::sdk)
  if(NOT ARG_OUTPUT_DIRECTORY)
    set_property(GLOBAL APPEND PROPERTY TESSERA_PLUGIN_TARGETS ${target})
  else()
    set_property(GLOBAL APPEND PROPERTY TESSERA_FIXTURE_TARGETS ${target})
  endif()
  if(COMMAND tessera_warnings)
    tessera_warnings(${target})
  endif()
endfunction()
