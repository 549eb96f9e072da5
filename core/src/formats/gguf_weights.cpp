// GGUF tensors -> weights under the names the blocks declare (Hugging Face Llama names for
// the built-in kinds), through the name map of gguf_names.hpp.
#include <tessera/engine/error.hpp>
#include <tessera/engine/memory_check.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/formats/gguf_model.hpp>

#include "gguf_names.hpp"

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

// The dtype a tensor is loaded in: its own, quantised types included (the model decides
// what to dequantise once it knows which blocks read what); other types as f32.
ts_dtype stored_dtype(const GgufTensorInfo& info) {
  return ts_dtype_of(info.type).value_or(TS_F32);
}

struct PlannedLoad {
  std::string hf_name;
  const GgufTensorInfo* info = nullptr;
  int64_t rope_head_dim = 0;  // > 0: undo the interleaved row order
};

// "attention gqa, linear, noop; ffn swiglu, noop": the kinds GGUF files have names for.
std::string known_kinds() {
  std::string out;
  for (const ts_kind kind : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
    std::string names;
    for (const gguf_names::BlockNames& b : gguf_names::kBlocks)
      if (b.kind == kind) names += (names.empty() ? "" : ", ") + std::string(b.name);
    out += (out.empty() ? "" : "; ") + std::string(kind_name(kind)) + " " + names;
  }
  return out;
}

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
  const int64_t hidden = layout.model.hidden_size;
  std::vector<PlannedLoad> loads;
  std::set<std::string> used;
  // One tensor to load: its GGUF name, its name in the store, the shape the host knows for it
  // (model-wide tensors and norms; a block's own are checked against its declaration when
  // the model is built).
  auto plan_load = [&](const std::string& gguf_name, const std::string& hf_name, int32_t layer,
                       const std::vector<int64_t>* shape, bool rope_rows) {
    const std::string context =
        "'" + hf_name + "'" + (layer >= 0 ? ", " + layer_text(layout, layer) : "");
    const GgufTensorInfo* info = file.find_tensor(gguf_name);
    if (info == nullptr) {
      throw ModelError(where + ": tensor '" + gguf_name + "' (" + context + ") is missing");
    }
    if (shape != nullptr && info->shape() != *shape) {
      throw ModelError(where + ": tensor '" + gguf_name + "' (" + context + ") has shape " +
                       shape_text(info->shape()) + "; expected " + shape_text(*shape));
    }
    const GgmlTypeInfo* type = ggml_type_info(info->type);
    if (type == nullptr || !type->dequantizable) {
      throw ModelError(where + ": tensor '" + gguf_name + "' (" + context + ") has ggml type " +
                       ggml_type_name(info->type) +
                       ", which Tessera cannot dequantise; supported: F32, F16, BF16, Q8_0, Q4_0, "
                       "Q4_1, Q4_K, Q5_K, Q6_K");
    }
    // Rows interleaved per head go back to Hugging Face's order, when they split into heads
    // at all (a tensor that does not has the wrong shape, which the model reports).
    int64_t rope_head_dim = 0;
    if (rope_rows) {
      const int64_t head_dim = head_dim_of(layout, layer);
      const std::vector<int64_t> s = info->shape();
      if (s.size() == 2 && head_dim > 0 && head_dim % 2 == 0 && s[0] % head_dim == 0)
        rope_head_dim = head_dim;
    }
    used.insert(gguf_name);
    loads.push_back({hf_name, info, rope_head_dim});
  };

  const std::vector<int64_t> table_shape{layout.model.vocab_size, hidden};
  const std::vector<int64_t> vector_shape{hidden};
  for (const gguf_names::ModelTensorName& t : gguf_names::kModelTensors) {
    const std::string hf = t.hf;
    if (hf == "lm_head.weight" && layout.model.tie_embeddings) continue;
    plan_load(t.gguf, hf, -1, hf == "model.norm.weight" ? &vector_shape : &table_shape, false);
  }
  for (size_t i = 0; i < layout.layers.size(); ++i) {
    const auto layer = static_cast<int32_t>(i);
    const std::string blk = "blk." + std::to_string(layer) + ".";
    for (const ts_kind kind : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
      const BlockSpec& spec =
          kind == TS_KIND_ATTENTION ? layout.layers[i].attention : layout.layers[i].ffn;
      const gguf_names::BlockNames* names = gguf_names::find_block(kind, spec.kind);
      if (names == nullptr) {
        throw ModelError(where + ": " + layer_text(layout, layer) +
                         ": GGUF files have no tensor "
                         "names for " +
                         kind_name(kind) + " kind '" + spec.kind + "'; they name the tensors of " +
                         known_kinds());
      }
      if (names->norm_gguf != nullptr) {
        plan_load(blk + names->norm_gguf,
                  "model.layers." + std::to_string(layer) + "." + names->norm_hf, layer,
                  &vector_shape, false);
      }
      const std::string prefix =
          spec.prefix.empty() ? default_block_prefix(layer, kind) : spec.prefix;
      for (const gguf_names::TensorName& t : names->tensors) {
        plan_load(blk + t.gguf, prefix + t.local, layer, nullptr, t.rope_rows);
      }
    }
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

  uint64_t out_bytes = 0;
  for (const auto& load : loads)
    out_bytes += dtype_bytes(stored_dtype(*load.info), load.info->numel);
  require_memory(out_bytes, where + ": its " + std::to_string(loads.size()) + " tensors");

  // One tensor per thread, largest first (dequantising, where a type needs it, is slow).
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
                              dtype_bytes(t.dtype(), t.dim(1)));
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
  for (size_t i = 0; i < loads.size(); ++i) {
    store.add(loads[i].hf_name, std::move(tensors[i]));
    store.set_origin(loads[i].hf_name,
                     "tensor '" + loads[i].info->name + "' of GGUF file '" + file.name() + "'");
  }
  return store;
}

}  // namespace tessera
