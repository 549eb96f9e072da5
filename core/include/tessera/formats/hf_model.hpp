// Pieces of the Hugging Face folder reader that other readers share (model_source.hpp has
// load_hf_model and load_hf_weights).
#pragma once

#include <tessera/formats/model_source.hpp>

#include <filesystem>

namespace tessera {

// Gives `model` the folder's tokenizer.json (or, when it is absent, unusable or larger than
// the model's vocabulary, leaves the tokenizer null and says why in tokenizer_error) and the
// chat template of tokenizer_config.json ("chat_template": a string, or a list of {name,
// template} whose "default" entry is used) or of chat_template.jinja. Throws ModelError for a
// tokenizer_config.json that is not valid JSON or whose chat_template has another type.
void attach_hf_tokenizer(const std::filesystem::path& folder, LoadedModel& model);

}  // namespace tessera
