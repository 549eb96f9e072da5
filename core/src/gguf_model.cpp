// GGUF (architectures llama and deci) -> manifest, weights under Hugging Face names, tokenizer.
#include <tessera/core/error.hpp>
#include <tessera/core/model_source.hpp>

namespace tessera {

LoadedModel load_gguf_model(const std::filesystem::path& path) {
  throw ModelError("'" + path.string() + "': reading GGUF models is not implemented yet");
}

}  // namespace tessera
