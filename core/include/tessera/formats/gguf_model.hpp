// GGUF files as Tessera models: the metadata of architectures llama and deci becomes a
// Manifest, the tensors become weights under Hugging Face Llama names, tokenizer.ggml.*
// becomes TokenizerData. load_gguf_model (model_source.hpp) puts the three together.
//
// Layer kinds, from the per-layer head and FFN counts ({arch}.attention.head_count,
// .head_count_kv, .feed_forward_length: a number, or an array with one entry per layer):
//   head_count > 0, head_count_kv > 0   attention "gqa"     (attn_q, attn_k, attn_v, attn_output)
//   head_count > 0, head_count_kv == 0  attention "linear"  (attn_output is the [hidden, hidden]
//                                                            replacement, deci only)
//   head_count == 0, head_count_kv == 0 attention "noop"    (no tensors, deci only)
//   feed_forward_length > 0             ffn "swiglu"        (ffn_gate, ffn_up, ffn_down)
//   feed_forward_length == 0            ffn "noop"          (no tensors, deci only)
// Every tensor of the file must be used; one that is not (a bias, an expert) is refused by name.
#pragma once

#include <tessera/engine/manifest.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/formats/gguf.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/text/tokenizer.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

// "deci, llama": the general.architecture values Tessera reads.
std::vector<std::string> gguf_supported_architectures();

// The model described by the file's metadata: shape, one LayerSpec per layer, weights format
// "gguf" pointing at the file, runtime defaults. Throws ModelError naming the file, the
// metadata key and the layer for anything Tessera cannot represent.
Manifest gguf_manifest(const GgufFile& file);

// The file's RoPE scaling: Llama 3's, found from the tensor rope_freqs.weight (checked against
// the multipliers its parameters give), or none. Throws ModelError naming the key or tensor for
// any other kind (linear, YaRN) or multipliers that fit no Llama 3 parameters.
RopeScaling gguf_rope_scaling(const GgufFile& file, const std::string& arch, int64_t head_dim,
                              double theta);

// The tensors `layout` (gguf_manifest of the same file) needs, under Hugging Face names:
// quantised ones dequantised to f32, f16/bf16 kept, attn_q/attn_k rows put back into the
// Hugging Face order (GGUF stores them interleaved for a pairwise RoPE). Throws ModelError for a
// missing tensor, a shape mismatch (both shapes) or a tensor the layout does not use.
WeightStore gguf_weights(const GgufFile& file, const Manifest& layout);

// Row order of a GGUF attn_q / attn_k tensor back to Hugging Face's: within each head of
// `head_dim` rows, GGUF row 2*j + t holds Hugging Face row t * head_dim/2 + j.
// `rows` must be a multiple of head_dim, head_dim even; works on any element size.
void unpermute_rope_rows(const void* src, void* dst, int64_t rows, int64_t head_dim,
                         size_t row_bytes);

// tokenizer.ggml.* and tokenizer.chat_template. Throws TokenizerError naming the file and key
// when there is no tokenizer or it is of a kind Tessera does not read (only "gpt2", byte-level
// BPE, is).
TokenizerData gguf_tokenizer_data(const GgufFile& file);

// The ids that end a reply: the EOS token, tokenizer.ggml.eot_token_id when present, and the
// chat template's end-of-turn token (<|im_end|>, <|eot_id|>) when the vocabulary has it as a
// control token. Sorted, without duplicates.
std::vector<int64_t> end_of_turn_ids(const GgufFile& file, const Tokenizer& tokenizer,
                                     const TokenizerData& data);

// Sets model.tokenizer and model.chat_template from the file, and the manifest's bos and end
// ids when the manifest gives neither. A file without a usable tokenizer leaves the tokenizer
// null and says why in model.tokenizer_error (token ids still work).
void attach_gguf_tokenizer(const GgufFile& file, LoadedModel& model);

}  // namespace tessera
