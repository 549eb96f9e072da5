// GGUF tensors -> weights under Hugging Face Llama names.
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/formats/gguf_model.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace tessera {
namespace {

// Where a planned Hugging Face tensor comes from in the GGUF file.
struct GgufSource {
  std::string name;        // blk.3.attn_k.weight
  int32_t layer = -1;      // -1 for the model-wide tensors
  bool rope_rows = false;  // attn_q / attn_k: rows interleaved per head
};

constexpr std::pair<const char*, const char*> kLayerTensors[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.linear_attn.weight", "attn_output.weight"},  // deci's linear replacement
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string layer_text(const Manifest& layout, int32_t layer) {
  const LayerSpec& spec = layout.layers.at(static_cast<size_t>(layer));
  return "layer " + std::to_string(layer) + " (attention " + spec.attention.kind + ", ffn " +
         spec.ffn.kind + ")";
}

// The GGUF tensor a Hugging Face name comes from; throws for one GGUF cannot hold.
GgufSource source_of(const std::string& hf_name, const Manifest& layout, const GgufFile& file) {
  if (hf_name == "model.embed_tokens.weight") return {"token_embd.weight"};
  if (hf_name == "model.norm.weight") return {"output_norm.weight"};
  if (hf_name == "lm_head.weight") return {"output.weight"};
  const std::string prefix = "model.layers.";
  if (hf_name.starts_with(prefix)) {
    const size_t dot = hf_name.find('.', prefix.size());
    const std::string index = hf_name.substr(prefix.size(), dot - prefix.size());
    const std::string rest = dot == std::string::npos ? "" : hf_name.substr(dot + 1);
    const int32_t layer = std::stoi(index);
    for (const auto& [hf, gguf] : kLayerTensors) {
      if (rest == hf) {
        const bool rope = rest == "self_attn.q_proj.weight" || rest == "self_attn.k_proj.weight";
        return {"blk." + index + "." + gguf, layer, rope};
      }
    }
    throw ModelError("GGUF file '" + file.name() + "': " + layer_text(layout, layer) + " needs '" +
                     hf_name + "', which GGUF files have no tensor for");
  }
  throw ModelError("GGUF file '" + file.name() + "': the model needs '" + hf_name +
                   "', which GGUF files have no tensor for");
}

int64_t head_dim_of(const Manifest& layout, int32_t layer) {
  const ModelSpec& model = layout.model;
  int64_t head_dim = model.head_dim > 0 ? model.head_dim : model.hidden_size / model.num_heads;
  if (const ParamValue* v =
          layout.layers.at(static_cast<size_t>(layer)).attention.params.find("head_dim")) {
    if (const auto* i = std::get_if<int64_t>(v)) head_dim = *i;
  }
  return head_dim;
}

// " (layer 3 (attention gqa, ffn noop))" for a blk.3.* name of a layer that exists.
std::string unused_context(const std::string& gguf_name, const Manifest& layout) {
  if (!gguf_name.starts_with("blk.")) return "";
  const size_t dot = gguf_name.find('.', 4);
  const std::string index = gguf_name.substr(4, dot == std::string::npos ? 0 : dot - 4);
  if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos ||
      index.size() > 9) {
    return "";
  }
  const int32_t layer = std::stoi(index);
  if (layer >= static_cast<int32_t>(layout.layers.size())) return " (beyond the last layer)";
  return " (" + layer_text(layout, layer) + ")";
}

ts_dtype stored_dtype(const GgufTensorInfo& info) {
  if (info.ggml_type() == GgmlType::F16) return TS_F16;
  if (info.ggml_type() == GgmlType::BF16) return TS_BF16;
  return TS_F32;  // quantised types are dequantised
}

struct PlannedLoad {
  std::string hf_name;
  const GgufTensorInfo* info = nullptr;
  int64_t rope_head_dim = 0;  // > 0: undo the interleaved row order
};

}  // namespace

void unpermute_rope_rows(const void* src, void* dst, int64_t rows, int64_t head_dim,
                         size_t row_bytes) {
  if (head_dim <= 0 || head_dim % 2 != 0 || rows % head_dim != 0) {
    throw ModelError("unpermute_rope_rows: " + std::to_string(rows) +
                     " rows do not split into heads of an even size " + std::to_string(head_dim));
  }
  const auto* in = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  const int64_t half = head_dim / 2;
  for (int64_t head = 0; head < rows / head_dim; ++head) {
    const int64_t base = head * head_dim;
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t t = 0; t < 2; ++t) {
        std::memcpy(out + static_cast<size_t>(base + t * half + j) * row_bytes,
                    in + static_cast<size_t>(base + 2 * j + t) * row_bytes, row_bytes);
      }
    }
  }
}

