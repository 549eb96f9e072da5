// Writing a model as a manifest folder (manifest.toml + model.safetensors + the tokenizer's
// files), which every command opens: what `convert --to manifest` and `train` write.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/weights.hpp>
#include <tessera/formats/hf_writer.hpp>
#include <tessera/formats/model_source.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tessera::cli {

// The model's tokenizer files: a Hugging Face source's (or a manifest folder's) copied, else
// its loaded tokenizer (a GGUF file's) written out.
TokenizerFiles tokenizer_files(const LoadedModel& model);

// Prints why a tokenizer was not written (nothing when why_not_written is empty).
void note_tokenizer(const LoadedModel& model, const std::string& why_not_written);

// Writes `weights` (converted to `dtype` when given) with `model`'s manifest and tokenizer
// into `destination` through a staging folder: a failure leaves nothing that looks like a
// model. An existing non-empty destination is replaced only with `overwrite`. `extra_files`
// (name, contents) are written into the folder too, before it appears. Returns the bytes of
// tensors written.
uint64_t write_manifest_folder(
    const std::filesystem::path& destination, const LoadedModel& model, const WeightStore& weights,
    std::optional<ts_dtype> dtype, bool overwrite,
    const std::vector<std::pair<std::string, std::string>>& extra_files = {});

}  // namespace tessera::cli
