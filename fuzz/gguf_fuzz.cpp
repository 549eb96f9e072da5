// libFuzzer target for the GGUF reader: any input must parse or throw tessera::ModelError.
// Built by scripts/fuzz.sh; any other exception, a crash or a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <tessera/engine/error.hpp>
#include <tessera/formats/gguf.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const tessera::GgufFile file = tessera::GgufFile::from_memory(data, size, "fuzz-input");
    for (const tessera::GgufMetadataEntry& entry : file.metadata()) {
      const tessera::GgufValue& v = entry.value;
      (void)v.to_string();
      (void)v.as_int();
      (void)v.as_float();
      (void)v.as_string();
      if (v.is_array()) {
        (void)v.as_int_array();
        for (const tessera::GgufValue& inner : v.nested()) (void)inner.as_float_array();
      }
    }
    (void)file.get_int("general.alignment", 0);
    for (const tessera::GgufTensorInfo& t : file.tensors()) {
      try {
        const tessera::Tensor loaded = file.load_tensor(t);
        if (loaded.numel() != t.numel) __builtin_trap();
      } catch (const tessera::ModelError&) {
      }
    }
  } catch (const tessera::ModelError&) {
  }
  return 0;
}