WeightStore gguf_weights(const GgufFile& file, const Manifest& layout) {
  const std::string where = "GGUF file '" + file.name() + "'";
  std::vector<PlannedLoad> loads;
  std::set<std::string> used;
  for (const auto& [hf_name, shape] : planned_tensors(layout)) {
    const GgufSource source = source_of(hf_name, layout, file);
    const std::string context =
        "'" + hf_name + "'" + (source.layer >= 0 ? ", " + layer_text(layout, source.layer) : "");
    const GgufTensorInfo* info = file.find_tensor(source.name);
    if (info == nullptr) {
      throw ModelError(where + ": tensor '" + source.name + "' (" + context + ") is missing");
    }
    if (info->shape() != shape) {
      throw ModelError(where + ": tensor '" + source.name + "' (" + context + ") has shape " +
                       shape_text(info->shape()) + "; expected " + shape_text(shape));
    }
    const GgmlTypeInfo* type = ggml_type_info(info->type);
    if (type == nullptr || !type->dequantizable) {
      throw ModelError(where + ": tensor '" + source.name + "' (" + context + ") has ggml type " +
                       ggml_type_name(info->type) +
                       ", which Tessera cannot dequantise; supported: F32, F16, BF16, Q8_0, Q4_0, "
                       "Q4_1, Q4_K, Q5_K, Q6_K");
    }
    used.insert(source.name);
    loads.push_back({hf_name, info, source.rope_rows ? head_dim_of(layout, source.layer) : 0});
  }
  used.insert("rope_freqs.weight");  // read by gguf_manifest as the RoPE scaling
  for (const GgufTensorInfo& info : file.tensors()) {
    if (used.count(info.name) == 0) {
      throw ModelError(where + ": tensor '" + info.name + "'" + unused_context(info.name, layout) +
                       " is not used by any block of the " +
                       file.get_string("general.architecture", "") +
                       " model Tessera reads from this file; refusing rather than ignoring it");
    }
  }

  // Dequantising is the slow part: one tensor per thread, largest first.
  std::vector<Tensor> tensors(loads.size());
  std::vector<size_t> order(loads.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&loads](size_t a, size_t b) {
    return loads[a].info->numel > loads[b].info->numel;
  });
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(std::max(1, std::min<int>(hardware, static_cast<int>(loads.size()))));
  std::atomic<size_t> next{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  pool.parallel_for(pool.size(), 1, [&](int64_t, int64_t) {
    for (size_t k = next.fetch_add(1); k < order.size(); k = next.fetch_add(1)) {
      const PlannedLoad& load = loads[order[k]];
      try {
        Tensor t = file.load_tensor(*load.info, stored_dtype(*load.info));
        if (load.rope_head_dim > 0) {
          Tensor reordered(t.shape(), t.dtype());
          unpermute_rope_rows(t.raw(), reordered.raw(), t.dim(0), load.rope_head_dim,
                              static_cast<size_t>(t.dim(1)) * dtype_size(t.dtype()));
          t = std::move(reordered);
        }
        tensors[order[k]] = std::move(t);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    }
  });
  if (failure) std::rethrow_exception(failure);

  WeightStore store;
  store.source = file.name();
  for (size_t i = 0; i < loads.size(); ++i) store.add(loads[i].hf_name, std::move(tensors[i]));
  return store;
}

}  // namespace tessera
