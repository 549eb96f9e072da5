// libFuzzer target for the safetensors parser (header JSON, dtypes, shapes, offsets): any input
// must parse or throw tessera::ModelError, and every tensor it returns must lie inside the
// input. Built by scripts/fuzz.sh; any other exception, a crash or a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <tessera/engine/error.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/formats/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const tessera::WeightStore store =
        tessera::read_safetensors_from_memory(data, size, "fuzz-input");
    for (const auto& [name, tensor] : store.all()) {
      if (name.empty() || tensor.bytes() > size) __builtin_trap();
      // Read every byte, so that a tensor pointing outside its data shows up under ASan.
      const auto* bytes = static_cast<const unsigned char*>(tensor.raw());
      unsigned char sum = 0;
      for (size_t i = 0; i < tensor.bytes(); ++i) sum = static_cast<unsigned char>(sum + bytes[i]);
      (void)sum;
    }
  } catch (const tessera::ModelError&) {
  }
  return 0;
}
